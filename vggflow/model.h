// A text-to-image flow model of the embedded default: an MMDiT plus its prompt tables and the
// sampler settings it was trained with (docs/flow.md, "The shipped base model").
//
// A model folder holds transformer.safetensors (diffusers names; the MMDiT config in the
// metadata), prompts.safetensors and pretrain.json (vgg_pretrain's resolved settings: shift,
// guidance, sample_steps …). A vgg_pretrain run folder works too (its EMA weights:
// model_ema.safetensors, prompts_ema.safetensors, config.json).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/mmdit.h"
#include "vggflow/flow.h"
#include "vggflow/prompts.h"

namespace vgg::flow {

struct FlowModel {
  nn::MMDiTConfig cfg;
  std::shared_ptr<nn::MMDiT> net;
  std::shared_ptr<PromptEncoder> prompts;
  SampleOptions sampling;  // the model's own steps / shift / guidance
  std::string source;      // the folder it came from
  std::vector<std::string> prompt_texts;  // SD3: the prompt embeddings file's texts (row order)
  // The latents the sampler draws, [B, latent_channels, latent_size, latent_size]: the default's
  // images are its latents (1 × 32 × 32); SD3's are the VAE's (16 × resolution/8 squared).
  int64_t latent_channels = 1, latent_size = 32;

  // u = net(x, τ, c) as a VelocityFn.
  VelocityFn velocity() const;
};

FlowModel load_flow_model(const std::string& dir, nn::LayerOptions o = {});

// net.forward on the network's device: x, τ and the conditioning are moved there and the output
// back to x's device (differentiable moves; nothing moves when the devices agree). This is how
// the training and evaluation code, whose trajectories live on the host, runs networks that live
// on a GPU (vgg_train --device).
Tensor forward_on_device(nn::MMDiT& net, const Tensor& x, const Tensor& tau, const Tensor& context,
                         const Tensor& pooled);
// Writes a model folder (atomically per file); `settings_json` becomes pretrain.json.
void save_flow_model(const std::string& dir, const FlowModel& m, const std::string& settings_json);

// Images for the given prompt ids (one per id) from the noise randn([N, C, H, W], Generator(seed, 0)),
// sampled with Euler + CFG in chunks of `chunk`, without a graph; clamped to [−1, 1].
// `device`: where the trajectories live (the network's device, so no step moves a latent); the
// noise is drawn on the host (the same numbers on every device), each chunk's noise and
// conditioning move there once and its result comes back to the host.
Tensor sample_images(const VelocityFn& f, const PromptEncoder& prompts, const std::vector<int64_t>& ids,
                     const SampleOptions& o, uint64_t seed, int64_t image_size = 32, int64_t chunk = 80,
                     Device device = Device::cpu());
// The same without the clamp and with `channels` latent channels: randn([N, channels, size, size],
// Generator(seed, 0)) integrated by Euler + CFG (sample_images is its clamp with channels = 1).
Tensor sample_latents(const VelocityFn& f, const PromptEncoder& prompts, const std::vector<int64_t>& ids,
                      const SampleOptions& o, uint64_t seed, int64_t channels, int64_t size, int64_t chunk = 80,
                      Device device = Device::cpu());
// ids 0,0,…,0 (n times), 1,…,1, …, 9,…,9: n samples of each class prompt.
std::vector<int64_t> per_class_ids(int64_t n);

}  // namespace vgg::flow
