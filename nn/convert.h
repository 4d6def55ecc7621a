// MMDiT checkpoint layouts: diffusers (transformer_blocks.N…, separate q/k/v) and Stability
// (joint_blocks.N…, fused qkv, "model.diffusion_model." prefix in single files), converted
// both ways bit-exactly (docs/mmdit.md, "Weight names"):
//   - q | k | v rows are concatenated into one qkv [3D, D] (and bias) per stream and attention;
//   - the two AdaLayerNormContinuous linears (norm_out and the last block's norm1_context) are
//     (scale, shift) in diffusers and (shift, scale) in Stability: their halves are swapped;
//   - everything else is renamed only.
#pragma once
#include <string>

#include "nn/module.h"

namespace vgg::nn {

enum class CheckpointLayout { Diffusers, Stability };

// Diffusers when "transformer_blocks.*" or "pos_embed.proj.weight" keys are present,
// Stability when "joint_blocks.*" / "x_embedder.*" are (with or without the prefix).
CheckpointLayout detect_layout(const NamedTensors& sd);

// Every key must be a known diffusers MMDiT key; the result is in Stability names with
// `prefix` prepended.
NamedTensors diffusers_to_stability(const NamedTensors& sd, const std::string& prefix = "model.diffusion_model.");
// Keys may carry the "model.diffusion_model." prefix; other components of a single file
// (first_stage_model.*, text_encoders.*, …) are skipped and counted in *skipped.
NamedTensors stability_to_diffusers(const NamedTensors& sd, int64_t* skipped = nullptr);

}  // namespace vgg::nn
