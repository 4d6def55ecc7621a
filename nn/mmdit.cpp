#include "nn/mmdit.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "autograd/checkpoint.h"
#include "autograd/grad_mode.h"
#include "tensor/error.h"
#include "tensor/factory.h"
#include "tensor/json.h"

namespace vgg::nn {

// ---- configuration ------------------------------------------------------------------------
bool MMDiTConfig::is_dual(int64_t layer) const {
  return std::find(dual_attention_layers.begin(), dual_attention_layers.end(), layer) != dual_attention_layers.end();
}

void MMDiTConfig::validate() const {
  // positive and at most a bound far above any released model (SD3.5-large: 38 layers, 38 heads of
  // 64, joint 4096, pooled 2048, 16 channels), so a config cannot drive allocation or overflow dim()
  auto pos = [](const char* f, int64_t v, int64_t hi) {
    VGG_CHECK(v > 0, "MMDiT config: ", f, " must be positive, got ", v);
    VGG_CHECK(v <= hi, "MMDiT config: ", f, " is ", v, ", more than the supported ", hi);
  };
  pos("sample_size", sample_size, 4096);
  pos("patch_size", patch_size, 64);
  pos("in_channels", in_channels, 1024);
  pos("out_channels", out_channels, 1024);
  pos("num_layers", num_layers, 512);
  pos("attention_head_dim", attention_head_dim, 1024);
  pos("num_attention_heads", num_attention_heads, 1024);
  pos("joint_attention_dim", joint_attention_dim, 65536);
  pos("pooled_projection_dim", pooled_projection_dim, 65536);
  pos("pos_embed_max_size", pos_embed_max_size, 4096);
  // the blocks' weights alone are ~12·D² per stream and layer: refuse what no device can hold
  const double D = static_cast<double>(dim());
  const double params = 24.0 * D * D * static_cast<double>(num_layers);
  VGG_CHECK(params <= 1e11, "MMDiT config: ", num_layers, " layers of width ", dim(), " would be about ", params / 1e9,
            " G parameters (at most 100 G are supported)");
  VGG_CHECK(caption_projection_dim == dim(), "MMDiT config: caption_projection_dim (", caption_projection_dim,
            ") must equal num_attention_heads x attention_head_dim (", dim(), ")");
  VGG_CHECK(dim() % 4 == 0, "MMDiT config: the width ", dim(), " must be a multiple of 4 (2-D sin-cos table)");
  VGG_CHECK(sample_size % patch_size == 0, "MMDiT config: sample_size ", sample_size,
            " is not a multiple of patch_size ", patch_size);
  for (int64_t l : dual_attention_layers)
    VGG_CHECK(l >= 0 && l < num_layers - 1, "MMDiT config: dual_attention_layers entry ", l,
              " must be a regular block in [0, ", num_layers - 1, ")");
}

MMDiTConfig MMDiTConfig::named(const std::string& name) {
  MMDiTConfig c;  // defaults are the tiny SD3 config of spec §8.1
  if (name == "tiny") return c;
  if (name == "tiny-sd35m") {
    c.qk_norm = true;
    c.dual_attention_layers = {0, 1};
    return c;
  }
  if (name == "tiny-sd35l") {
    c.qk_norm = true;
    return c;
  }
  if (name == "small") {  // training smoke tests: 6 layers, 4 x 64 heads
    c.num_layers = 6;
    c.num_attention_heads = 4;
    c.caption_projection_dim = 256;
    return c;
  }
  MMDiTConfig big;
  big.sample_size = 128;
  big.in_channels = big.out_channels = 16;
  big.num_layers = 24;
  big.num_attention_heads = 24;
  big.joint_attention_dim = 4096;
  big.caption_projection_dim = 1536;
  big.pooled_projection_dim = 2048;
  big.pos_embed_max_size = 192;
  if (name == "sd3-medium") return big;
  if (name == "sd3.5-medium") {
    big.pos_embed_max_size = 384;
    big.qk_norm = true;
    for (int64_t i = 0; i <= 12; ++i) big.dual_attention_layers.push_back(i);
    return big;
  }
  if (name == "sd3.5-large") {
    big.num_layers = 38;
    big.num_attention_heads = 38;
    big.caption_projection_dim = 2432;
    big.qk_norm = true;
    return big;
  }
  std::string all;
  for (const auto& n : names()) all += (all.empty() ? "" : ", ") + n;
  VGG_FAIL("unknown MMDiT config '", name, "' (known: ", all, ")");
}

std::vector<std::string> MMDiTConfig::names() {
  return {"tiny", "tiny-sd35m", "tiny-sd35l", "small", "sd3-medium", "sd3.5-medium", "sd3.5-large"};
}

MMDiTConfig MMDiTConfig::from_json(const std::string& text) {
  const nlohmann::json j = parse_json(text, "MMDiT config");
  VGG_CHECK(j.is_object(), "MMDiT config: the JSON must be an object");
  MMDiTConfig c;
  // SD3.5 configs may carry the diffusers class defaults for fields that are not in the
  // released models; start from the class-independent tiny defaults and require the sizes.
  auto integer = [&](const char* key, int64_t& dst) {
    if (!j.contains(key)) return;
    VGG_CHECK(j[key].is_number_integer(), "MMDiT config: '", key, "' must be an integer, got ", j[key].dump());
    dst = j[key].get<int64_t>();
  };
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    static const char* known[] = {"sample_size",         "patch_size",           "in_channels",
                                  "out_channels",        "num_layers",           "attention_head_dim",
                                  "num_attention_heads", "joint_attention_dim",  "caption_projection_dim",
                                  "pooled_projection_dim", "pos_embed_max_size", "qk_norm",
                                  "dual_attention_layers"};
    bool ok = !k.empty() && k[0] == '_';
    for (const char* kn : known) ok = ok || k == kn;
    VGG_CHECK(ok, "MMDiT config: unknown key '", k, "'");
  }
  integer("sample_size", c.sample_size);
  integer("patch_size", c.patch_size);
  integer("in_channels", c.in_channels);
  c.out_channels = c.in_channels;
  if (j.contains("out_channels") && !j["out_channels"].is_null()) integer("out_channels", c.out_channels);
  integer("num_layers", c.num_layers);
  integer("attention_head_dim", c.attention_head_dim);
  integer("num_attention_heads", c.num_attention_heads);
  integer("joint_attention_dim", c.joint_attention_dim);
  c.caption_projection_dim = c.dim();
  integer("caption_projection_dim", c.caption_projection_dim);
  integer("pooled_projection_dim", c.pooled_projection_dim);
  integer("pos_embed_max_size", c.pos_embed_max_size);
  if (j.contains("qk_norm") && !j["qk_norm"].is_null()) {
    VGG_CHECK(j["qk_norm"] == "rms_norm", "MMDiT config: qk_norm must be null or \"rms_norm\", got ",
              j["qk_norm"].dump());
    c.qk_norm = true;
  }
  if (j.contains("dual_attention_layers") && !j["dual_attention_layers"].is_null()) {
    VGG_CHECK(j["dual_attention_layers"].is_array(), "MMDiT config: dual_attention_layers must be a list");
    for (const auto& v : j["dual_attention_layers"]) {
      VGG_CHECK(v.is_number_integer(), "MMDiT config: dual_attention_layers entries must be integers, got ", v.dump());
      c.dual_attention_layers.push_back(v.get<int64_t>());
    }
  }
  c.validate();
  return c;
}

