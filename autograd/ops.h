// vgg::ops — the differentiable op API every layer above uses. Each op checks its inputs
// (a bad shape, dtype or device throws vgg::Error naming the op and the shapes), runs its
// kernel through the dispatch registry and, when grad mode is on and an input requires grad,
// records a node whose backward is written with these same ops (so double backward works,
// except for fused kernels, which say so). Inside a forward-AD level each op also computes its
// output's tangent from its inputs' tangents (autograd/forward_ad.h).
#pragma once
#include <utility>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "tensor/factory.h"
#include "tensor/tensor.h"

namespace vgg::ops {

using Dims = std::vector<int64_t>;

// ---- elementwise, unary --------------------------------------------------------------
Tensor neg(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor square(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x, bool tanh_approximation = false);
Tensor erf(const Tensor& x);
Tensor reciprocal(const Tensor& x);
Tensor sign(const Tensor& x);  // gradient zero
Tensor pow(const Tensor& x, double exponent);
Tensor clamp(const Tensor& x, double lo, double hi);  // use ±INFINITY for a one-sided clamp

// ---- elementwise, binary (NumPy broadcasting; dtypes and devices must match) ----------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);  // ties split the gradient equally
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor mul(const Tensor& a, double s);
// comparisons return bool tensors and have no gradient
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// ---- reductions (dims may be negative; an empty list reduces over all dims) -----------
Tensor sum(const Tensor& x, const Dims& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const Dims& dims = {}, bool keepdim = false);
Tensor var(const Tensor& x, const Dims& dims = {}, int64_t correction = 1, bool keepdim = false);
Tensor amax(const Tensor& x, const Dims& dims = {}, bool keepdim = false);  // ties share the gradient
Tensor amin(const Tensor& x, const Dims& dims = {}, bool keepdim = false);
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);  // values along one dim
Tensor min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // i64, no gradient
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
// p-norm over dims: p = 2 (default), 1, or INFINITY
Tensor norm(const Tensor& x, double p = 2.0, const Dims& dims = {}, bool keepdim = false);
// Sums x down to `shape` (the reverse of broadcasting).
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- linear algebra -------------------------------------------------------------------
// NumPy matmul semantics: 1-D operands are promoted, batch dims broadcast.
Tensor matmul(const Tensor& a, const Tensor& b);
// A linear layer: x [..., in] · wᵀ (w [out, in]) + b ([out] or undefined). On a GPU one GEMM with
// the bias in its epilogue; elsewhere matmul then add (the same numbers as composing them).
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

// ---- neural-network ops -----------------------------------------------------------------
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
// Normalises over the trailing dims given by normalized_shape; weight/bias may be undefined.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);
Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(), double eps = 1e-6);
// The MMDiT's adaLN in one kernel: layer_norm(x)·(1 + scale) + shift over the last dim, x [B, T, D],
// scale and shift [B, D] (per sample), no affine weights.
Tensor layer_norm_modulate(const Tensor& x, const Tensor& scale, const Tensor& shift, double eps = 1e-6);
// The MMDiT's gated residual in one kernel: x + gate·y with x, y [B, T, D] and gate [B, D] (per sample).
Tensor gated_residual(const Tensor& x, const Tensor& gate, const Tensor& y);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);              // index: 1-D i64/i32
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);  // out-of-place
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);  // index: x's shape except along dim
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);  // out-of-place
Tensor embedding(const Tensor& weight, const Tensor& index);  // weight [V, D], index any shape -> [..., D]
// Constant padding, PyTorch order: {last_lo, last_hi, second_last_lo, second_last_hi, ...}; pads >= 0.
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value = 0.0);

struct Conv2dOptions {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
};
// x [N, C, H, W], weight [O, C, kh, kw], bias [O] or undefined. im2col + GEMM.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), Conv2dOptions o = {});
// x [N, C, H, W] -> [N, C*kh*kw, OH*OW], and its adjoint.
Tensor im2col(const Tensor& x, int64_t kh, int64_t kw, Conv2dOptions o = {});
Tensor col2im(const Tensor& cols, const Shape& image_shape, int64_t kh, int64_t kw, Conv2dOptions o = {});
// Average pooling with zero padding counted in the mean (PyTorch's count_include_pad=True).
Tensor avg_pool2d(const Tensor& x, int64_t kh, int64_t kw, Conv2dOptions o = {});
Tensor avg_pool2d_adjoint(const Tensor& y, const Shape& image_shape, int64_t kh, int64_t kw, Conv2dOptions o = {});

