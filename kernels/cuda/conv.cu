// CUDA im2col / col2im and average pooling (contracts in kernels/conv.h), NCHW.
//
// The adjoints (col2im, the pooling adjoint) are written as gathers, one thread per input pixel
// summing the entries that map onto it in the CPU kernels' order (kernel offset, then output
// position, ascending): no atomics, deterministic, and the same sums as the CPU.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/conv.h"
#include "kernels/cuda/common.cuh"
#include "tensor/dispatch.h"
#include "tensor/error.h"

namespace vgg::kernels::cuda {
namespace {

constexpr int kThreads = 256;

unsigned grid(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }


// Output positions o in [0, n_out) with o·s − p + k == i for some k in [0, kk): [lo, hi].
__device__ __forceinline__ void covering(int64_t i, int64_t s, int64_t p, int64_t kk, int64_t n_out, int64_t* lo, int64_t* hi) {
  const int64_t a = i + p - kk + 1;  // o·s >= a
  *lo = a <= 0 ? 0 : (a + s - 1) / s;
  *hi = (i + p) / s;
  if (*hi > n_out - 1) *hi = n_out - 1;
}

template <class T>
__global__ void im2col_k(Conv2dGeom g, const T* x, T* cols) {
  const int64_t L = g.oh * g.ow, total = g.n * g.c * g.kh * g.kw * L;
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= total) return;
  const int64_t l = e % L, row = e / L, ck = g.c * g.kh * g.kw;
  const int64_t n = row / ck, r = row % ck, c = r / (g.kh * g.kw), ki = (r / g.kw) % g.kh, kj = r % g.kw;
  const int64_t oy = l / g.ow, ox = l % g.ow, iy = oy * g.sh - g.ph + ki, ix = ox * g.sw - g.pw + kj;
  cols[e] = (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) ? x[((n * g.c + c) * g.h + iy) * g.w + ix] : st<T>(0.0f);
}

template <class T>
__global__ void col2im_k(Conv2dGeom g, const T* cols, T* x) {
  const int64_t total = g.n * g.c * g.h * g.w;
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= total) return;
  const int64_t ix = e % g.w, iy = (e / g.w) % g.h, nc = e / (g.h * g.w), L = g.oh * g.ow;
  Cmp<T> s = 0;
  for (int64_t ki = 0; ki < g.kh; ++ki) {
    const int64_t ty = iy + g.ph - ki;
    if (ty < 0 || ty % g.sh != 0 || ty / g.sh >= g.oh) continue;
    for (int64_t kj = 0; kj < g.kw; ++kj) {
      const int64_t tx = ix + g.pw - kj;
      if (tx < 0 || tx % g.sw != 0 || tx / g.sw >= g.ow) continue;
      s += ldv(cols[(nc * g.kh * g.kw + ki * g.kw + kj) * L + (ty / g.sh) * g.ow + tx / g.sw]);
    }
  }
  x[e] = st<T>(s);
}

template <class T>
__global__ void avg_pool_k(Conv2dGeom g, const T* x, T* y) {
  const int64_t total = g.n * g.c * g.oh * g.ow;
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= total) return;
  const int64_t ox = e % g.ow, oy = (e / g.ow) % g.oh, nc = e / (g.oh * g.ow);
  const T* xc = x + nc * g.h * g.w;
  Cmp<T> s = 0;
  for (int64_t ki = 0; ki < g.kh; ++ki) {
    const int64_t iy = oy * g.sh - g.ph + ki;
    if (iy < 0 || iy >= g.h) continue;
    for (int64_t kj = 0; kj < g.kw; ++kj) {
      const int64_t ix = ox * g.sw - g.pw + kj;
      if (ix >= 0 && ix < g.w) s += ldv(xc[iy * g.w + ix]);
    }
  }
  y[e] = st<T>(s * (Cmp<T>(1) / static_cast<Cmp<T>>(g.kh * g.kw)));
}

template <class T>
__global__ void avg_pool_adjoint_k(Conv2dGeom g, const T* y, T* x) {
  const int64_t total = g.n * g.c * g.h * g.w;
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= total) return;
  const int64_t ix = e % g.w, iy = (e / g.w) % g.h, nc = e / (g.h * g.w);
  const T* yc = y + nc * g.oh * g.ow;
  const Cmp<T> inv = Cmp<T>(1) / static_cast<Cmp<T>>(g.kh * g.kw);
  int64_t oy0, oy1, ox0, ox1;
  covering(iy, g.sh, g.ph, g.kh, g.oh, &oy0, &oy1);
  covering(ix, g.sw, g.pw, g.kw, g.ow, &ox0, &ox1);
  Cmp<T> s = 0;
  for (int64_t oy = oy0; oy <= oy1; ++oy)
    for (int64_t ox = ox0; ox <= ox1; ++ox) s += ldv(yc[oy * g.ow + ox]) * inv;
  x[e] = st<T>(s);
}

template <class T>
void im2col_kernel(const Conv2dGeom& g, const void* x, void* cols) {
  const int64_t total = g.n * g.c * g.kh * g.kw * g.oh * g.ow;
  if (total == 0) return;
  im2col_k<T><<<grid(total), kThreads>>>(g, static_cast<const T*>(x), static_cast<T*>(cols));
  check_launch("im2col");
}
template <class T>
void col2im_kernel(const Conv2dGeom& g, const void* cols, void* x) {
  const int64_t total = g.n * g.c * g.h * g.w;
  if (total == 0) return;
  col2im_k<T><<<grid(total), kThreads>>>(g, static_cast<const T*>(cols), static_cast<T*>(x));
  check_launch("col2im");
}
template <class T>
void avg_pool_kernel(const Conv2dGeom& g, const void* x, void* y) {
  const int64_t total = g.n * g.c * g.oh * g.ow;
  if (total == 0) return;
  avg_pool_k<T><<<grid(total), kThreads>>>(g, static_cast<const T*>(x), static_cast<T*>(y));
  check_launch("avg_pool2d");
}
template <class T>
void avg_pool_adjoint_kernel(const Conv2dGeom& g, const void* y, void* x) {
  const int64_t total = g.n * g.c * g.h * g.w;
  if (total == 0) return;
  avg_pool_adjoint_k<T><<<grid(total), kThreads>>>(g, static_cast<const T*>(y), static_cast<T*>(x));
  check_launch("avg_pool2d_adjoint");
}

}  // namespace

#define VGG_REG_CUDA_CONV(DT, T)                                                  \
  VGG_REGISTER_KERNEL(Im2ColKernel, CUDA, DT, (&im2col_kernel<T>));                   \
  VGG_REGISTER_KERNEL(Col2ImKernel, CUDA, DT, (&col2im_kernel<T>));                   \
  VGG_REGISTER_KERNEL(AvgPoolKernel, CUDA, DT, (&avg_pool_kernel<T>));             \
  VGG_REGISTER_KERNEL(AvgPoolAdjointKernel, CUDA, DT, (&avg_pool_adjoint_kernel<T>))
VGG_REG_CUDA_CONV(F32, float);
VGG_REG_CUDA_CONV(F64, double);
VGG_REG_CUDA_CONV(BF16, bf16);

}  // namespace vgg::kernels::cuda