std::string MMDiTConfig::to_json() const {
  nlohmann::ordered_json j;
  j["_class_name"] = "SD3Transformer2DModel";
  j["sample_size"] = sample_size;
  j["patch_size"] = patch_size;
  j["in_channels"] = in_channels;
  j["out_channels"] = out_channels;
  j["num_layers"] = num_layers;
  j["attention_head_dim"] = attention_head_dim;
  j["num_attention_heads"] = num_attention_heads;
  j["joint_attention_dim"] = joint_attention_dim;
  j["caption_projection_dim"] = caption_projection_dim;
  j["pooled_projection_dim"] = pooled_projection_dim;
  j["pos_embed_max_size"] = pos_embed_max_size;
  j["qk_norm"] = qk_norm ? nlohmann::ordered_json("rms_norm") : nlohmann::ordered_json(nullptr);
  j["dual_attention_layers"] = dual_attention_layers;
  return j.dump(2);
}

int64_t MMDiTConfig::expected_parameters() const {
  const int64_t D = dim(), hd = attention_head_dim, pp = patch_size * patch_size;
  auto lin = [](int64_t in, int64_t out) { return in * out + out; };
  int64_t n = in_channels * pp * D + D;                          // pos_embed.proj
  n += lin(256, D) + lin(D, D) + lin(pooled_projection_dim, D) + lin(D, D);  // time_text_embed
  n += lin(joint_attention_dim, D);                              // context_embedder
  for (int64_t l = 0; l < num_layers; ++l) {
    const bool last = l == num_layers - 1, dual = is_dual(l);
    n += lin(D, (dual ? 9 : 6) * D);                   // norm1
    n += lin(D, (last ? 2 : 6) * D);                   // norm1_context
    n += (last ? 7 : 8) * lin(D, D);                   // q, k, v, add_q/k/v, to_out.0 (+ to_add_out)
    n += (last ? 1 : 2) * (lin(D, 4 * D) + lin(4 * D, D));  // ff (+ ff_context)
    if (qk_norm) n += 4 * hd;
    if (dual) n += 4 * lin(D, D) + (qk_norm ? 2 * hd : 0);
  }
  n += lin(D, 2 * D);               // norm_out
  n += lin(D, pp * out_channels);  // proj_out
  return n;
}

