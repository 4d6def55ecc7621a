#include "nn/clip.h"

#include <cmath>
#include <map>

#include "autograd/ops.h"
#include "tensor/error.h"
#include "tensor/factory.h"
#include "tensor/json.h"

namespace vgg::nn {

// ---- config ---------------------------------------------------------------------------------

ClipVisionConfig ClipVisionConfig::vit_l14() { return {}; }

ClipVisionConfig ClipVisionConfig::vit_h14() {
  ClipVisionConfig c;
  c.hidden_size = 1280, c.intermediate_size = 5120, c.num_hidden_layers = 32, c.num_attention_heads = 16;
  c.projection_dim = 1024, c.hidden_act = "gelu";
  return c;
}

void ClipVisionConfig::validate() const {
  auto pos = [](const char* f, int64_t v, int64_t hi) {
    VGG_CHECK(v > 0 && v <= hi, "CLIP vision config: ", f, " must be in [1, ", hi, "], got ", v);
  };
  pos("hidden_size", hidden_size, 16384);
  pos("intermediate_size", intermediate_size, 65536);
  pos("num_hidden_layers", num_hidden_layers, 256);
  pos("num_attention_heads", num_attention_heads, 256);
  pos("image_size", image_size, 4096);
  pos("patch_size", patch_size, 512);
  pos("projection_dim", projection_dim, 16384);
  pos("num_channels", num_channels, 16);
  VGG_CHECK(hidden_size % num_attention_heads == 0, "CLIP vision config: hidden_size ", hidden_size,
            " is not a multiple of num_attention_heads ", num_attention_heads);
  VGG_CHECK(image_size % patch_size == 0, "CLIP vision config: image_size ", image_size, " is not a multiple of patch_size ",
            patch_size);
  VGG_CHECK(hidden_act == "quick_gelu" || hidden_act == "gelu", "CLIP vision config: hidden_act must be quick_gelu or gelu, got '",
            hidden_act, "'");
  VGG_CHECK(std::isfinite(layer_norm_eps) && layer_norm_eps > 0, "CLIP vision config: layer_norm_eps must be positive");
}

ClipVisionConfig ClipVisionConfig::from_json(const std::string& text) {
  nlohmann::json j = parse_json(text, "CLIP vision config");
  VGG_CHECK(j.is_object(), "CLIP vision config: the JSON must be an object");
  if (j.contains("vision_config")) j = j["vision_config"];
  VGG_CHECK(j.is_object(), "CLIP vision config: vision_config must be an object");
  ClipVisionConfig c;
  auto integer = [&](const char* k, int64_t& dst) {
    if (!j.contains(k)) return;
    VGG_CHECK(j[k].is_number_integer(), "CLIP vision config: '", k, "' must be an integer, got ", j[k].dump());
    dst = j[k].get<int64_t>();
  };
  integer("hidden_size", c.hidden_size);
  integer("intermediate_size", c.intermediate_size);
  integer("num_hidden_layers", c.num_hidden_layers);
  integer("num_attention_heads", c.num_attention_heads);
  integer("image_size", c.image_size);
  integer("patch_size", c.patch_size);
  integer("projection_dim", c.projection_dim);
  integer("num_channels", c.num_channels);
  if (j.contains("hidden_act")) {
    VGG_CHECK(j["hidden_act"].is_string(), "CLIP vision config: 'hidden_act' must be a string");
    c.hidden_act = j["hidden_act"].get<std::string>();
  }
  if (j.contains("layer_norm_eps")) {
    VGG_CHECK(j["layer_norm_eps"].is_number(), "CLIP vision config: 'layer_norm_eps' must be a number");
    c.layer_norm_eps = j["layer_norm_eps"].get<double>();
  }
  c.validate();
  return c;
}

// ---- the tower --------------------------------------------------------------------------------

ClipAttention::ClipAttention(int64_t dim, int64_t h, LayerOptions o) : heads(h) {
  for (auto [slot, name] : {std::pair{&q_proj, "q_proj"}, {&k_proj, "k_proj"}, {&v_proj, "v_proj"}, {&out_proj, "out_proj"}}) {
    *slot = std::make_shared<Linear>(dim, dim, true, o);
    register_module(name, *slot);
  }
}

Tensor ClipAttention::forward(const Tensor& x) const {
  const int64_t b = x.size(0), t = x.size(1), d = x.size(2), hd = d / heads;
  auto split = [&](const Tensor& y) { return ops::transpose(ops::reshape(y, {b, t, heads, hd}), 1, 2); };  // [B, H, T, hd]
  Tensor a = ops::attention(split(q_proj->forward(x)), split(k_proj->forward(x)), split(v_proj->forward(x)),
                            1.0 / std::sqrt(static_cast<double>(hd)));
  return out_proj->forward(ops::reshape(ops::transpose(a, 1, 2), {b, t, d}));
}

ClipEncoderLayer::ClipEncoderLayer(const ClipVisionConfig& c, LayerOptions o) : quick(c.hidden_act == "quick_gelu") {
  layer_norm1 = std::make_shared<LayerNorm>(c.hidden_size, c.layer_norm_eps, true, o);
  self_attn = std::make_shared<ClipAttention>(c.hidden_size, c.num_attention_heads, o);
  layer_norm2 = std::make_shared<LayerNorm>(c.hidden_size, c.layer_norm_eps, true, o);
  fc1 = std::make_shared<Linear>(c.hidden_size, c.intermediate_size, true, o);
  fc2 = std::make_shared<Linear>(c.intermediate_size, c.hidden_size, true, o);
  register_module("self_attn", self_attn);
  register_module("layer_norm1", layer_norm1);
  register_module("mlp.fc1", fc1);
  register_module("mlp.fc2", fc2);
  register_module("layer_norm2", layer_norm2);
}

Tensor ClipEncoderLayer::forward(const Tensor& x) const {
  Tensor h = ops::add(x, self_attn->forward(layer_norm1->forward(x)));
  Tensor m = fc1->forward(layer_norm2->forward(h));
  m = quick ? ops::quick_gelu(m) : ops::gelu(m);
  return ops::add(h, fc2->forward(m));
}

ClipVisionTransformer::ClipVisionTransformer(const ClipVisionConfig& c, LayerOptions o) : cfg_(c) {
  c.validate();
  class_embedding = new_parameter({c.hidden_size}, o);
  register_parameter("embeddings.class_embedding", class_embedding);
  patch_embedding = std::make_shared<Conv2d>(c.num_channels, c.hidden_size, c.patch_size, c.patch_size, 0, false, o);
  position_embedding = std::make_shared<Embedding>(c.num_positions(), c.hidden_size, o);
  pre_layrnorm = std::make_shared<LayerNorm>(c.hidden_size, c.layer_norm_eps, true, o);
  register_module("embeddings.patch_embedding", patch_embedding);
  register_module("embeddings.position_embedding", position_embedding);
  register_module("pre_layrnorm", pre_layrnorm);
  layers.reserve(static_cast<size_t>(c.num_hidden_layers));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) layers.push_back(std::make_shared<ClipEncoderLayer>(c, o));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    register_module("encoder.layers." + std::to_string(l), layers[static_cast<size_t>(l)]);
  post_layernorm = std::make_shared<LayerNorm>(c.hidden_size, c.layer_norm_eps, true, o);
  register_module("post_layernorm", post_layernorm);
  if (!o.deferred) uniform_(class_embedding, -0.02, 0.02, o.gen);
}

