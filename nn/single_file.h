// Stability's single-file SD3 / SD3.5 checkpoints (sd3_medium.safetensors, sd3.5_large.safetensors,
// …) as diffusers pipeline folders (nn/diffusers.h), so `vgg_train --pipeline sd3 --model DIR` reads
// either. A single file holds:
//   "model.diffusion_model.*"   the MMDiT in the Stability layout (nn/convert.h maps it);
//   "first_stage_model.*"       the VAE in the original latent-diffusion (LDM) names;
//   "text_encoders.*"           CLIP-L/G and T5 (when included): not converted, prompts come
//                               precomputed (tools/embed_prompts.py).
//
// LDM VAE names and diffusers' AutoencoderKL names, as diffusers' single-file loader relates them
// (n = the number of resolution levels; LDM numbers the decoder's levels from the highest
// resolution, diffusers from the lowest):
//   {encoder,decoder}.conv_in, conv_out, quant_conv, post_quant_conv      the same
//   {encoder,decoder}.norm_out                                              .conv_norm_out
//   encoder.down.i.block.j.{norm1,conv1,norm2,conv2}                        encoder.down_blocks.i.resnets.j.…
//   ….nin_shortcut                                                          ….conv_shortcut
//   encoder.down.i.downsample.conv                                          encoder.down_blocks.i.downsamplers.0.conv
//   decoder.up.i.block.j.…                                                  decoder.up_blocks.(n−1−i).resnets.j.…
//   decoder.up.i.upsample.conv                                              decoder.up_blocks.(n−1−i).upsamplers.0.conv
//   *.mid.block_1, *.mid.block_2                                            *.mid_block.resnets.0, .1
//   *.mid.attn_1.{norm,q,k,v,proj_out}                                      *.mid_block.attentions.0.{group_norm,to_q,
//                                                                           to_k,to_v,to_out.0}; 1×1 convolution
//                                                                           weights [C, C, 1, 1] ↔ linear [C, C]
#pragma once
#include <optional>
#include <string>

#include "nn/mmdit.h"
#include "nn/module.h"
#include "nn/vae.h"

namespace vgg::nn {

// Keys without the "first_stage_model." prefix. Every key must be an LDM (resp. diffusers) VAE
// key; anything else is refused naming it. Tensors are shared, only the attention weights reshape.
NamedTensors ldm_vae_to_diffusers(const NamedTensors& sd);
NamedTensors diffusers_vae_to_ldm(const NamedTensors& sd);

// Configs from diffusers-named weights' shapes. The VAE's norm groups are not in the shapes: 32,
// as in every SD3 / SD3.5 VAE (and its scaling and shift factors 1.5305, 0.0609). The MMDiT's head
// dimension comes from the qk-norm weights when present, else 64 (every SD3 / SD3.5 model);
// sample_size is 128 (1024² images), the size the published configs carry.
VaeConfig infer_vae_config(const NamedTensors& diffusers_vae);
MMDiTConfig infer_mmdit_config(const NamedTensors& diffusers_transformer);

struct SingleFileOptions {
  std::optional<MMDiTConfig> transformer;  // instead of the inferred config
  std::optional<VaeConfig> vae;            // instead of the inferred config
  double shift = 3.0;                      // the scheduler's σ shift (3.0 for SD3 and SD3.5)
  std::optional<DType> dtype;              // cast the floating tensors (default: as read; f16 reads as f32)
  bool force = false;                      // replace an existing OUT
};
struct SingleFileReport {
  int64_t transformer_tensors = 0, vae_tensors = 0, skipped = 0;  // skipped: text encoders and the like
  MMDiTConfig transformer;
  VaeConfig vae;
};

// Writes OUT as a diffusers folder: model_index.json, transformer/ (config.json and
// diffusion_pytorch_model.safetensors), vae/ (the same), scheduler/scheduler_config.json. The
// folder is written beside OUT and renamed into place, so OUT is either complete or untouched.
// The configs are checked against the weights (parameter counts) before anything is written.
SingleFileReport single_file_to_diffusers_folder(const std::string& in, const std::string& out,
                                                 const SingleFileOptions& o = {});

// The JSON diffusers writes as vae/config.json for this config.
std::string vae_config_json(const VaeConfig& c);

}  // namespace vgg::nn