// ---- embeddings ---------------------------------------------------------------------------
Tensor timestep_sinusoid(const Tensor& t, int64_t dim, DType dtype, bool diffusers_f32) {
  VGG_CHECK(t.dim() == 1 && is_floating(t.dtype()), "timestep_sinusoid: timesteps must be a 1-D floating tensor [B], got ",
            describe(t));
  VGG_CHECK(dim % 2 == 0, "timestep_sinusoid: dim must be even, got ", dim);
  // Computed in f64 whatever the model dtype (never bf16, spec P8): t·ω_k reaches 10³ rad, where
  // an f32 argument is off by ~6e-5 rad; diffusers computes it in f32, which differs from this
  // by those f32 rounding errors only.
  const DType ct = diffusers_f32 ? DType::F32 : DType::F64;
  const int64_t half = dim / 2;
  // ω_k = exp(−ln(10000)·k / half), formed as diffusers does: exponent first, then exp
  Tensor k = arange(0, static_cast<double>(half), 1.0, opts(ct, t.device()));
  Tensor freqs = ops::exp(ops::mul(k, -std::log(10000.0) / static_cast<double>(half)));
  Tensor a = ops::mul(ops::unsqueeze(ops::to(t, ct), 1), ops::unsqueeze(freqs, 0));
  Tensor e = ops::cat({ops::cos(a), ops::sin(a)}, 1);  // flip_sin_to_cos: cos first
  return ops::to(e, dtype);
}

Tensor sincos_pos_table(int64_t D, int64_t M, int64_t base, DType dtype) {
  VGG_CHECK(D % 4 == 0, "sincos_pos_table: width ", D, " must be a multiple of 4");
  const int64_t q = D / 4;
  std::vector<double> v(static_cast<size_t>(M * M * D));
  for (int64_t I = 0; I < M; ++I)
    for (int64_t J = 0; J < M; ++J) {
      double* row = v.data() + (I * M + J) * D;
      const double gx = static_cast<double>(J) * static_cast<double>(base) / static_cast<double>(M);
      const double gy = static_cast<double>(I) * static_cast<double>(base) / static_cast<double>(M);
      for (int64_t m = 0; m < q; ++m) {
        const double w = 1.0 / std::pow(10000.0, static_cast<double>(m) / static_cast<double>(q));
        row[m] = std::sin(gx * w);  // first half: the column (x) coordinate
        row[q + m] = std::cos(gx * w);
        row[2 * q + m] = std::sin(gy * w);  // second half: the row (y) coordinate
        row[3 * q + m] = std::cos(gy * w);
      }
    }
  return cast_raw(from_vector(v, {1, M * M, D}, opts(DType::F64)), dtype);
}