Tensor ClipVisionTransformer::forward(const Tensor& pixels) const {
  VGG_CHECK(pixels.dim() == 4 && pixels.size(1) == cfg_.num_channels && pixels.size(2) == cfg_.image_size &&
                pixels.size(3) == cfg_.image_size,
            "CLIP vision tower: expects pixels [B, ", cfg_.num_channels, ", ", cfg_.image_size, ", ", cfg_.image_size,
            "], got ", describe(pixels));
  const int64_t b = pixels.size(0), d = cfg_.hidden_size;
  Tensor patches = ops::transpose(ops::flatten(patch_embedding->forward(pixels), 2), 1, 2);  // [B, g², D]
  Tensor cls = ops::expand(ops::reshape(compute(class_embedding), {1, 1, d}), {b, 1, d});
  Tensor h = ops::add(ops::cat({cls, patches}, 1), compute(position_embedding->weight));
  h = pre_layrnorm->forward(h);
  for (const auto& l : layers) h = l->checkpointed(checkpointing, [l](const Tensor& t) { return l->forward(t); }, h);
  return post_layernorm->forward(ops::reshape(ops::narrow(h, 1, 0, 1), {b, d}));
}

ClipVisionWithProjection::ClipVisionWithProjection(const ClipVisionConfig& c, LayerOptions o) : cfg_(c) {
  vision_model = std::make_shared<ClipVisionTransformer>(c, o);
  visual_projection = std::make_shared<Linear>(c.hidden_size, c.projection_dim, false, o);
  register_module("vision_model", vision_model);
  register_module("visual_projection", visual_projection);
}

