// The feature networks of the embedded default (docs/flow.md, "Reward and evaluation networks"):
// small CNN classifiers of 32×32 grey images in [−1, 1] (Fashion-MNIST padded by 2).
//   F_A ("fa"): 3 × [conv 3×3 → SiLU → 2×2 average pool] with 32, 64, 128 channels, flatten
//              (128·4·4) → Linear(2048 → 128) → SiLU = 128-d embedding → Linear(128 → 10).
//              Smooth activations and average pooling keep ∇ₓr well defined. The rewards use it.
//   F_B ("fb"): an independent design for evaluation only: 2 × [conv 5×5 → GELU → 2×2 average
//              pool] with 24, 48 channels, flatten (48·8·8) → Linear(3072 → 96) → GELU = 96-d
//              embedding → Linear(96 → 10); other seed.
#pragma once
#include <string>

#include "nn/layers.h"

namespace vgg::flow {

class FeatureNet : public nn::Module {
 public:
  // kind: "fa" or "fb"
  explicit FeatureNet(const std::string& kind, nn::LayerOptions o = {});
  std::string type_name() const override { return "FeatureNet"; }
  // x [B, 1, 32, 32] -> embedding [B, E]
  Tensor embed(const Tensor& x);
  // embedding -> class logits [B, 10]
  Tensor logits_from_embedding(const Tensor& e);
  Tensor logits(const Tensor& x) { return logits_from_embedding(embed(x)); }
  const std::string& kind() const { return kind_; }
  int64_t embedding_dim() const { return head->in_features(); }

  std::shared_ptr<nn::Conv2d> conv1, conv2, conv3;
  std::shared_ptr<nn::Linear> fc, head;

 private:
  std::string kind_;
};

}  // namespace vgg::flow