PatchEmbed::PatchEmbed(const MMDiTConfig& c, LayerOptions o)
    : p_(c.patch_size), M_(c.pos_embed_max_size), D_(c.dim()), base_(c.sample_size / c.patch_size) {
  proj = std::make_shared<Conv2d>(c.in_channels, D_, p_, p_, 0, true, o);
  register_module("proj", proj);
  pos_embed = o.deferred ? placeholder({1, M_ * M_, D_}, o.dtype) : empty({1, M_ * M_, D_}, o.dtype, o.device);
  register_buffer("pos_embed", pos_embed);
  if (!o.deferred) reset_parameters(o.gen);
}

void PatchEmbed::reset_parameters(Generator*) {
  NoGradGuard ng;
  copy_into(pos_embed, to_device_raw(sincos_pos_table(D_, M_, base_, pos_embed.dtype()), pos_embed.device()));
}

Tensor PatchEmbed::forward(const Tensor& x) {
  VGG_CHECK(x.dim() == 4, "MMDiT: hidden_states must be [B, C, H, W], got ", describe(x));
  const int64_t H = x.size(2), W = x.size(3);
  VGG_CHECK(H % p_ == 0 && W % p_ == 0, "MMDiT: height ", H, " and width ", W, " must be multiples of the patch size ",
            p_);
  const int64_t h = H / p_, w = W / p_;
  VGG_CHECK(h <= M_ && w <= M_, "MMDiT: a ", H, "x", W, " input gives a ", h, "x", w,
            " token grid, larger than pos_embed_max_size ", M_);
  Tensor tok = ops::transpose(ops::flatten(proj->forward(x), 2), 1, 2);  // [B, N_i, D], row-major (i, j)
  // centred crop (spec §1.2): top = ⌊(M − h)/2⌋, left = ⌊(M − w)/2⌋
  const int64_t top = (M_ - h) / 2, left = (M_ - w) / 2;
  Tensor grid = ops::view(pos_embed, {M_, M_, D_});
  Tensor crop = ops::reshape(ops::narrow(ops::narrow(grid, 0, top, h), 1, left, w), {1, h * w, D_});
  return ops::add(tok, ops::to(crop, tok.dtype()));
}

MLPEmbedder::MLPEmbedder(int64_t in, int64_t dim, LayerOptions o)
    : linear_1(std::make_shared<Linear>(in, dim, true, o)), linear_2(std::make_shared<Linear>(dim, dim, true, o)) {
  register_module("linear_1", linear_1);
  register_module("linear_2", linear_2);
}

TimeTextEmbed::TimeTextEmbed(const MMDiTConfig& c, LayerOptions o)
    : timestep_embedder(std::make_shared<MLPEmbedder>(256, c.dim(), o)),
      text_embedder(std::make_shared<MLPEmbedder>(c.pooled_projection_dim, c.dim(), o)) {
  register_module("timestep_embedder", timestep_embedder);
  register_module("text_embedder", text_embedder);
}

Tensor TimeTextEmbed::forward(const Tensor& t, const Tensor& pooled) {
  const DType dt = forward_dtype(timestep_embedder->linear_1->weight);
  return ops::add(timestep_embedder->forward(timestep_sinusoid(t, 256, dt)), text_embedder->forward(pooled));
}

AdaLNLinear::AdaLNLinear(int64_t dim, int64_t chunks_, LayerOptions o)
    : linear(std::make_shared<Linear>(dim, chunks_ * dim, true, o)), n(chunks_) {
  register_module("linear", linear);
}

std::vector<Tensor> AdaLNLinear::chunks(const Tensor& silu_temb) {
  Tensor m = ops::unsqueeze(linear->forward(silu_temb), 1);  // [B, 1, n·D]
  return ops::chunk(m, n, 2);
}