Tensor ClipVisionWithProjection::forward(const Tensor& pixels) const {
  return visual_projection->forward(vision_model->forward(pixels));
}

NamedTensors open_clip_visual_to_transformers(const NamedTensors& sd) {
  NamedTensors out;
  const std::string vm = "vision_model.";
  auto put = [&](const std::string& name, const Tensor& t) { out.emplace_back(name, t); };
  static const std::map<std::string, std::string> direct = {
      {"conv1.weight", "embeddings.patch_embedding.weight"},
      {"class_embedding", "embeddings.class_embedding"},
      {"positional_embedding", "embeddings.position_embedding.weight"},
      {"ln_pre.weight", "pre_layrnorm.weight"},     {"ln_pre.bias", "pre_layrnorm.bias"},
      {"ln_post.weight", "post_layernorm.weight"},  {"ln_post.bias", "post_layernorm.bias"}};
  static const std::map<std::string, std::string> block = {
      {"ln_1.weight", "layer_norm1.weight"},         {"ln_1.bias", "layer_norm1.bias"},
      {"ln_2.weight", "layer_norm2.weight"},         {"ln_2.bias", "layer_norm2.bias"},
      {"attn.out_proj.weight", "self_attn.out_proj.weight"}, {"attn.out_proj.bias", "self_attn.out_proj.bias"},
      {"mlp.c_fc.weight", "mlp.fc1.weight"},         {"mlp.c_fc.bias", "mlp.fc1.bias"},
      {"mlp.c_proj.weight", "mlp.fc2.weight"},       {"mlp.c_proj.bias", "mlp.fc2.bias"}};
  const std::string rb = "transformer.resblocks.";
  for (const auto& [key, t] : sd) {
    if (key.rfind("visual.", 0) != 0) continue;  // the text tower, logit_scale
    const std::string k = key.substr(7);
    if (auto it = direct.find(k); it != direct.end()) {
      put(vm + it->second, t);
    } else if (k == "proj") {
      VGG_CHECK(t.dim() == 2, "open_clip visual.proj must be [width, projection], got ", describe(t));
      put("visual_projection.weight", ops::contiguous(ops::transpose(t, 0, 1)));
    } else if (k.rfind(rb, 0) == 0) {
      const size_t dot = k.find('.', rb.size());
      VGG_CHECK(dot != std::string::npos, "open_clip: unexpected key '", key, "'");
      const std::string layer = k.substr(rb.size(), dot - rb.size()), rest = k.substr(dot + 1);
      const std::string to = vm + "encoder.layers." + layer + ".";
      if (auto b = block.find(rest); b != block.end()) {
        put(to + b->second, t);
      } else if (rest == "attn.in_proj_weight" || rest == "attn.in_proj_bias") {
        VGG_CHECK(t.size(0) % 3 == 0, "open_clip: ", key, " ", describe(t), " does not split into q, k, v");
        const int64_t d = t.size(0) / 3;
        const char* names[3] = {"q_proj", "k_proj", "v_proj"};
        const std::string suffix = rest == "attn.in_proj_weight" ? ".weight" : ".bias";
        for (int i = 0; i < 3; ++i) put(to + "self_attn." + names[i] + suffix, ops::contiguous(ops::narrow(t, 0, i * d, d)));
      } else {
        VGG_FAIL("open_clip: unknown visual key '", key, "'");
      }
    } else {
      VGG_FAIL("open_clip: unknown visual key '", key, "'");
    }
  }
  VGG_CHECK(!out.empty(), "open_clip: the state dict has no 'visual.*' keys");
  return out;
}

