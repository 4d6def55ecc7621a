// The fused LoRA linear: y = x·Wᵀ + bias + s·(x·Aᵀ)·Bᵀ as three GEMMs that write no full-size
// intermediate: the base GEMM adds the bias in its epilogue (GemmArgs::bias), and the rank-r update
// accumulates onto y (beta = 1). The backward is explicit and writes only the gradients
// and the rank-r dlow = s·dy·B:
//   dx = dy·W + dlow·A (the second GEMM accumulates),  dA = dlowᵀ·x,  dB = s·dyᵀ·low,
//   dW = dyᵀ·x (only when W requires grad),  dbias = Σ_rows dy,
// with low = x·Aᵀ saved from the forward ([M, r]: small). Double backward is refused (use the
// unfused layer); the JVP is composed of differentiable ops, so reverse-over-forward works.
#include <algorithm>
#include <cmath>

#include "autograd/ops_util.h"
#include "kernels/matmul.h"

namespace vgg::ops {

namespace {

// C = alpha·op(A)·op(B) + beta·C on contiguous row-major 2-D matrices (ta: A is stored transposed).
void gemm2(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& c, double alpha, double beta,
           const Tensor& bias = Tensor()) {
  kernels::GemmArgs g;
  g.m = c.shape()[0];
  g.n = c.shape()[1];
  g.k = ta ? a.shape()[0] : a.shape()[1];
  g.trans_a = ta;
  g.trans_b = tb;
  g.lda = std::max<int64_t>(a.shape()[1], 1);
  g.ldb = std::max<int64_t>(b.shape()[1], 1);
  g.ldc = std::max<int64_t>(g.n, 1);
  g.alpha = alpha;
  g.beta = beta;
  if (bias.defined()) g.bias = bias.data_ptr();
  if (g.m == 0 || g.n == 0) return;
  get_kernel<kernels::GemmKernel>(c.device(), c.dtype())(g, a.data_ptr(), b.data_ptr(), c.data_ptr());
}

Tensor as_2d(const Tensor& t, int64_t cols) {  // contiguous view [rows, cols]
  Tensor c = contiguous_raw(t);
  const int64_t rows = cols > 0 ? c.numel() / cols : 0;
  return as_strided_view(c, {rows, cols}, {cols, 1}, 0);
}

}  // namespace

Tensor lora_linear(const Tensor& x, const Tensor& w, const Tensor& bias, const Tensor& a, const Tensor& b, double scale) {
  detail::check_float("lora_linear", x);
  for (const Tensor* t : {&w, &a, &b}) detail::check_same("lora_linear", x, *t);
  if (bias.defined()) detail::check_same("lora_linear", x, bias);
  VGG_CHECK(x.dim() >= 1 && w.dim() == 2 && a.dim() == 2 && b.dim() == 2, "lora_linear: need x [..., in], W [out, in], "
            "A [r, in], B [out, r], got ", describe(x), ", ", describe(w), ", ", describe(a), ", ", describe(b));
  const int64_t in = w.shape()[1], out = w.shape()[0], r = a.shape()[0];
  VGG_CHECK(x.shape().back() == in && a.shape()[1] == in && b.shape()[0] == out && b.shape()[1] == r && r > 0,
            "lora_linear: shapes do not fit: x ", shape_str(x.shape()), ", W ", shape_str(w.shape()), ", A ",
            shape_str(a.shape()), ", B ", shape_str(b.shape()));
  VGG_CHECK(!bias.defined() || bias.shape() == Shape{out}, "lora_linear: bias ", describe(bias), " must be [", out, "]");
  VGG_CHECK(std::isfinite(scale), "lora_linear: scale ", scale, " is not finite");
  Shape ys(x.shape().begin(), x.shape().end() - 1);
  ys.push_back(out);
  Tensor x2 = as_2d(x, in), wc = contiguous_raw(w), ac = contiguous_raw(a), bc = contiguous_raw(b);
  const int64_t M = x2.shape()[0];
  Tensor y2 = empty({M, out}, x.dtype(), x.device());
  Tensor low = empty({M, r}, x.dtype(), x.device());
  if (M > 0 && out > 0) {
    if (bias.defined() && in == 0) {  // nothing to multiply: y = bias
      copy_into(y2, expand_raw(as_strided_view(contiguous_raw(bias), {1, out}, {out, 1}, 0), {M, out}, "lora_linear"));
    } else {
      gemm2(x2, false, wc, true, y2, 1.0, 0.0, bias.defined() ? contiguous_raw(bias) : Tensor());  // y = x·Wᵀ + bias
    }
    gemm2(x2, false, ac, true, low, 1.0, 0.0);                         // low = x·Aᵀ
    gemm2(low, false, bc, true, y2, scale, 1.0);                       // y += s·low·Bᵀ
  } else if (M > 0) {
    gemm2(x2, false, ac, true, low, 1.0, 0.0);
  }
  Tensor y = as_strided_view(y2, ys, contiguous_strides(ys), 0);
  if (any_requires_grad({&x, &w, &bias, &a, &b})) {
    auto node = record("lora_linear", {x, w, bias, a, b}, {&y});
    SavedTensor sx(x2, false), sw(wc, false), sa(ac, false), sb(bc, false);
    Tensor low_saved = low;
    const Shape xs = x.shape();
    node->backward = [=](const Grads& g, const std::vector<bool>& needs) -> Grads {
      detail::no_double_backward("lora_linear (fused)", "the unfused layer (nn::LoRALinear::set_fused(false))");
      Tensor dy = as_2d(g[0], out);
      Tensor xv = sx.unpack("lora_linear"), wv = sw.unpack("lora_linear"), av = sa.unpack("lora_linear"),
             bv = sb.unpack("lora_linear");
      const Device dev = dy.device();
      const DType dt = dy.dtype();
      Tensor gx, gw, gbias, ga, gb, dlow;
      if (needs[0] || needs[3]) {
        dlow = empty({M, r}, dt, dev);
        gemm2(dy, false, bv, false, dlow, scale, 0.0);  // dlow = s·dy·B
      }
      if (needs[0]) {
        Tensor dx = empty({M, in}, dt, dev);
        gemm2(dy, false, wv, false, dx, 1.0, 0.0);  // dx = dy·W
        gemm2(dlow, false, av, false, dx, 1.0, 1.0);  // dx += dlow·A
        gx = as_strided_view(dx, xs, contiguous_strides(xs), 0);
      }
      if (needs[1]) {
        gw = empty({out, in}, dt, dev);
        gemm2(dy, true, xv, false, gw, 1.0, 0.0);  // dW = dyᵀ·x
      }
      if (needs[2]) gbias = sum(dy, {0});
      if (needs[3]) {
        ga = empty({r, in}, dt, dev);
        gemm2(dlow, true, xv, false, ga, 1.0, 0.0);  // dA = dlowᵀ·x
      }
      if (needs[4]) {
        gb = empty({out, r}, dt, dev);
        gemm2(dy, true, low_saved, false, gb, scale, 0.0);  // dB = s·dyᵀ·low
      }
      return {gx, gw, gbias, ga, gb};
    };
  }
  // ty = lora_linear(tx) + x·tWᵀ + tbias + s·(x·tAᵀ)·Bᵀ + s·(x·Aᵀ)·tBᵀ
  detail::forward_rule("lora_linear", {&x, &w, &bias, &a, &b}, y, [&](const std::vector<Tensor>& t) {
    Tensor ty;
    if (t[0].defined()) ty = lora_linear(t[0], w, Tensor(), a, b, scale);
    if (t[1].defined()) ty = detail::add_terms(ty, matmul(x, transpose(t[1], 0, 1)));
    if (t[2].defined()) ty = detail::add_terms(ty, detail::fit(t[2], y.shape()));
    if (t[3].defined()) ty = detail::add_terms(ty, mul(matmul(matmul(x, transpose(t[3], 0, 1)), transpose(b, 0, 1)), scale));
    if (t[4].defined()) ty = detail::add_terms(ty, mul(matmul(matmul(x, transpose(a, 0, 1)), transpose(t[4], 0, 1)), scale));
    return detail::fit(ty, y.shape());
  });
  return y;
}

}  // namespace vgg::ops