// ---- attention and the joint block --------------------------------------------------------
JointAttention::JointAttention(int64_t dim, int64_t heads_, bool with_context, bool context_out, bool qk_norm,
                               LayerOptions o)
    : heads(heads_), head_dim(dim / heads_) {
  auto lin = [&](std::shared_ptr<Linear>& slot, const char* name) {
    slot = std::make_shared<Linear>(dim, dim, true, o);
    register_module(name, slot);
  };
  auto rms = [&](std::shared_ptr<RMSNorm>& slot, const char* name) {
    slot = std::make_shared<RMSNorm>(head_dim, 1e-6, true, o);
    register_module(name, slot);
  };
  lin(to_q, "to_q");
  lin(to_k, "to_k");
  lin(to_v, "to_v");
  if (with_context) {
    lin(add_q_proj, "add_q_proj");
    lin(add_k_proj, "add_k_proj");
    lin(add_v_proj, "add_v_proj");
  }
  lin(to_out0, "to_out.0");
  if (with_context && context_out) lin(to_add_out, "to_add_out");
  if (qk_norm) {
    rms(norm_q, "norm_q");
    rms(norm_k, "norm_k");
    if (with_context) {
      rms(norm_added_q, "norm_added_q");
      rms(norm_added_k, "norm_added_k");
    }
  }
}

JointTransformerBlock::JointTransformerBlock(const MMDiTConfig& c, bool pre_only, bool dual_, LayerOptions o)
    : context_pre_only(pre_only), dual(dual_) {
  const int64_t D = c.dim();
  norm1 = std::make_shared<AdaLNLinear>(D, dual ? 9 : 6, o);
  norm1_context = std::make_shared<AdaLNLinear>(D, pre_only ? 2 : 6, o);
  attn = std::make_shared<JointAttention>(D, c.num_attention_heads, true, !pre_only, c.qk_norm, o);
  register_module("norm1", norm1);
  register_module("norm1_context", norm1_context);
  register_module("attn", attn);
  if (dual) {
    attn2 = std::make_shared<JointAttention>(D, c.num_attention_heads, false, false, c.qk_norm, o);
    register_module("attn2", attn2);
  }
  ff = std::make_shared<FeedForward>(D, 4, o);
  register_module("ff", ff);
  if (!pre_only) {
    ff_context = std::make_shared<FeedForward>(D, 4, o);
    register_module("ff_context", ff_context);
  }
}

namespace {

constexpr double kLnEps = 1e-6;  // every LayerNorm of the model: no affine, eps 1e-6

// adaLN: LayerNorm(x)·(1 + scale) + shift with [B, 1, D] modulation broadcast over tokens, in one
// fused kernel (ops::layer_norm_modulate)
Tensor modulate_ln(const Tensor& x, const Tensor& shift, const Tensor& scale) {
  return ops::layer_norm_modulate(x, ops::squeeze(scale, 1), ops::squeeze(shift, 1), kLnEps);
}

// the gated residual x + gate·y with a [B, 1, D] gate, in one fused kernel (ops::gated_residual)
Tensor gated(const Tensor& x, const Tensor& gate, const Tensor& y) {
  return ops::gated_residual(x, ops::squeeze(gate, 1), y);
}

// [B, S, D] -> [B, S, H, hd], with the optional per-head RMS norm (spec §1.7)
Tensor heads_of(const Tensor& y, int64_t H, const std::shared_ptr<RMSNorm>& norm) {
  Tensor r = ops::view(y, {y.size(0), y.size(1), H, y.size(2) / H});
  return norm ? norm->forward(r) : r;
}

// softmax(Q Kᵀ / √hd) V over [B, S, H, hd] inputs; returns [B, Sq, H·hd]
Tensor sdpa(const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t B = q.size(0), Sq = q.size(1), H = q.size(2), hd = q.size(3);
  Tensor o = ops::attention(ops::transpose(q, 1, 2), ops::transpose(k, 1, 2), ops::transpose(v, 1, 2),
                            1.0 / std::sqrt(static_cast<double>(hd)));
  return ops::reshape(ops::transpose(o, 1, 2), {B, Sq, H * hd});
}

}  // namespace

