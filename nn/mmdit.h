// MMDiT: the Stable Diffusion 3 / 3.5 transformer (diffusers SD3Transformer2DModel), with
// diffusers parameter names, one code path from a 2M-parameter CPU model to SD3.5-large.
//
//   x [B, C, H, W] ──patch conv + centred crop of the 2-D sin-cos table──► X [B, N_i, D]
//   t [B] (= 1000·σ) ──sinusoid(256, cos first)──MLP──┐
//   pooled y [B, P] ────────────────────────MLP───────┴─► temb [B, D]
//   context c [B, N_t, J] ──Linear──► C [B, N_t, D]
//   L × JointTransformerBlock(X, C, temb): adaLN-Zero modulation, joint attention over
//       [image tokens ; text tokens], gated residuals, GELU(tanh) MLPs; the last block keeps
//       only the image stream (context_pre_only); SD3.5 adds RMS qk-norm and, in MMDiT-X
//       layers, a second image-only self-attention (attn2)
//   AdaLayerNormContinuous (scale, shift) ─► proj_out ─► unpatchify ─► v [B, C_out, H, W]
//
// Each step names the section of the specification it implements (docs/mmdit.md).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace vgg::nn {

struct MMDiTConfig {
  int64_t sample_size = 32;  // latent size the fresh position table is scaled for
  int64_t patch_size = 2;
  int64_t in_channels = 1;
  int64_t out_channels = 1;
  int64_t num_layers = 4;
  int64_t attention_head_dim = 64;
  int64_t num_attention_heads = 2;
  int64_t joint_attention_dim = 64;      // width of the text token features
  int64_t caption_projection_dim = 128;  // must equal heads × head_dim
  int64_t pooled_projection_dim = 64;
  int64_t pos_embed_max_size = 24;
  bool qk_norm = false;                      // "rms_norm" in diffusers configs (SD3.5)
  std::vector<int64_t> dual_attention_layers;  // MMDiT-X blocks (SD3.5-medium: 0..12)

  // heads x head_dim; saturates instead of overflowing for configs validate() will refuse
  int64_t dim() const {
    int64_t d = 0;
    return __builtin_mul_overflow(attention_head_dim, num_attention_heads, &d) ? INT64_MAX : d;
  }
  bool is_dual(int64_t layer) const;
  void validate() const;  // throws a one-line error naming the bad field

  // Names: tiny, tiny-sd35m, tiny-sd35l, small, sd3-medium, sd3.5-medium, sd3.5-large.
  static MMDiTConfig named(const std::string& name);
  static std::vector<std::string> names();
  // diffusers transformer/config.json (keys starting with '_' are ignored; unknown keys throw).
  static MMDiTConfig from_json(const std::string& json_text);
  std::string to_json() const;
  // The analytic parameter count (learnable, without the position buffer), spec §2.2.
  int64_t expected_parameters() const;
};

// Timestep sinusoid, spec §1.3: e = [cos(t·ω_k), sin(t·ω_k)], ω_k = exp(−ln(10⁴)·k/half),
// computed in f64 (more exact than diffusers' f32; see mmdit.cpp), returned in dtype;
// diffusers_f32 computes it in f32 exactly as diffusers does. t: [B] any floating dtype.
Tensor timestep_sinusoid(const Tensor& t, int64_t dim, DType dtype, bool diffusers_f32 = false);
// The 2-D sin-cos position table of a fresh diffusers model, spec §1.2: [1, M², D], computed
// in f64: first half encodes the column coordinate, second half the row; g_k = k·base/M.
Tensor sincos_pos_table(int64_t dim, int64_t max_size, int64_t base_size, DType dtype);

// ---- building blocks (names follow diffusers) ---------------------------------------------
class PatchEmbed : public Module {  // "pos_embed"
 public:
  PatchEmbed(const MMDiTConfig& c, LayerOptions o);
  std::string type_name() const override { return "PatchEmbed"; }
  void reset_parameters(Generator* gen) override;
  Tensor forward(const Tensor& x);  // [B, C, H, W] -> [B, N_i, D]
  std::shared_ptr<Conv2d> proj;
  Tensor pos_embed;  // buffer [1, M², D]
 private:
  int64_t p_, M_, D_, base_;
};

