// The SD3 / SD3.5 pipeline (vgg_train --pipeline sd3): a diffusers folder's MMDiT as the flow
// model, prompts as precomputed text embeddings, and a reward of images turned into a reward of
// latents by the VAE decoder, so that every method (vggflow/methods) runs unchanged on latents.
//
// Prompt embeddings (written by tools/embed_prompts.py where the text encoders are): one
// safetensors file with
//   "tokens" [N + 1, T, J]   the joint text embeddings SD3 feeds its MMDiT (CLIP-L ⊕ CLIP-G padded
//                            to 4096, then T5: T = 77 + 256 = 333, J = 4096)
//   "pooled" [N + 1, P]      CLIP-L ⊕ CLIP-G pooled (P = 2048)
//   metadata "prompts"       a JSON list of the N prompt texts; row N is the empty prompt ""
//                            (classifier-free guidance's unconditional branch)
// They fill a frozen PromptEncoder, so the sampler, the methods and the value net see SD3
// prompts exactly as they see the default's learned table.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/diffusers.h"
#include "vggflow/model.h"
#include "vggflow/rewards.h"

namespace vgg::flow {

struct PromptEmbeddings {
  std::shared_ptr<PromptEncoder> encoder;  // N + 1 rows, the last the empty prompt
  std::vector<std::string> texts;          // the N prompts
};
// Checks the shapes against the model (J = joint_attention_dim, P = pooled_projection_dim) and the
// prompt list against the rows; errors name the file.
PromptEmbeddings load_prompt_embeddings(const std::string& path, const nn::MMDiTConfig& cfg, nn::LayerOptions o = {});

// The flow model of a diffusers SD3 folder with the prompts of an embeddings file: sampling shift
// from the scheduler, latents [16, resolution/8, resolution/8] (the VAE's channels and scale).
// resolution must be a multiple of 8·patch_size·… (checked: latents divisible by the patch size).
FlowModel load_sd3_flow_model(const nn::DiffusersFolder& f, const std::string& prompts_file, int64_t resolution,
                              nn::LayerOptions o = {});

// The images of latents [B, C, h, w] as [B, 3, H, W] in [−1, 1] (unclamped), any decoder.
using Decoder = std::function<Tensor(const Tensor& latents)>;

// r(z) = R(clamp(decode(z), −1, 1)): a reward of images as a reward of latents. The latents move to
// `device` in `dtype` (differentiably) and the reward comes back to the latents' device and dtype.
class DecodedReward : public Reward {
 public:
  DecodedReward(Decoder decode, std::shared_ptr<Reward> image_reward, Device device, DType dtype);
  std::string name() const override { return image_reward_->name(); }
  Tensor operator()(const Tensor& latents) const override;
  Tensor score(const Tensor& latents, const Tensor& ids) const override;  // the image reward's score with ids
  bool uses_prompts() const override { return image_reward_->uses_prompts(); }
  Tensor images(const Tensor& latents) const;  // clamp(decode(z), −1, 1) on the latents' device, no graph

 private:
  Decoder decode_;
  std::shared_ptr<Reward> image_reward_;
  Device device_;
  DType dtype_;
};

}  // namespace vgg::flow