std::pair<Tensor, Tensor> JointTransformerBlock::forward(const Tensor& x, const Tensor& ctx, const Tensor& st) {
  const int64_t Ni = x.size(1), H = attn->heads;
  // 1–2. adaLN-Zero: (shift, scale, gate) for attention and MLP [, attn2] per stream
  std::vector<Tensor> m = norm1->chunks(st);
  std::vector<Tensor> mc = norm1_context->chunks(st);
  Tensor xh = modulate_ln(x, m[0], m[1]);
  // last block: AdaLayerNormContinuous, diffusers order (scale, shift), spec §1.6
  Tensor ch = context_pre_only ? modulate_ln(ctx, mc[1], mc[0]) : modulate_ln(ctx, mc[0], mc[1]);
  // 3–5. projections, heads, qk-norm
  Tensor qx = heads_of(attn->to_q->forward(xh), H, attn->norm_q);
  Tensor kx = heads_of(attn->to_k->forward(xh), H, attn->norm_k);
  Tensor vx = heads_of(attn->to_v->forward(xh), H, nullptr);
  Tensor kc = heads_of(attn->add_k_proj->forward(ch), H, attn->norm_added_k);
  Tensor vc = heads_of(attn->add_v_proj->forward(ch), H, nullptr);
  Tensor K = ops::cat({kx, kc}, 1), V = ops::cat({vx, vc}, 1);  // [image ; text]
  // 6. joint attention; the last block needs only the image queries (its text output is dropped)
  Tensor ox, oc;
  if (context_pre_only) {
    ox = sdpa(qx, K, V);
  } else {
    Tensor qc = heads_of(attn->add_q_proj->forward(ch), H, attn->norm_added_q);
    Tensor o = sdpa(ops::cat({qx, qc}, 1), K, V);
    ox = ops::narrow(o, 1, 0, Ni);
    oc = ops::narrow(o, 1, Ni, o.size(1) - Ni);
  }
  // 7. image attention residual
  Tensor X = gated(x, m[2], attn->to_out0->forward(ox));
  // 8. MMDiT-X: image-only self-attention from the same LN(x), spec §1.8
  if (dual) {
    Tensor x2 = modulate_ln(x, m[6], m[7]);
    Tensor q2 = heads_of(attn2->to_q->forward(x2), H, attn2->norm_q);
    Tensor k2 = heads_of(attn2->to_k->forward(x2), H, attn2->norm_k);
    Tensor v2 = heads_of(attn2->to_v->forward(x2), H, nullptr);
    X = gated(X, m[8], attn2->to_out0->forward(sdpa(q2, k2, v2)));
  }
  // 9. image MLP
  X = gated(X, m[5], ff->forward(modulate_ln(X, m[3], m[4])));
  if (context_pre_only) return {Tensor(), X};
  // 10–11. text residuals
  Tensor C = gated(ctx, mc[2], attn->to_add_out->forward(oc));
  C = gated(C, mc[5], ff_context->forward(modulate_ln(C, mc[3], mc[4])));
  return {C, X};
}

// ---- the model ----------------------------------------------------------------------------
MMDiT::MMDiT(const MMDiTConfig& c, LayerOptions o) : cfg_(c) {
  c.validate();
  const int64_t D = c.dim();
  pos_embed = std::make_shared<PatchEmbed>(c, o);
  time_text_embed = std::make_shared<TimeTextEmbed>(c, o);
  context_embedder = std::make_shared<Linear>(c.joint_attention_dim, D, true, o);
  register_module("pos_embed", pos_embed);
  register_module("time_text_embed", time_text_embed);
  register_module("context_embedder", context_embedder);
  for (int64_t l = 0; l < c.num_layers; ++l)
    transformer_blocks.push_back(std::make_shared<JointTransformerBlock>(c, l == c.num_layers - 1, c.is_dual(l), o));
  for (int64_t l = 0; l < c.num_layers; ++l)
    register_module("transformer_blocks." + std::to_string(l), transformer_blocks[static_cast<size_t>(l)]);
  norm_out = std::make_shared<AdaLNLinear>(D, 2, o);
  proj_out = std::make_shared<Linear>(D, c.patch_size * c.patch_size * c.out_channels, true, o);
  register_module("norm_out", norm_out);
  register_module("proj_out", proj_out);
}

