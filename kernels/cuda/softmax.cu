// CUDA softmax / log-softmax (contract in kernels/softmax.h): a block per contiguous row, or a
// thread per (outer, inner) column; statistics in the compute type (f32 for f32/bf16, f64 for f64).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rows.cuh"
#include "kernels/softmax.h"
#include "tensor/dispatch.h"
#include "tensor/error.h"

namespace vgg::kernels::cuda {
namespace {

// ---- softmax --------------------------------------------------------------------------------

template <class T>
__global__ void softmax_rows(bool log_, int64_t n, const T* x, T* y) {
  using V = Cmp<T>;
  const T* xr = x + blockIdx.x * n;
  T* yr = y + blockIdx.x * n;
  V m = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) {
    const V v = ld(xr + j);
    m = (v > m || v != v) ? v : m;
  }
  m = block_reduce<V, true>(m);
  if (isinf(m) && m < 0) m = 0;  // all -inf: avoid inf - inf
  V s = 0;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) s += exp(ld(xr + j) - m);
  s = block_reduce<V, false>(s);
  if (log_) {
    const V ls = log(s) + m;
    for (int64_t j = threadIdx.x; j < n; j += kThreads) yr[j] = st<T>(ld(xr + j) - ls);
  } else {
    const V inv = V(1) / s;
    for (int64_t j = threadIdx.x; j < n; j += kThreads) yr[j] = st<T>(exp(ld(xr + j) - m) * inv);
  }
}

template <class T>
__global__ void softmax_columns(bool log_, int64_t outer, int64_t n, int64_t inner, const T* x, T* y) {
  using V = Cmp<T>;
  const int64_t oi = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (oi >= outer * inner) return;
  const int64_t o = oi / inner, i = oi % inner;
  const T* xb = x + o * n * inner + i;
  T* yb = y + o * n * inner + i;
  V m = -INFINITY;
  for (int64_t j = 0; j < n; ++j) {
    const V v = ld(xb + j * inner);
    m = (v > m || v != v) ? v : m;
  }
  if (isinf(m) && m < 0) m = 0;
  V s = 0;
  for (int64_t j = 0; j < n; ++j) s += exp(ld(xb + j * inner) - m);
  const V ls = log(s) + m, inv = V(1) / s;
  for (int64_t j = 0; j < n; ++j) {
    const V v = ld(xb + j * inner);
    yb[j * inner] = st<T>(log_ ? v - ls : exp(v - m) * inv);
  }
}

template <class T>
void softmax_kernel(bool log_, int64_t outer, int64_t n, int64_t inner, const void* xp, void* yp) {
  if (outer * inner * n == 0) return;
  const T* x = static_cast<const T*>(xp);
  T* y = static_cast<T*>(yp);
  if (inner == 1 && outer <= INT32_MAX) {
    softmax_rows<T><<<static_cast<unsigned>(outer), kThreads>>>(log_, n, x, y);
  } else {
    const int64_t m = outer * inner;
    softmax_columns<T><<<static_cast<unsigned>((m + kThreads - 1) / kThreads), kThreads>>>(log_, outer, n, inner, x, y);
  }
  check_launch(log_ ? "log_softmax" : "softmax");
}

}  // namespace

VGG_REGISTER_KERNEL(SoftmaxKernel, CUDA, F32, (&softmax_kernel<float>));
VGG_REGISTER_KERNEL(SoftmaxKernel, CUDA, F64, (&softmax_kernel<double>));
VGG_REGISTER_KERNEL(SoftmaxKernel, CUDA, BF16, (&softmax_kernel<bf16>));

}  // namespace vgg::kernels::cuda
