// Image ops of the VAE decoders and the CLIP input transform, composed of differentiable ops (their
// derivatives, forward mode and devices come with them): quick_gelu, group_norm, nearest 2-D
// upsampling and bilinear/bicubic resizing as two interpolation matrices (PyTorch's index and
// weight rules, align_corners=False, with and without anti-aliasing; tests/kernels/test_golden.cpp
// holds them to torch's output).
#include <algorithm>
#include <cmath>

#include "autograd/ops_util.h"
#include "tensor/factory.h"

namespace vgg::ops {

Tensor quick_gelu(const Tensor& x) {
  detail::check_float("quick_gelu", x);
  return mul(x, sigmoid(mul(x, 1.702)));
}

Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, double eps) {
  detail::check_float("group_norm", x);
  VGG_CHECK(x.dim() >= 2, "group_norm: expects x [N, C, ...], got ", describe(x));
  const int64_t n = x.size(0), c = x.size(1);
  VGG_CHECK(groups >= 1 && c % groups == 0, "group_norm: ", c, " channels do not split into ", groups, " groups");
  VGG_CHECK(eps >= 0 && std::isfinite(eps), "group_norm: eps must be finite and >= 0, got ", eps);
  for (const Tensor* p : {&weight, &bias})
    if (p->defined()) {
      detail::check_same("group_norm", x, *p);
      VGG_CHECK(p->dim() == 1 && p->size(0) == c, "group_norm: weight and bias must be [", c, "], got ",
                describe(*p));
    }
  const int64_t per_group = x.numel() / std::max<int64_t>(n * groups, 1);
  // one layer_norm row per (sample, group): the fused normalisation kernel, its backward and JVP
  Tensor y = reshape(layer_norm(reshape(x, {n, groups, per_group}), {per_group}, Tensor(), Tensor(), eps), x.shape());
  Shape per_channel(x.dim() - 1, 1);
  per_channel[0] = c;  // [C, 1, ...] broadcasts over the positions
  if (weight.defined()) y = mul(y, reshape(weight, per_channel));
  if (bias.defined()) y = add(y, reshape(bias, per_channel));
  return y;
}

Tensor upsample_nearest2d(const Tensor& x, int64_t factor) {
  detail::check_defined("upsample_nearest2d", x);
  VGG_CHECK(x.dim() >= 2, "upsample_nearest2d: expects [..., H, W], got ", describe(x));
  VGG_CHECK(factor >= 1 && factor <= 64, "upsample_nearest2d: factor must be in [1, 64], got ", factor);
  if (factor == 1) return x;
  const int64_t nd = x.dim(), h = x.size(nd - 2), w = x.size(nd - 1);
  Shape s6(x.shape().begin(), x.shape().end() - 2), big = s6, out = s6;
  s6.insert(s6.end(), {h, 1, w, 1});
  big.insert(big.end(), {h, factor, w, factor});
  out.insert(out.end(), {h * factor, w * factor});
  return reshape(expand(reshape(x, s6), big), out);
}

namespace {

double cubic1(double x, double a) { return ((a + 2) * x - (a + 3)) * x * x + 1; }
double cubic2(double x, double a) { return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a; }

// PyTorch's anti-aliasing filters (the bicubic one with a = -0.5, as PIL)
double aa_linear(double x) {
  x = std::abs(x);
  return x < 1 ? 1 - x : 0;
}
double aa_cubic(double x) {
  const double a = -0.5;
  x = std::abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

}  // namespace

Tensor resize_matrix(int64_t in, int64_t out, ResizeMode mode, bool antialias) {
  VGG_CHECK(in >= 1 && out >= 1 && in <= (1 << 20) && out <= (1 << 20), "resize: sizes must be in [1, 2^20], got ",
            in, " -> ", out);
  std::vector<double> m(static_cast<size_t>(out * in), 0.0);
  auto at = [&](int64_t i, int64_t j) -> double& { return m[static_cast<size_t>(i * in + j)]; };
  const double scale = static_cast<double>(in) / static_cast<double>(out);
  if (antialias) {
    // separable filter of support interp_size/2 (widened by the scale when downscaling), weights
    // normalised per output (PyTorch's _upsample_*_aa with align_corners=False)
    const double interp = mode == ResizeMode::Bilinear ? 2 : 4;
    const double support = scale >= 1 ? interp * 0.5 * scale : interp * 0.5;
    const double invscale = scale >= 1 ? 1 / scale : 1;
    for (int64_t i = 0; i < out; ++i) {
      const double center = scale * (static_cast<double>(i) + 0.5);
      const int64_t lo = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
      const int64_t size = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in) - lo;
      double total = 0;
      std::vector<double> w(static_cast<size_t>(std::max<int64_t>(size, 0)));
      for (int64_t j = 0; j < size; ++j) {
        const double arg = (static_cast<double>(j + lo) - center + 0.5) * invscale;
        w[j] = mode == ResizeMode::Bilinear ? aa_linear(arg) : aa_cubic(arg);
        total += w[j];
      }
      for (int64_t j = 0; j < size; ++j) at(i, lo + j) = total != 0 ? w[j] / total : w[j];
    }
  } else if (mode == ResizeMode::Bilinear) {
    for (int64_t i = 0; i < out; ++i) {
      double src = scale * (static_cast<double>(i) + 0.5) - 0.5;
      if (src < 0) src = 0;
      const int64_t i0 = std::min<int64_t>(static_cast<int64_t>(std::floor(src)), in - 1);
      const int64_t step = i0 < in - 1 ? 1 : 0;
      const double l1 = std::min(std::max(src - static_cast<double>(i0), 0.0), 1.0);
      at(i, i0) += 1 - l1;
      at(i, i0 + step) += l1;
    }
  } else {
    const double a = -0.75;
    for (int64_t i = 0; i < out; ++i) {
      const double src = scale * (static_cast<double>(i) + 0.5) - 0.5;
      const double fl = std::floor(src), t = src - fl;
      const double w[4] = {cubic2(t + 1, a), cubic1(t, a), cubic1(1 - t, a), cubic2(2 - t, a)};
      for (int k = 0; k < 4; ++k) {
        const int64_t j = std::clamp<int64_t>(static_cast<int64_t>(fl) - 1 + k, 0, in - 1);  // edge pixels repeat
        at(i, j) += w[k];
      }
    }
  }
  return from_vector(m, {out, in}, {DType::F64});
}

Tensor resize2d(const Tensor& x, int64_t out_h, int64_t out_w, ResizeMode mode, bool antialias) {
  detail::check_float("resize2d", x);
  VGG_CHECK(x.dim() >= 2, "resize2d: expects [..., H, W], got ", describe(x));
  VGG_CHECK(out_h >= 1 && out_w >= 1, "resize2d: output size must be positive, got ", out_h, "x", out_w);
  const int64_t nd = x.dim(), h = x.size(nd - 2), w = x.size(nd - 1);
  VGG_CHECK(h >= 1 && w >= 1, "resize2d: empty image ", describe(x));
  Tensor ah = to(to(resize_matrix(h, out_h, mode, antialias), x.dtype()), x.device());
  Tensor awt = to(to(transpose(resize_matrix(w, out_w, mode, antialias), 0, 1), x.dtype()), x.device());
  return matmul(ah, matmul(x, awt));  // A_h · (x · A_wᵀ)
}

}  // namespace vgg::ops
