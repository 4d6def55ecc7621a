#include "nn/vae.h"

#include <cmath>

#include "autograd/ops.h"
#include "tensor/error.h"
#include "tensor/factory.h"
#include "tensor/json.h"

namespace vgg::nn {

void VaeConfig::validate() const {
  auto pos = [](const char* f, int64_t v, int64_t hi) {
    VGG_CHECK(v > 0 && v <= hi, "VAE config: ", f, " must be in [1, ", hi, "], got ", v);
  };
  pos("latent_channels", latent_channels, 1024);
  pos("out_channels", out_channels, 1024);
  pos("in_channels", in_channels, 1024);
  pos("layers_per_block", layers_per_block, 64);
  pos("norm_num_groups", norm_num_groups, 1024);
  VGG_CHECK(!block_out_channels.empty() && block_out_channels.size() <= 8, "VAE config: block_out_channels must hold 1 to 8 widths");
  for (int64_t c : block_out_channels) {
    pos("block_out_channels", c, 8192);
    VGG_CHECK(c % norm_num_groups == 0, "VAE config: block width ", c, " is not a multiple of norm_num_groups ",
              norm_num_groups);
  }
  VGG_CHECK(std::isfinite(scaling_factor) && scaling_factor != 0, "VAE config: scaling_factor must be finite and non-zero");
  VGG_CHECK(std::isfinite(shift_factor), "VAE config: shift_factor must be finite");
}

VaeConfig VaeConfig::from_json(const std::string& text) {
  const nlohmann::json j = parse_json(text, "VAE config");
  VGG_CHECK(j.is_object(), "VAE config: the JSON must be an object");
  VaeConfig c;
  auto integer = [&](const char* k, int64_t& dst) {
    if (!j.contains(k)) return;
    VGG_CHECK(j[k].is_number_integer(), "VAE config: '", k, "' must be an integer, got ", j[k].dump());
    dst = j[k].get<int64_t>();
  };
  auto real = [&](const char* k, double& dst) {
    if (!j.contains(k) || j[k].is_null()) return;
    VGG_CHECK(j[k].is_number(), "VAE config: '", k, "' must be a number, got ", j[k].dump());
    dst = j[k].get<double>();
  };
  auto boolean = [&](const char* k, bool& dst) {
    if (!j.contains(k)) return;
    VGG_CHECK(j[k].is_boolean(), "VAE config: '", k, "' must be true or false, got ", j[k].dump());
    dst = j[k].get<bool>();
  };
  integer("latent_channels", c.latent_channels);
  integer("out_channels", c.out_channels);
  integer("in_channels", c.in_channels);
  integer("layers_per_block", c.layers_per_block);
  integer("norm_num_groups", c.norm_num_groups);
  if (j.contains("block_out_channels")) {
    VGG_CHECK(j["block_out_channels"].is_array(), "VAE config: block_out_channels must be a list");
    c.block_out_channels.clear();
    for (const auto& v : j["block_out_channels"]) {
      VGG_CHECK(v.is_number_integer(), "VAE config: block_out_channels entries must be integers, got ", v.dump());
      c.block_out_channels.push_back(v.get<int64_t>());
    }
  }
  boolean("mid_block_add_attention", c.mid_block_add_attention);
  c.use_post_quant_conv = true;  // diffusers' default (SD3's config says false)
  boolean("use_post_quant_conv", c.use_post_quant_conv);
  c.use_quant_conv = true;
  boolean("use_quant_conv", c.use_quant_conv);
  c.shift_factor = 0;  // absent or null in SD1/SDXL configs
  real("scaling_factor", c.scaling_factor);
  real("shift_factor", c.shift_factor);
  if (j.contains("up_block_types")) {
    VGG_CHECK(j["up_block_types"].is_array() && j["up_block_types"].size() == c.block_out_channels.size(),
              "VAE config: up_block_types must name one block per entry of block_out_channels");
    for (const auto& t : j["up_block_types"])
      VGG_CHECK(t == "UpDecoderBlock2D", "VAE config: up block ", t.dump(), " is not supported (UpDecoderBlock2D)");
  }
  if (j.contains("down_block_types")) {
    VGG_CHECK(j["down_block_types"].is_array() && j["down_block_types"].size() == c.block_out_channels.size(),
              "VAE config: down_block_types must name one block per entry of block_out_channels");
    for (const auto& t : j["down_block_types"])
      VGG_CHECK(t == "DownEncoderBlock2D", "VAE config: down block ", t.dump(), " is not supported (DownEncoderBlock2D)");
  }
  if (j.contains("act_fn")) VGG_CHECK(j["act_fn"] == "silu", "VAE config: act_fn ", j["act_fn"].dump(), " is not supported (silu)");
  c.validate();
  return c;
}

// ---- layers -----------------------------------------------------------------------------------

GroupNorm::GroupNorm(int64_t g, int64_t c, double e, LayerOptions o) : groups(g), channels(c), eps(e) {
  VGG_CHECK(g > 0 && c > 0 && c % g == 0, "GroupNorm: ", c, " channels do not split into ", g, " groups");
  weight = new_parameter({c}, o);
  bias = new_parameter({c}, o);
  register_parameter("weight", weight);
  register_parameter("bias", bias);
  if (!o.deferred) reset_parameters(o.gen);
}

void GroupNorm::reset_parameters(Generator*) {
  fill_(weight, 1.0);
  fill_(bias, 0.0);
}

Tensor GroupNorm::forward(const Tensor& x) const {
  return ops::group_norm(x, groups, compute(weight), compute(bias), eps);
}

namespace {
constexpr double kEps = 1e-6;  // resnet_eps and the norms' eps of the diffusers encoder and decoder

// m->forward(x), recomputed in backward when `ck` (activation checkpointing of one stage)
template <class M>
Tensor stage(bool ck, const std::shared_ptr<M>& m, const Tensor& x) {
  return m->checkpointed(ck, [m](const Tensor& t) { return m->forward(t); }, x);
}

// `layers` resnets in → out, out → out, … (the caller registers them as "resnets.i" once they sit
// in its member: registered slots must not move)
std::vector<std::shared_ptr<ResnetBlock2D>> make_resnets(int64_t in, int64_t out, int64_t layers,
                                                         int64_t groups, double eps, LayerOptions o) {
  std::vector<std::shared_ptr<ResnetBlock2D>> r;
  for (int64_t i = 0; i < layers; ++i) r.push_back(std::make_shared<ResnetBlock2D>(i == 0 ? in : out, out, groups, eps, o));
  return r;
}

// GroupNorm, SiLU, conv_out: the last stage of both halves
Tensor norm_act_out(bool ck, const std::shared_ptr<GroupNorm>& norm, const Conv2d& out, const Tensor& h) {
  return out.forward(norm->checkpointed(ck, [norm](const Tensor& t) { return ops::silu(norm->forward(t)); }, h));
}
}  // namespace

ResnetBlock2D::ResnetBlock2D(int64_t in, int64_t out, int64_t groups, double eps, LayerOptions o) {
  norm1 = std::make_shared<GroupNorm>(groups, in, eps, o);
  conv1 = std::make_shared<Conv2d>(in, out, 3, 1, 1, true, o);
  norm2 = std::make_shared<GroupNorm>(groups, out, eps, o);
  conv2 = std::make_shared<Conv2d>(out, out, 3, 1, 1, true, o);
  register_module("norm1", norm1);
  register_module("conv1", conv1);
  register_module("norm2", norm2);
  register_module("conv2", conv2);
  if (in != out) {
    conv_shortcut = std::make_shared<Conv2d>(in, out, 1, 1, 0, true, o);
    register_module("conv_shortcut", conv_shortcut);
  }
}

Tensor ResnetBlock2D::forward(const Tensor& x) const {
  Tensor h = conv1->forward(ops::silu(norm1->forward(x)));
  h = conv2->forward(ops::silu(norm2->forward(h)));
  return ops::add(conv_shortcut ? conv_shortcut->forward(x) : x, h);
}

VaeAttention::VaeAttention(int64_t c, int64_t groups, double eps, LayerOptions o) {
  group_norm = std::make_shared<GroupNorm>(groups, c, eps, o);
  register_module("group_norm", group_norm);
  for (auto [slot, name] : {std::pair{&to_q, "to_q"}, {&to_k, "to_k"}, {&to_v, "to_v"}, {&to_out, "to_out.0"}}) {
    *slot = std::make_shared<Linear>(c, c, true, o);
    register_module(name, *slot);
  }
}

Tensor VaeAttention::forward(const Tensor& x) const {
  VGG_CHECK(x.dim() == 4, "VAE attention: expects [B, C, H, W], got ", describe(x));
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  // [B, C, H, W] -> [B, HW, C] tokens of the group-normalised image
  Tensor t = ops::transpose(ops::reshape(group_norm->forward(x), {b, c, h * w}), 1, 2);
  Tensor a = ops::attention(to_q->forward(t), to_k->forward(t), to_v->forward(t), 1.0 / std::sqrt(static_cast<double>(c)));
  Tensor y = ops::reshape(ops::transpose(to_out->forward(a), 1, 2), {b, c, h, w});
  return ops::add(y, x);  // residual connection
}

VaeMidBlock::VaeMidBlock(int64_t c, bool with_attention, int64_t groups, double eps, LayerOptions o) {
  resnet0 = std::make_shared<ResnetBlock2D>(c, c, groups, eps, o);
  register_module("resnets.0", resnet0);
  if (with_attention) {
    attention = std::make_shared<VaeAttention>(c, groups, eps, o);
    register_module("attentions.0", attention);
  }
  resnet1 = std::make_shared<ResnetBlock2D>(c, c, groups, eps, o);
  register_module("resnets.1", resnet1);
}

Tensor VaeMidBlock::forward(const Tensor& x, bool ck) const {
  Tensor h = stage(ck, resnet0, x);
  if (attention) h = stage(ck, attention, h);
  return stage(ck, resnet1, h);
}

UpDecoderBlock2D::UpDecoderBlock2D(int64_t in, int64_t out, int64_t layers, bool upsample, int64_t groups, double eps,
                                   LayerOptions o) {
  resnets = make_resnets(in, out, layers, groups, eps, o);
  for (size_t i = 0; i < resnets.size(); ++i) register_module("resnets." + std::to_string(i), resnets[i]);
  if (upsample) {
    upsample_conv = std::make_shared<Conv2d>(out, out, 3, 1, 1, true, o);
    register_module("upsamplers.0.conv", upsample_conv);
  }
}

Tensor UpDecoderBlock2D::forward(const Tensor& x, bool ck) const {
  Tensor h = x;
  for (const auto& r : resnets) h = stage(ck, r, h);
  if (!upsample_conv) return h;
  const auto conv = upsample_conv;
  return conv->checkpointed(ck, [conv](const Tensor& t) { return conv->forward(ops::upsample_nearest2d(t, 2)); }, h);
}

VaeDecoder::VaeDecoder(const VaeConfig& c, LayerOptions o) {
  c.validate();
  const int64_t top = c.block_out_channels.back(), g = c.norm_num_groups;
  conv_in = std::make_shared<Conv2d>(c.latent_channels, top, 3, 1, 1, true, o);
  register_module("conv_in", conv_in);
  mid_block = std::make_shared<VaeMidBlock>(top, c.mid_block_add_attention, g, kEps, o);
  register_module("mid_block", mid_block);
  const std::vector<int64_t> rev(c.block_out_channels.rbegin(), c.block_out_channels.rend());
  up_blocks.reserve(rev.size());
  int64_t prev = rev[0];
  for (size_t i = 0; i < rev.size(); ++i) {
    up_blocks.push_back(std::make_shared<UpDecoderBlock2D>(prev, rev[i], c.layers_per_block + 1, i + 1 < rev.size(), g, kEps, o));
    prev = rev[i];
  }
  for (size_t i = 0; i < up_blocks.size(); ++i) register_module("up_blocks." + std::to_string(i), up_blocks[i]);
  conv_norm_out = std::make_shared<GroupNorm>(g, c.block_out_channels[0], kEps, o);
  conv_out = std::make_shared<Conv2d>(c.block_out_channels[0], c.out_channels, 3, 1, 1, true, o);
  register_module("conv_norm_out", conv_norm_out);
  register_module("conv_out", conv_out);
}

Tensor VaeDecoder::forward(const Tensor& z) const {
  VGG_CHECK(z.dim() == 4 && z.size(1) == conv_in->weight.size(1), "VAE decoder: expects latents [B, ",
            conv_in->weight.size(1), ", h, w], got ", describe(z));
  Tensor h = mid_block->forward(conv_in->forward(z), checkpointing);
  for (const auto& b : up_blocks) h = b->forward(h, checkpointing);
  return norm_act_out(checkpointing, conv_norm_out, *conv_out, h);
}

AutoencoderKLDecoder::AutoencoderKLDecoder(const VaeConfig& c, LayerOptions o) : cfg_(c) {
  decoder = std::make_shared<VaeDecoder>(c, o);
  register_module("decoder", decoder);
  if (c.use_post_quant_conv) {
    post_quant_conv = std::make_shared<Conv2d>(c.latent_channels, c.latent_channels, 1, 1, 0, true, o);
    register_module("post_quant_conv", post_quant_conv);
  }
}

Tensor AutoencoderKLDecoder::decode(const Tensor& latents) const {
  Tensor z = ops::add(ops::mul(latents, 1.0 / cfg_.scaling_factor), cfg_.shift_factor);
  if (post_quant_conv) z = post_quant_conv->forward(z);
  return decoder->forward(z);
}

// ---- encoder ------------------------------------------------------------------------------------

DownEncoderBlock2D::DownEncoderBlock2D(int64_t in, int64_t out, int64_t layers, bool downsample, int64_t groups, double eps,
                                       LayerOptions o) {
  resnets = make_resnets(in, out, layers, groups, eps, o);
  for (size_t i = 0; i < resnets.size(); ++i) register_module("resnets." + std::to_string(i), resnets[i]);
  if (downsample) {
    downsample_conv = std::make_shared<Conv2d>(out, out, 3, 2, 0, true, o);
    register_module("downsamplers.0.conv", downsample_conv);
  }
}

Tensor DownEncoderBlock2D::forward(const Tensor& x, bool ck) const {
  Tensor h = x;
  for (const auto& r : resnets) h = stage(ck, r, h);
  if (!downsample_conv) return h;
  const auto conv = downsample_conv;  // diffusers pads (0, 1, 0, 1) with zeros, then a stride-2 conv
  return conv->checkpointed(ck, [conv](const Tensor& t) { return conv->forward(ops::pad(t, {0, 1, 0, 1})); }, h);
}

VaeEncoder::VaeEncoder(const VaeConfig& c, LayerOptions o) {
  c.validate();
  const auto& w = c.block_out_channels;
  const int64_t top = w.back(), g = c.norm_num_groups;
  conv_in = std::make_shared<Conv2d>(c.in_channels, w[0], 3, 1, 1, true, o);
  register_module("conv_in", conv_in);
  int64_t prev = w[0];
  down_blocks.reserve(w.size());  // registered slots must not move
  for (size_t i = 0; i < w.size(); ++i) {
    down_blocks.push_back(std::make_shared<DownEncoderBlock2D>(prev, w[i], c.layers_per_block, i + 1 < w.size(), g, kEps, o));
    prev = w[i];
  }
  for (size_t i = 0; i < down_blocks.size(); ++i) register_module("down_blocks." + std::to_string(i), down_blocks[i]);
  mid_block = std::make_shared<VaeMidBlock>(top, c.mid_block_add_attention, g, kEps, o);
  register_module("mid_block", mid_block);
  conv_norm_out = std::make_shared<GroupNorm>(g, top, kEps, o);
  conv_out = std::make_shared<Conv2d>(top, 2 * c.latent_channels, 3, 1, 1, true, o);
  register_module("conv_norm_out", conv_norm_out);
  register_module("conv_out", conv_out);
}

Tensor VaeEncoder::forward(const Tensor& x) const {
  const int64_t in = conv_in->weight.size(1), f = int64_t{1} << (down_blocks.size() - 1);
  VGG_CHECK(x.dim() == 4 && x.size(1) == in, "VAE encoder: expects images [B, ", in, ", H, W], got ", describe(x));
  VGG_CHECK(x.size(2) % f == 0 && x.size(3) % f == 0, "VAE encoder: image height and width must be multiples of ", f,
            ", got ", describe(x));
  Tensor h = conv_in->forward(x);
  for (const auto& b : down_blocks) h = b->forward(h, checkpointing);
  return norm_act_out(checkpointing, conv_norm_out, *conv_out, mid_block->forward(h, checkpointing));
}

AutoencoderKLEncoder::AutoencoderKLEncoder(const VaeConfig& c, LayerOptions o) : cfg_(c) {
  encoder = std::make_shared<VaeEncoder>(c, o);
  register_module("encoder", encoder);
  if (c.use_quant_conv) {
    quant_conv = std::make_shared<Conv2d>(2 * c.latent_channels, 2 * c.latent_channels, 1, 1, 0, true, o);
    register_module("quant_conv", quant_conv);
  }
}

AutoencoderKLEncoder::Posterior AutoencoderKLEncoder::posterior(const Tensor& images) const {
  Tensor m = encoder->forward(images);
  if (quant_conv) m = quant_conv->forward(m);
  const int64_t c = cfg_.latent_channels;
  return {ops::narrow(m, 1, 0, c), ops::clamp(ops::narrow(m, 1, c, c), -30.0, 20.0)};
}

Tensor AutoencoderKLEncoder::encode(const Tensor& images, const Tensor& noise) const {
  Posterior p = posterior(images);
  Tensor z = p.mean;
  if (noise.defined()) {
    VGG_CHECK(noise.shape() == p.mean.shape(), "VAE encode: noise ", describe(noise), " does not match the latents ", describe(p.mean));
    z = ops::add(z, ops::mul(ops::exp(ops::mul(p.logvar, 0.5)), noise));
  }
  return ops::mul(ops::add(z, -cfg_.shift_factor), cfg_.scaling_factor);
}

// ---- AutoencoderTiny ------------------------------------------------------------------------------

void TinyVaeConfig::validate() const {
  VGG_CHECK(latent_channels > 0 && latent_channels <= 1024 && out_channels > 0 && out_channels <= 1024,
            "tiny VAE config: channel counts must be in [1, 1024]");
  VGG_CHECK(!block_out_channels.empty() && block_out_channels.size() <= 8 && block_out_channels.size() == num_blocks.size(),
            "tiny VAE config: decoder_block_out_channels and num_decoder_blocks must have the same 1 to 8 entries");
  for (int64_t c : block_out_channels) VGG_CHECK(c > 0 && c <= 8192, "tiny VAE config: block width ", c, " is out of range");
  for (int64_t n : num_blocks) VGG_CHECK(n >= 0 && n <= 64, "tiny VAE config: block count ", n, " is out of range");
  VGG_CHECK(upsampling_scaling_factor >= 1 && upsampling_scaling_factor <= 8, "tiny VAE config: upsampling_scaling_factor ",
            upsampling_scaling_factor, " is out of range");
  VGG_CHECK(std::isfinite(scaling_factor) && scaling_factor != 0 && std::isfinite(shift_factor),
            "tiny VAE config: scaling_factor must be finite and non-zero, shift_factor finite");
}

TinyVaeConfig TinyVaeConfig::from_json(const std::string& text) {
  const nlohmann::json j = parse_json(text, "tiny VAE config");
  VGG_CHECK(j.is_object(), "tiny VAE config: the JSON must be an object");
  TinyVaeConfig c;
  auto integer = [&](const char* k, int64_t& dst) {
    if (!j.contains(k)) return;
    VGG_CHECK(j[k].is_number_integer(), "tiny VAE config: '", k, "' must be an integer, got ", j[k].dump());
    dst = j[k].get<int64_t>();
  };
  auto list = [&](const char* k, std::vector<int64_t>& dst) {
    if (!j.contains(k)) return;
    VGG_CHECK(j[k].is_array(), "tiny VAE config: '", k, "' must be a list");
    dst.clear();
    for (const auto& v : j[k]) {
      VGG_CHECK(v.is_number_integer(), "tiny VAE config: '", k, "' entries must be integers, got ", v.dump());
      dst.push_back(v.get<int64_t>());
    }
  };
  integer("latent_channels", c.latent_channels);
  integer("out_channels", c.out_channels);
  integer("upsampling_scaling_factor", c.upsampling_scaling_factor);
  list("decoder_block_out_channels", c.block_out_channels);
  list("num_decoder_blocks", c.num_blocks);
  for (const char* k : {"scaling_factor", "shift_factor"})
    if (j.contains(k) && !j[k].is_null()) {
      VGG_CHECK(j[k].is_number(), "tiny VAE config: '", k, "' must be a number, got ", j[k].dump());
      (std::string(k) == "scaling_factor" ? c.scaling_factor : c.shift_factor) = j[k].get<double>();
    }
  if (j.contains("act_fn")) VGG_CHECK(j["act_fn"] == "relu", "tiny VAE config: act_fn ", j["act_fn"].dump(), " is not supported (relu)");
  c.validate();
  return c;
}

TinyBlock::TinyBlock(int64_t in, int64_t out, LayerOptions o) {
  conv0 = std::make_shared<Conv2d>(in, out, 3, 1, 1, true, o);
  conv2 = std::make_shared<Conv2d>(out, out, 3, 1, 1, true, o);
  conv4 = std::make_shared<Conv2d>(out, out, 3, 1, 1, true, o);
  register_module("conv.0", conv0);
  register_module("conv.2", conv2);
  register_module("conv.4", conv4);
  if (in != out) {
    skip = std::make_shared<Conv2d>(in, out, 1, 1, 0, false, o);
    register_module("skip", skip);
  }
}

Tensor TinyBlock::forward(const Tensor& x) const {
  Tensor h = conv4->forward(ops::relu(conv2->forward(ops::relu(conv0->forward(x)))));
  return ops::relu(ops::add(h, skip ? skip->forward(x) : x));
}

TinyDecoder::TinyDecoder(const TinyVaeConfig& c, LayerOptions o) : cfg_(c) {
  c.validate();
  // the indices of diffusers' nn.Sequential: activations and upsamplings hold no parameters
  int64_t index = 0;
  std::vector<std::pair<int64_t, Layer>> numbered;
  numbered.push_back({index, {std::make_shared<Conv2d>(c.latent_channels, c.block_out_channels[0], 3, 1, 1, true, o), nullptr}});
  index += 2;  // conv, ReLU
  for (size_t i = 0; i < c.num_blocks.size(); ++i) {
    const bool last = i + 1 == c.num_blocks.size();
    const int64_t w = c.block_out_channels[i];
    for (int64_t b = 0; b < c.num_blocks[i]; ++b) numbered.push_back({index++, {nullptr, std::make_shared<TinyBlock>(w, w, o)}});
    if (!last) numbered.push_back({index++, {nullptr, nullptr}});  // nn.Upsample
    numbered.push_back({index++, {std::make_shared<Conv2d>(w, last ? c.out_channels : w, 3, 1, 1, last, o), nullptr}});
  }
  layers.reserve(numbered.size());
  for (auto& [i, l] : numbered) layers.push_back(l);
  for (size_t k = 0; k < layers.size(); ++k) {
    const std::string name = "layers." + std::to_string(numbered[k].first);
    if (layers[k].conv) register_module(name, layers[k].conv);
    if (layers[k].block) register_module(name, layers[k].block);
  }
}

Tensor TinyDecoder::forward(const Tensor& z) const {
  VGG_CHECK(z.dim() == 4 && z.size(1) == cfg_.latent_channels, "tiny VAE decoder: expects latents [B, ",
            cfg_.latent_channels, ", h, w], got ", describe(z));
  Tensor h = ops::mul(ops::tanh(ops::mul(z, 1.0 / 3)), 3.0);  // soft clamp to (-3, 3)
  for (size_t k = 0; k < layers.size(); ++k) {
    const Layer& l = layers[k];
    if (l.conv) h = l.conv->forward(h);
    else if (l.block) h = l.block->forward(h);
    else h = ops::upsample_nearest2d(h, cfg_.upsampling_scaling_factor);
    if (k == 0) h = ops::relu(h);
  }
  return ops::add(ops::mul(h, 2.0), -1.0);  // [0, 1] -> [-1, 1]
}

AutoencoderTinyDecoder::AutoencoderTinyDecoder(const TinyVaeConfig& c, LayerOptions o) : cfg_(c) {
  decoder = std::make_shared<TinyDecoder>(c, o);
  register_module("decoder", decoder);
}

Tensor AutoencoderTinyDecoder::decode(const Tensor& latents) const {
  return decoder->forward(ops::add(ops::mul(latents, 1.0 / cfg_.scaling_factor), cfg_.shift_factor));
}

}  // namespace vgg::nn