Tensor MMDiT::forward(const Tensor& x_in, const Tensor& timestep, const Tensor& context_in, const Tensor& pooled_in,
                      const TraceFn& trace) {
  VGG_CHECK(materialized(), "MMDiT: the model was built deferred; call materialize() or load weights first");
  const DType dt = proj_out->weight.dtype();
  const int64_t B = x_in.dim() > 0 ? x_in.size(0) : 0;
  VGG_CHECK(x_in.dim() == 4 && x_in.size(1) == cfg_.in_channels, "MMDiT: hidden_states must be [B, ", cfg_.in_channels,
            ", H, W], got ", describe(x_in));
  VGG_CHECK(timestep.dim() == 1 && timestep.size(0) == B && is_floating(timestep.dtype()),
            "MMDiT: timestep must be a floating [", B, "] tensor (1000·σ), got ", describe(timestep));
  VGG_CHECK(context_in.dim() == 3 && context_in.size(0) == B && context_in.size(2) == cfg_.joint_attention_dim,
            "MMDiT: encoder_hidden_states must be [", B, ", N_t, ", cfg_.joint_attention_dim, "], got ",
            describe(context_in));
  VGG_CHECK(context_in.size(1) > 0, "MMDiT: encoder_hidden_states has no tokens");
  VGG_CHECK(pooled_in.dim() == 2 && pooled_in.size(0) == B && pooled_in.size(1) == cfg_.pooled_projection_dim,
            "MMDiT: pooled_projections must be [", B, ", ", cfg_.pooled_projection_dim, "], got ", describe(pooled_in));
  for (const Tensor* t : {&x_in, &context_in, &pooled_in})
    VGG_CHECK(t->dtype() == dt, "MMDiT: inputs must be ", dtype_name(dt), " like the parameters, got ", describe(*t));
  // mixed precision (Module::set_compute_dtype): inputs cast on entry, the output cast back to dt
  const DType cdt = forward_dtype(proj_out->weight);
  const Tensor x = ops::to(x_in, cdt), context = ops::to(context_in, cdt), pooled = ops::to(pooled_in, cdt);
  auto tr = [&](const std::string& name, const Tensor& t) {
    if (trace) trace(name, t);
  };
  const int64_t H = x.size(2), W = x.size(3), p = cfg_.patch_size, h = H / p, w = W / p;
  Tensor X = pos_embed->forward(x);  // §1.1–1.2
  tr("embed", X);
  Tensor temb = time_text_embed->forward(timestep, pooled);  // §1.3
  tr("temb", temb);
  Tensor st = ops::silu(temb);  // every consumer sees SiLU(temb)
  Tensor C = context_embedder->forward(context);  // §1.4
  tr("context", C);
  for (size_t l = 0; l < transformer_blocks.size(); ++l) {
    if (checkpointing) {
      const auto blk = transformer_blocks[l];
      const std::vector<Tensor> o = checkpoint(
          [blk](const std::vector<Tensor>& in) {
            auto [c2, x2] = blk->forward(in[0], in[1], in[2]);
            return c2.defined() ? std::vector<Tensor>{x2, c2} : std::vector<Tensor>{x2};
          },
          {X, C, st}, blk->parameters(true));
      X = o[0], C = o.size() > 1 ? o[1] : Tensor();
    } else {
      auto [c2, x2] = transformer_blocks[l]->forward(X, C, st);  // §1.5–1.8
      C = c2, X = x2;
    }
    tr("block." + std::to_string(l) + ".image", X);
    if (C.defined()) tr("block." + std::to_string(l) + ".context", C);
  }
  std::vector<Tensor> so = norm_out->chunks(st);  // §1.9: (scale, shift)
  X = modulate_ln(X, so[1], so[0]);
  tr("norm_out", X);
  Tensor Y = proj_out->forward(X);  // [B, N_i, p·p·C_out], features (u, v, c)
  // unpatchify: out[b, c, i·p + u, j·p + v] = Y[b, i·w + j, (u·p + v)·C + c]
  Tensor y6 = ops::reshape(Y, {B, h, w, p, p, cfg_.out_channels});
  Tensor out = ops::reshape(ops::permute(y6, {0, 5, 1, 3, 2, 4}), {B, cfg_.out_channels, H, W});
  tr("output", out);
  return ops::to(out, dt);
}

}  // namespace vgg::nn