Tensor clip_preprocess(const Tensor& images, int64_t size) {
  VGG_CHECK(images.dim() == 4 && images.size(1) == 3, "clip_preprocess: expects images [B, 3, H, W], got ", describe(images));
  VGG_CHECK(size >= 1, "clip_preprocess: size must be positive, got ", size);
  const int64_t h = images.size(2), w = images.size(3);
  // shortest side to `size` (torchvision: the other side int(size * long / short))
  const int64_t oh = h <= w ? size : static_cast<int64_t>(static_cast<double>(size) * h / w);
  const int64_t ow = h <= w ? static_cast<int64_t>(static_cast<double>(size) * w / h) : size;
  Tensor x = ops::resize2d(images, oh, ow, ops::ResizeMode::Bicubic, /*antialias=*/true);
  // centre crop (torchvision: top = round((H − size) / 2))
  // Python round() as torchvision: ties to even (std::nearbyint in the default rounding mode)
  const int64_t top = static_cast<int64_t>(std::nearbyint((oh - size) / 2.0)),
                left = static_cast<int64_t>(std::nearbyint((ow - size) / 2.0));
  x = ops::narrow(ops::narrow(x, 2, top, size), 3, left, size);
  const Tensor mean = ops::to(from_vector(std::vector<double>{0.48145466, 0.4578275, 0.40821073}, {1, 3, 1, 1}, {DType::F64}), images.dtype());
  const Tensor inv_std = ops::to(from_vector(std::vector<double>{1 / 0.26862954, 1 / 0.26130258, 1 / 0.27577711}, {1, 3, 1, 1}, {DType::F64}), images.dtype());
  return ops::mul(ops::sub(x, ops::to(mean, images.device())), ops::to(inv_std, images.device()));
}

AestheticMLP::AestheticMLP(int64_t in, std::vector<int64_t> hidden, LayerOptions o) {
  VGG_CHECK(in > 0 && !hidden.empty(), "AestheticMLP: bad sizes");
  hidden.push_back(1);
  int64_t prev = in;
  layers.reserve(hidden.size());
  for (int64_t h : hidden) layers.push_back(std::make_shared<Linear>(prev, h, true, o)), prev = h;
  // "layers.0, 2, 4, 6, 7": a dropout follows each of the first three hidden layers
  for (size_t i = 0; i < layers.size(); ++i) {
    const size_t index = i < 4 ? 2 * i : i + 3;
    register_module("layers." + std::to_string(index), layers[i]);
  }
}

Tensor AestheticMLP::forward(const Tensor& e) const {
  VGG_CHECK(e.dim() == 2 && e.size(1) == layers[0]->in_features(), "AestheticMLP: expects embeddings [B, ",
            layers[0]->in_features(), "], got ", describe(e));
  Tensor x = ops::div(e, ops::norm(e, 2.0, {1}, true));  // L2-normalised
  for (const auto& l : layers) x = l->forward(x);
  return ops::reshape(x, {e.size(0)});
}

}  // namespace vgg::nn