class MLPEmbedder : public Module {  // linear_1 → SiLU → linear_2
 public:
  MLPEmbedder(int64_t in, int64_t dim, LayerOptions o);
  std::string type_name() const override { return "MLPEmbedder"; }
  Tensor forward(const Tensor& x) { return linear_2->forward(ops::silu(linear_1->forward(x))); }
  std::shared_ptr<Linear> linear_1, linear_2;
};

class TimeTextEmbed : public Module {  // "time_text_embed"
 public:
  TimeTextEmbed(const MMDiTConfig& c, LayerOptions o);
  std::string type_name() const override { return "CombinedTimestepTextProjEmbeddings"; }
  Tensor forward(const Tensor& t, const Tensor& pooled);  // -> temb [B, D]
  std::shared_ptr<MLPEmbedder> timestep_embedder, text_embedder;
};

class AdaLNLinear : public Module {  // "norm1", "norm1_context", "norm_out": holds "linear"
 public:
  AdaLNLinear(int64_t dim, int64_t chunks, LayerOptions o);
  std::string type_name() const override { return "AdaLayerNorm"; }
  // linear(SiLU(temb)) split into `chunks` pieces of [B, 1, D] (ready to broadcast over tokens)
  std::vector<Tensor> chunks(const Tensor& silu_temb);
  std::shared_ptr<Linear> linear;
  int64_t n;
};

class JointAttention : public Module {  // "attn" (and, without the add_* part, "attn2")
 public:
  JointAttention(int64_t dim, int64_t heads, bool with_context, bool context_out, bool qk_norm, LayerOptions o);
  std::string type_name() const override { return "Attention"; }
  std::shared_ptr<Linear> to_q, to_k, to_v, to_out0;
  std::shared_ptr<Linear> add_q_proj, add_k_proj, add_v_proj, to_add_out;
  std::shared_ptr<RMSNorm> norm_q, norm_k, norm_added_q, norm_added_k;
  int64_t heads, head_dim;
};

class JointTransformerBlock : public Module {  // "transformer_blocks.i"
 public:
  JointTransformerBlock(const MMDiTConfig& c, bool context_pre_only, bool dual, LayerOptions o);
  std::string type_name() const override { return "JointTransformerBlock"; }
  // Returns (context, image); context is undefined after the last block (spec §1.5, §1.6, §1.8).
  std::pair<Tensor, Tensor> forward(const Tensor& x, const Tensor& ctx, const Tensor& silu_temb);
  std::shared_ptr<AdaLNLinear> norm1, norm1_context;
  std::shared_ptr<JointAttention> attn, attn2;
  std::shared_ptr<FeedForward> ff, ff_context;
  bool context_pre_only, dual;
};

// A trace callback sees named intermediate tensors: "embed", "temb", "context",
// "block.i.image", "block.i.context", "norm_out", "output".
using TraceFn = std::function<void(const std::string&, const Tensor&)>;

class MMDiT : public Module {
 public:
  explicit MMDiT(const MMDiTConfig& c, LayerOptions o = {});
  std::string type_name() const override { return "SD3Transformer2DModel"; }
  // x [B, C_in, H, W], timestep [B] (= 1000·σ, real-valued), context [B, N_t, J], pooled
  // [B, P] -> velocity [B, C_out, H, W]. x, context and pooled share the parameters' dtype. With a
  // compute dtype set (set_compute_dtype(DType::BF16) on f32 parameters: mixed precision) they are
  // cast to it on entry, every layer computes in it, and the output comes back in the parameters'
  // dtype.
  Tensor forward(const Tensor& x, const Tensor& timestep, const Tensor& context, const Tensor& pooled,
                 const TraceFn& trace = nullptr);
  const MMDiTConfig& config() const { return cfg_; }
  // Activation checkpointing per joint block (autograd/checkpoint.h): a block's intermediates are
  // recomputed in its backward instead of kept; gradients are unchanged (trainable parameters of
  // the block, LoRA adapters included, get theirs through the checkpoint node).
  bool checkpointing = false;

  std::shared_ptr<PatchEmbed> pos_embed;
  std::shared_ptr<TimeTextEmbed> time_text_embed;
  std::shared_ptr<Linear> context_embedder;
  std::vector<std::shared_ptr<JointTransformerBlock>> transformer_blocks;
  std::shared_ptr<AdaLNLinear> norm_out;
  std::shared_ptr<Linear> proj_out;

 private:
  MMDiTConfig cfg_;
};

}  // namespace vgg::nn
