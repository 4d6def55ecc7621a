// A tiny SD3-structured diffusers folder with random weights, for tests of the SD3 pipeline
// (nn/diffusers.h, vggflow/sd3.h, vgg_train --pipeline sd3): model_index.json, transformer/ as two
// shards with their index (a 2-layer MMDiT, 4 latent channels, joint_attention_dim 16, pooled 8),
// vae/ (the tiny AutoencoderKL decoder of tests/data/vae: latent 4, one 2x upsampling),
// scheduler/scheduler_config.json (shift 3) and prompts.safetensors (3 prompts + the empty one,
// 6 tokens), text_features.safetensors (their text features [3, 16] for the tiny HPS / PickScore
// rewards, with the prompts as metadata) and text_features_other.safetensors (prompt 1 differs).
// Resolution 16 gives 8×8 latents. The rewards: tests/data/clip/reward_{aesthetic,pickscore}_tiny.
#pragma once
#include <string>

namespace vgg::test {

void write_tiny_sd3_folder(const std::string& dir);

}  // namespace vgg::test
