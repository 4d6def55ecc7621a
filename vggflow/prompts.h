// Prompts for the embedded Fashion-MNIST default: the 10 class names plus the empty prompt,
// encoded the way SD3's text encoders feed MMDiT — N_t token embeddings [N_t, J] and one
// pooled vector [P] per prompt — by a small learned table trained with the model and frozen
// afterwards (docs/flow.md, "Prompts").
//
//   prompt id 0..9   the classes, in the dataset's label order
//   prompt id 10     "" (the unconditional prompt of classifier-free guidance; a learned
//                    embedding, not zeros, as SD3 encodes "" like any other prompt)
#pragma once
#include <string>
#include <vector>

#include "nn/layers.h"
#include "vggflow/flow.h"

namespace vgg::flow {

class PromptEncoder : public nn::Module {
 public:
  // num_prompts includes the empty prompt (last id). Tokens and pooled vectors start N(0, 1).
  PromptEncoder(int64_t num_prompts, int64_t tokens, int64_t token_dim, int64_t pooled_dim, nn::LayerOptions o = {});
  std::string type_name() const override { return "PromptEncoder"; }
  void reset_parameters(Generator* gen) override;

  // ids [B] (i64) -> context [B, N_t, J], pooled [B, P]
  Conditioning encode(const Tensor& ids) const;
  // Replaces each id by the empty prompt with probability p (classifier-free guidance training),
  // drawing from gen.
  Tensor drop(const Tensor& ids, double p, Generator& gen) const;
  int64_t empty_id() const { return num_prompts_ - 1; }
  int64_t num_prompts() const { return num_prompts_; }

  Tensor tokens;  // [num_prompts, N_t, J]
  Tensor pooled;  // [num_prompts, P]

 private:
  int64_t num_prompts_;
};

// Prompt id of a class name or "" (the empty prompt); throws naming the known prompts.
int64_t prompt_id(const std::string& text, const std::vector<std::string>& classes);

}  // namespace vgg::flow