// Attention softmax(scale · Q Kᵀ) V over q [..., Sq, D], k [..., Sk, D], v [..., Sk, Dv].
// Naive materialises the scores with differentiable ops (any derivative order, f64 reference).
// Tiled is the online-softmax kernel: O(S) memory, its own backward kernel, no double backward.
// The fused LoRA linear: x [..., in] → x·Wᵀ + bias + scale·(x·Aᵀ)·Bᵀ with W [out, in], bias [out]
// (may be undefined), A [r, in], B [out, r], in three GEMMs and no full-size intermediate; an
// explicit backward (double backward throws: compose matmuls instead) and a composed JVP.
Tensor lora_linear(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& a, const Tensor& b, double scale);
enum class AttentionImpl { Naive, Tiled };
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                 AttentionImpl impl = AttentionImpl::Tiled);
// Forward mode through the tiled attention. Fused (the default where the device has the kernels):
// one pass over the key tiles gives O and the tangent tO with O(S) extra memory, and reverse mode
// through tO uses the fused adjoint kernel (no S x S storage). Composed: the reference rule of
// differentiable ops, which materialises P = softmax(S) per head. Process-wide; the environment
// variable VGG_ATTENTION_JVP=composed selects the reference at start-up.
enum class AttentionJvp { Fused, Composed };
void set_attention_jvp(AttentionJvp mode);
AttentionJvp attention_jvp_mode();
// The fused JVP as a differentiable op: the tangent tO of attention(q, k, v, scale) along (tq, tk, tv),
// each undefined (zero) or shaped as its primal: tO = P·tV + (P∘tS)·V − rowsum(P∘tS)∘O with
// tS = scale·(tQ·Kᵀ + Q·tKᵀ). Reverse mode: the fused adjoint kernel (double backward throws).
Tensor attention_jvp(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& tq, const Tensor& tk,
                     const Tensor& tv, double scale);

// ---- image ops (VAE decoders, CLIP input transforms): composed of the differentiable ops above,
// so each has reverse mode, forward mode and every device those ops have --------------------------
// x·σ(1.702·x) (CLIP's activation).
Tensor quick_gelu(const Tensor& x);
// Group normalisation of x [N, C, ...]: C/groups channels per group, biased variance over each
// group's channels and positions, then per-channel weight and bias [C] (either may be undefined).
Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight = Tensor(), const Tensor& bias = Tensor(),
                  double eps = 1e-5);
// Nearest-neighbour upsampling of the last two dims by an integer factor (diffusers' 2x upsampler).
Tensor upsample_nearest2d(const Tensor& x, int64_t factor);
// Resizes the last two dims to out_h x out_w as torch.nn.functional.interpolate does with
// align_corners=False (bilinear, or bicubic with a = -0.75; antialias: PyTorch's separable
// anti-aliased filters when downscaling, bicubic then with a = -0.5 as PIL): one interpolation
// matrix per axis, out = A_h · x · A_wᵀ, so its derivatives are those of two matmuls.
enum class ResizeMode { Bilinear, Bicubic };
Tensor resize2d(const Tensor& x, int64_t out_h, int64_t out_w, ResizeMode mode, bool antialias = false);
// The interpolation matrix [out, in] of resize2d along one axis (f64, CPU).
Tensor resize_matrix(int64_t in, int64_t out, ResizeMode mode, bool antialias);

// ---- shape and views (views share storage with their input) ----------------------------
Tensor reshape(const Tensor& x, const Shape& shape);  // one -1 allowed; copies only when needed
Tensor view(const Tensor& x, const Shape& shape);     // never copies; throws when impossible
Tensor permute(const Tensor& x, const Dims& order);
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end);  // negative indices wrap
Tensor expand(const Tensor& x, const Shape& shape);  // -1 keeps a size
Tensor squeeze(const Tensor& x);                     // all size-1 dims
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor contiguous(const Tensor& x);
Tensor to(const Tensor& x, DType dtype);
Tensor to(const Tensor& x, Device device);
Tensor clone(const Tensor& x);
Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
std::vector<Tensor> split(const Tensor& x, int64_t chunk_size, int64_t dim);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);

// ---- in place (bump the version; refuse tensors that require grad while grad mode is on) --
void add_(const Tensor& x, const Tensor& other, double alpha = 1.0);  // x += alpha * other
void mul_(const Tensor& x, double s);
void copy_(const Tensor& x, const Tensor& src);
void zero_(const Tensor& x);

}  // namespace vgg::ops

namespace vgg {
// Arithmetic operators on tensors (differentiable).
inline Tensor operator+(const Tensor& a, const Tensor& b) { return ops::add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return ops::sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return ops::mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return ops::div(a, b); }
inline Tensor operator-(const Tensor& a) { return ops::neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return ops::add(a, s); }
inline Tensor operator+(double s, const Tensor& a) { return ops::add(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return ops::add(a, -s); }
inline Tensor operator-(double s, const Tensor& a) { return ops::add(ops::neg(a), s); }
inline Tensor operator*(const Tensor& a, double s) { return ops::mul(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return ops::mul(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return ops::mul(a, 1.0 / s); }
inline Tensor operator/(double s, const Tensor& a) { return ops::mul(ops::reciprocal(a), s); }
}  // namespace vgg
