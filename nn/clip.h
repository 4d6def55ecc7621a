// CLIP vision towers (transformers `CLIPVisionModelWithProjection`, pre-LN ViT) and the reward heads
// built on their image embeddings. Parameter names are transformers' ("vision_model.*",
// "visual_projection.weight"); open_clip checkpoints ("visual.*": fused in_proj, proj as [D, P])
// are mapped onto them by open_clip_visual_to_transformers. OpenAI ViT-L/14 uses quick_gelu,
// open_clip ViT-H/14 gelu (erf). (tests/nn/test_clip.cpp against transformers: tools/golden/clip.py.)
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace vgg::nn {

struct ClipVisionConfig {
  int64_t hidden_size = 1024, intermediate_size = 4096, num_hidden_layers = 24, num_attention_heads = 16;
  int64_t image_size = 224, patch_size = 14, projection_dim = 768, num_channels = 3;
  std::string hidden_act = "quick_gelu";  // or "gelu" (erf)
  double layer_norm_eps = 1e-5;
  static ClipVisionConfig vit_l14();  // OpenAI CLIP ViT-L/14 (the aesthetic predictor's tower)
  static ClipVisionConfig vit_h14();  // open_clip ViT-H/14 (HPSv2.1, PickScore)
  // transformers' config.json: a CLIPVisionConfig, or a CLIPConfig holding "vision_config"
  static ClipVisionConfig from_json(const std::string& json_text);
  void validate() const;
  int64_t num_positions() const { return (image_size / patch_size) * (image_size / patch_size) + 1; }
};

class ClipAttention : public Module {  // "self_attn"
 public:
  ClipAttention(int64_t dim, int64_t heads, LayerOptions o = {});
  std::string type_name() const override { return "CLIPAttention"; }
  Tensor forward(const Tensor& x) const;  // [B, T, D]
  std::shared_ptr<Linear> q_proj, k_proj, v_proj, out_proj;
  int64_t heads;
};

class ClipEncoderLayer : public Module {  // "encoder.layers.i"
 public:
  ClipEncoderLayer(const ClipVisionConfig& c, LayerOptions o = {});
  std::string type_name() const override { return "CLIPEncoderLayer"; }
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<LayerNorm> layer_norm1, layer_norm2;
  std::shared_ptr<ClipAttention> self_attn;
  std::shared_ptr<Linear> fc1, fc2;  // "mlp.fc1", "mlp.fc2"
  bool quick;
};

// "vision_model": embeddings (class token, patch conv without bias, learned positions), pre-LN,
// the encoder, and post-LN of the class token.
class ClipVisionTransformer : public Module {
 public:
  explicit ClipVisionTransformer(const ClipVisionConfig& c, LayerOptions o = {});
  std::string type_name() const override { return "CLIPVisionTransformer"; }
  Tensor forward(const Tensor& pixels) const;  // [B, C, S, S] normalised -> pooled [B, D]
  bool checkpointing = false;                  // recompute each encoder layer in backward
  Tensor class_embedding;                      // "embeddings.class_embedding"
  std::shared_ptr<Conv2d> patch_embedding;     // "embeddings.patch_embedding"
  std::shared_ptr<Embedding> position_embedding;  // "embeddings.position_embedding"
  std::shared_ptr<LayerNorm> pre_layrnorm, post_layernorm;
  std::vector<std::shared_ptr<ClipEncoderLayer>> layers;

 private:
  ClipVisionConfig cfg_;
};

class ClipVisionWithProjection : public Module {
 public:
  explicit ClipVisionWithProjection(const ClipVisionConfig& c, LayerOptions o = {});
  std::string type_name() const override { return "CLIPVisionModelWithProjection"; }
  Tensor forward(const Tensor& pixels) const;  // image embeddings [B, projection_dim] (not normalised)
  const ClipVisionConfig& config() const { return cfg_; }
  std::shared_ptr<ClipVisionTransformer> vision_model;
  std::shared_ptr<Linear> visual_projection;

 private:
  ClipVisionConfig cfg_;
};

// An open_clip state dict's visual tower ("visual.*"; other keys — the text tower, logit_scale —
// are skipped) under transformers' names: in_proj split into q/k/v, proj transposed. An unknown
// "visual.*" key is an error naming it.
NamedTensors open_clip_visual_to_transformers(const NamedTensors& sd);

// CLIP's input transform as differentiable ops: images [B, 3, H, W] in [0, 1] -> shortest side
// resized to `size` (bicubic, anti-aliased, as torchvision's tensor Resize), centre crop to
// size x size, then (x − mean) / std with CLIP's channel statistics.
Tensor clip_preprocess(const Tensor& images, int64_t size = 224);

// The LAION aesthetic predictor v2 head: an MLP with no activations, "layers.0/2/4/6/7"
// (Linear 768→1024→128→64→16→1; the odd indices are dropouts), on L2-normalised embeddings.
class AestheticMLP : public Module {
 public:
  explicit AestheticMLP(int64_t in = 768, std::vector<int64_t> hidden = {1024, 128, 64, 16}, LayerOptions o = {});
  std::string type_name() const override { return "AestheticMLP"; }
  Tensor forward(const Tensor& image_embeds) const;  // [B, in] -> [B] scores
  std::vector<std::shared_ptr<Linear>> layers;
};

}  // namespace vgg::nn
