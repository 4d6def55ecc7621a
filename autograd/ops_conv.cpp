// conv2d as im2col + GEMM (or, on a device with a direct convolution such as cuDNN, that kernel
// forward with the composite's backward), and average pooling. im2col/col2im and avg_pool2d/its
// adjoint are linear maps that are each other's transposes, so every derivative order comes for free,
// and each one's JVP is itself applied to the tangent.
#include "autograd/ops_util.h"
#include "kernels/conv.h"

namespace vgg::ops {

namespace {

kernels::Conv2dGeom geometry(const char* op, const Shape& img, int64_t kh, int64_t kw, const Conv2dOptions& o) {
  VGG_CHECK(img.size() == 4, op, ": expects an NCHW input, got shape ", shape_str(img));
  VGG_CHECK(kh > 0 && kw > 0, op, ": kernel size ", kh, "x", kw, " must be positive");
  VGG_CHECK(o.stride_h > 0 && o.stride_w > 0, op, ": stride ", o.stride_h, "x", o.stride_w, " must be positive");
  VGG_CHECK(o.pad_h >= 0 && o.pad_w >= 0, op, ": padding ", o.pad_h, "x", o.pad_w, " must be >= 0");
  kernels::Conv2dGeom g{img[0], img[1], img[2], img[3], kh, kw, o.stride_h, o.stride_w, o.pad_h, o.pad_w, 0, 0};
  VGG_CHECK(g.h + 2 * g.ph >= kh && g.w + 2 * g.pw >= kw, op, ": kernel ", kh, "x", kw,
            " is larger than the padded input ", shape_str(img));
  g.oh = (g.h + 2 * g.ph - kh) / g.sh + 1;
  g.ow = (g.w + 2 * g.pw - kw) / g.sw + 1;
  return g;
}

}  // namespace

Tensor im2col(const Tensor& x, int64_t kh, int64_t kw, Conv2dOptions o) {
  detail::check_float("im2col", x);
  auto g = geometry("im2col", x.shape(), kh, kw, o);
  Tensor xc = contiguous_raw(x);
  Tensor cols = empty({g.n, g.c * kh * kw, g.oh * g.ow}, x.dtype(), x.device());
  if (cols.numel() > 0) get_kernel<kernels::Im2ColKernel>(x.device(), x.dtype())(g, xc.data_ptr(), cols.data_ptr());
  if (any_requires_grad({&x})) {
    auto node = record("im2col", {x}, {&cols});
    Shape xs = x.shape();
    node->backward = [xs, kh, kw, o](const Grads& gr, const std::vector<bool>&) -> Grads {
      return {col2im(gr[0], xs, kh, kw, o)};
    };
  }
  detail::forward_rule("im2col", {&x}, cols, [&](const std::vector<Tensor>& t) { return im2col(t[0], kh, kw, o); });
  return cols;
}

Tensor col2im(const Tensor& cols, const Shape& image_shape, int64_t kh, int64_t kw, Conv2dOptions o) {
  detail::check_float("col2im", cols);
  auto g = geometry("col2im", image_shape, kh, kw, o);
  Shape want = {g.n, g.c * kh * kw, g.oh * g.ow};
  VGG_CHECK(cols.shape() == want, "col2im: columns have shape ", shape_str(cols.shape()), ", expected ",
            shape_str(want));
  Tensor cc = contiguous_raw(cols);
  Tensor x = empty(image_shape, cols.dtype(), cols.device());
  if (x.numel() > 0) get_kernel<kernels::Col2ImKernel>(cols.device(), cols.dtype())(g, cc.data_ptr(), x.data_ptr());
  if (any_requires_grad({&cols})) {
    auto node = record("col2im", {cols}, {&x});
    node->backward = [kh, kw, o](const Grads& gr, const std::vector<bool>&) -> Grads {
      return {im2col(gr[0], kh, kw, o)};
    };
  }
  detail::forward_rule("col2im", {&cols}, x,
                       [&](const std::vector<Tensor>& t) { return col2im(t[0], image_shape, kh, kw, o); });
  return x;
}

namespace {

// y = conv(x, w) through the device's conv2d_fwd kernel. The backward is the im2col composite's:
// with y[n] = W₂·cols(x)[n] (W₂ = w as [O, C·kh·kw]), gW₂ = Σₙ g[n]·cols[n]ᵀ and
// gx = col2im(W₂ᵀ·g), all differentiable ops, so double backward works; the JVP is
// conv(ẋ, w) + conv(x, ẇ).
Tensor conv2d_direct(const Tensor& x, const Tensor& w, const kernels::Conv2dGeom& g, Conv2dOptions o) {
  const int64_t O = w.shape()[0], kh = w.shape()[2], kw = w.shape()[3];
  Tensor xc = contiguous_raw(x), wc = contiguous_raw(w);
  Tensor y = empty({g.n, O, g.oh, g.ow}, x.dtype(), x.device());
  if (y.numel() > 0 && g.c > 0)
    get_kernel<kernels::Conv2dFwdKernel>(x.device(), x.dtype())(g, O, xc.data_ptr(), wc.data_ptr(),
                                                                           y.data_ptr());
  else if (y.numel() > 0)
    fill_(y, 0.0);
  if (any_requires_grad({&x, &w})) {
    auto node = record("conv2d", {x, w}, {&y});
    SavedTensor sx(x, false), sw(w, false);
    const Shape xs = x.shape(), ws = w.shape();
    node->backward = [=](const Grads& gr, const std::vector<bool>& needs) -> Grads {
      Tensor gy = reshape(gr[0], {xs[0], O, -1});  // [N, O, L]
      Tensor gx, gw;
      if (needs[0])
        gx = col2im(matmul(transpose(reshape(sw.unpack("conv2d"), {O, -1}), 0, 1), gy), xs, kh, kw, o);
      if (needs[1]) {
        Tensor cols = im2col(sx.unpack("conv2d"), kh, kw, o);  // [N, C·kh·kw, L]
        gw = reshape(sum(matmul(gy, transpose(cols, 1, 2)), {0}), ws);
      }
      return {gx, gw};
    };
  }
  detail::forward_rule("conv2d", {&x, &w}, y, [&](const std::vector<Tensor>& t) {
    Tensor ty;
    if (t[0].defined()) ty = conv2d(t[0], w, Tensor(), o);
    if (t[1].defined()) ty = detail::add_terms(ty, conv2d(x, t[1], Tensor(), o));
    return ty;
  });
  return y;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, Conv2dOptions o) {
  detail::check_same("conv2d", x, w);
  detail::check_float("conv2d", x);
  VGG_CHECK(x.dim() == 4 && w.dim() == 4, "conv2d: expects input [N, C, H, W] and weight [O, C, kh, kw], got ",
            describe(x), " and ", describe(w));
  VGG_CHECK(w.shape()[1] == x.shape()[1], "conv2d: weight ", shape_str(w.shape()), " expects ", w.shape()[1],
            " input channels, input ", shape_str(x.shape()), " has ", x.shape()[1]);
  if (b.defined()) {
    detail::check_same("conv2d", x, b);
    VGG_CHECK(b.shape() == Shape{w.shape()[0]}, "conv2d: bias has shape ", shape_str(b.shape()), ", expected [",
              w.shape()[0], "]");
  }
  const int64_t O = w.shape()[0], kh = w.shape()[2], kw = w.shape()[3];
  auto g = geometry("conv2d", x.shape(), kh, kw, o);
  // non-overlapping patches (stride = kernel, no padding: the MMDiT's patch embedding) on a GPU:
  // the patches are a permuted view, so the convolution is one copy and one GEMM; the result is
  // returned as a channels-last view [N, O, oh, ow] (strides of [N, oh, ow, O]), which is what
  // patch embedding flattens into tokens next. (cuDNN's bf16 NCHW kernel took 5 ms for the SD3
  // 1024² patch embedding, a 0.8 GFLOP problem.)
  if (x.device().is_cuda() && o.stride_h == kh && o.stride_w == kw && o.pad_h == 0 && o.pad_w == 0 &&
      x.shape()[2] % kh == 0 && x.shape()[3] % kw == 0) {
    const int64_t C = x.shape()[1];
    Tensor p = reshape(x, {g.n, C, g.oh, kh, g.ow, kw});
    p = reshape(permute(p, {0, 2, 4, 1, 3, 5}), {g.n, g.oh * g.ow, C * kh * kw});  // [N, L, C·kh·kw]
    Tensor y = matmul(p, transpose(reshape(w, {O, C * kh * kw}), 0, 1));           // [N, L, O]
    if (b.defined()) y = add(y, b);
    return permute(reshape(y, {g.n, g.oh, g.ow, O}), {0, 3, 1, 2});
  }
  // a device with a direct convolution (cuDNN): its forward, the composite's backward
  if (!x.device().is_cpu() && has_kernel<kernels::Conv2dFwdKernel>(x.device(), x.dtype())) {
    Tensor y = conv2d_direct(x, w, g, o);
    if (b.defined()) y = add(y, reshape(b, {1, O, 1, 1}));
    return y;
  }
  Tensor cols = im2col(x, kh, kw, o);                    // [N, C*kh*kw, L]
  Tensor y = matmul(reshape(w, {O, -1}), cols);          // [N, O, L]
  y = reshape(y, {g.n, O, g.oh, g.ow});
  if (b.defined()) y = add(y, reshape(b, {1, O, 1, 1}));
  return y;
}

Tensor avg_pool2d(const Tensor& x, int64_t kh, int64_t kw, Conv2dOptions o) {
  detail::check_float("avg_pool2d", x);
  auto g = geometry("avg_pool2d", x.shape(), kh, kw, o);
  Tensor xc = contiguous_raw(x);
  Tensor y = empty({g.n, g.c, g.oh, g.ow}, x.dtype(), x.device());
  if (y.numel() > 0) get_kernel<kernels::AvgPoolKernel>(x.device(), x.dtype())(g, xc.data_ptr(), y.data_ptr());
  if (any_requires_grad({&x})) {
    auto node = record("avg_pool2d", {x}, {&y});
    Shape xs = x.shape();
    node->backward = [xs, kh, kw, o](const Grads& gr, const std::vector<bool>&) -> Grads {
      return {avg_pool2d_adjoint(gr[0], xs, kh, kw, o)};
    };
  }
  detail::forward_rule("avg_pool2d", {&x}, y,
                       [&](const std::vector<Tensor>& t) { return avg_pool2d(t[0], kh, kw, o); });
  return y;
}

Tensor avg_pool2d_adjoint(const Tensor& y, const Shape& image_shape, int64_t kh, int64_t kw, Conv2dOptions o) {
  detail::check_float("avg_pool2d_adjoint", y);
  auto g = geometry("avg_pool2d_adjoint", image_shape, kh, kw, o);
  Shape want = {g.n, g.c, g.oh, g.ow};
  VGG_CHECK(y.shape() == want, "avg_pool2d_adjoint: input has shape ", shape_str(y.shape()), ", expected ",
            shape_str(want));
  Tensor yc = contiguous_raw(y);
  Tensor x = empty(image_shape, y.dtype(), y.device());
  if (x.numel() > 0)
    get_kernel<kernels::AvgPoolAdjointKernel>(y.device(), y.dtype())(g, yc.data_ptr(), x.data_ptr());
  if (any_requires_grad({&y})) {
    auto node = record("avg_pool2d_adjoint", {y}, {&x});
    node->backward = [kh, kw, o](const Grads& gr, const std::vector<bool>&) -> Grads {
      return {avg_pool2d(gr[0], kh, kw, o)};
    };
  }
  detail::forward_rule("avg_pool2d_adjoint", {&y}, x, [&](const std::vector<Tensor>& t) {
    return avg_pool2d_adjoint(t[0], image_shape, kh, kw, o);
  });
  return x;
}

}  // namespace vgg::ops
