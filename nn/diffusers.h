// diffusers pipeline folders (StableDiffusion3Pipeline: SD3-medium, SD3.5-medium, SD3.5-large),
// read without Python:
//
//   model_index.json                      the pipeline class and its components
//   transformer/config.json               SD3Transformer2DModel (nn::MMDiTConfig::from_json)
//   transformer/diffusion_pytorch_model.safetensors, or its shards
//     diffusion_pytorch_model-0000k-of-0000n.safetensors with
//     diffusion_pytorch_model.safetensors.index.json ({"weight_map": {key: shard}})
//   vae/config.json, vae/diffusion_pytorch_model.safetensors   AutoencoderKL (nn/vae.h)
//   scheduler/scheduler_config.json       FlowMatchEulerDiscreteScheduler: "shift"
//
// The text encoders are not read: prompts come as precomputed embeddings (vggflow/sd3.h). Every
// missing or malformed file is one error naming it.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "nn/mmdit.h"
#include "nn/module.h"
#include "nn/vae.h"

namespace vgg::nn {

struct DiffusersFolder {
  std::string root;
  std::string pipeline_class;  // model_index.json "_class_name"
  MMDiTConfig transformer;
  VaeConfig vae;
  double shift = 3.0;          // the scheduler's σ shift
  int64_t num_train_timesteps = 1000;
};

// Reads and checks the configs (model_index.json, transformer/, vae/, scheduler/); weights are
// only located (every file the index names must exist), not read.
DiffusersFolder read_diffusers_folder(const std::string& dir);

// A component's weights (dir = transformer/ or vae/): the single file, or every shard of the
// index, with the checks: each key of the index is in the shard it names, no key twice, no shard
// key missing from the index. Tensors are returned under their file names, in the files' dtypes
// (f16 read as f32).
NamedTensors load_component_weights(const std::string& component_dir);

// The folder's MMDiT (diffusers names, strict) and AutoencoderKL decoder ("decoder.*" and
// "post_quant_conv.*" of vae/; the encoder's keys are skipped), in o's dtype and device.
std::shared_ptr<MMDiT> load_diffusers_transformer(const DiffusersFolder& f, LayerOptions o = {});
std::shared_ptr<AutoencoderKLDecoder> load_diffusers_vae_decoder(const DiffusersFolder& f, LayerOptions o = {});

// An AutoencoderTiny folder (TAESD3: config.json, diffusion_pytorch_model.safetensors): its decoder.
std::shared_ptr<AutoencoderTinyDecoder> load_tiny_vae_decoder(const std::string& dir, LayerOptions o = {});

}  // namespace vgg::nn
