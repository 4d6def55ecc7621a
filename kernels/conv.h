// im2col / col2im (adjoint pair) and average pooling (forward and its adjoint) for NCHW data.
#pragma once
#include <cstdint>
#include "tensor/dispatch.h"

namespace vgg::kernels {

struct Conv2dGeom {
  int64_t n, c, h, w;     // input
  int64_t kh, kw;         // kernel
  int64_t sh, sw;         // stride
  int64_t ph, pw;         // zero padding
  int64_t oh, ow;         // output
};
// cols [n, c*kh*kw, oh*ow] from x [n, c, h, w] (contiguous)
using Im2ColFn = void (*)(const Conv2dGeom& g, const void* x, void* cols);
VGG_KERNEL_OP(Im2ColKernel, "im2col", Im2ColFn);
// x [n, c, h, w] = sum of the cols entries that map onto each pixel (x is overwritten)
using Col2ImFn = void (*)(const Conv2dGeom& g, const void* cols, void* x);
VGG_KERNEL_OP(Col2ImKernel, "col2im", Col2ImFn);
// y [n, c, oh, ow] = mean over the window, padding counted as zeros (count_include_pad)
using AvgPoolFn = void (*)(const Conv2dGeom& g, const void* x, void* y);
VGG_KERNEL_OP(AvgPoolKernel, "avg_pool2d", AvgPoolFn);
// x [n, c, h, w] = adjoint of AvgPoolFn applied to y (x is overwritten)
using AvgPoolAdjointFn = void (*)(const Conv2dGeom& g, const void* y, void* x);
VGG_KERNEL_OP(AvgPoolAdjointKernel, "avg_pool2d_adjoint", AvgPoolAdjointFn);

// y [n, out_channels, oh, ow] = cross-correlation of x [n, c, h, w] with w [out_channels, c, kh, kw]
// (both contiguous), no bias. Optional: registered on CUDA when cuDNN is built in; ops::conv2d
// uses it when present and otherwise im2col + GEMM.
using Conv2dFwdFn = void (*)(const Conv2dGeom& g, int64_t out_channels, const void* x, const void* w, void* y);
VGG_KERNEL_OP(Conv2dFwdKernel, "conv2d_fwd", Conv2dFwdFn);

}  // namespace vgg::kernels
