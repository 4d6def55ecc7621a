// CUDA row kernels (contracts in kernels/reduce.h, softmax.h, norm.h): reductions over the middle
// axis of [outer, r, inner], softmax / log-softmax, layer_norm, the fused adaLN (layer_norm_modulate) and rms_norm forward.
//
// Layout of the work: with inner == 1 a row is contiguous and one 256-thread block owns it (strided
// loads by the block, warp-shuffle then shared-memory reductions); with inner > 1 one thread owns
// one (outer, inner) column and walks r with stride inner (neighbouring threads read neighbouring
// addresses, so the loads coalesce). Arithmetic follows the CPU kernels: sums in double, softmax and
// norm statistics in the compute type (f32 for f32/bf16, f64 for f64), NaN propagating through
// max/min, the first index on ties for argmax/argmin.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/norm.h"
#include "kernels/reduce.h"
#include "kernels/softmax.h"
#include "tensor/dispatch.h"
#include "tensor/error.h"

namespace vgg::kernels::cuda {
namespace {

constexpr int kThreads = 256;

template <class T>
__device__ __forceinline__ double ld_d(const T* p) {
  if constexpr (std::is_same_v<T, bf16>)
    return static_cast<double>(__bfloat162float(*p));
  else
    return static_cast<double>(*p);
}
// Block-wide sum or max of one value per thread; every thread gets the result.
template <class V, bool Max>
__device__ V block_reduce(V v) {
  __shared__ V warp_part[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) {
    const V u = __shfl_xor_sync(0xffffffffu, v, o);
    v = Max ? (u > v || u != u ? u : v) : v + u;
  }
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  if (lane == 0) warp_part[w] = v;
  __syncthreads();
  V r = warp_part[0];
  for (int i = 1; i < kThreads / 32; ++i) r = Max ? (warp_part[i] > r || warp_part[i] != warp_part[i] ? warp_part[i] : r) : r + warp_part[i];
  __syncthreads();  // warp_part is reused by the next call
  return r;
}

// ---- reductions -----------------------------------------------------------------------------

template <class T>
__global__ void sum_rows(int64_t r, const T* x, T* out) {
  const T* row = x + blockIdx.x * r;
  double acc = 0;
  for (int64_t j = threadIdx.x; j < r; j += kThreads) acc += ld_d(row + j);
  acc = block_reduce<double, false>(acc);
  if (threadIdx.x == 0) out[blockIdx.x] = st<T>(static_cast<Cmp<T>>(acc));
}

template <class T>
__global__ void reduce_columns(ReduceOp op, int64_t outer, int64_t r, int64_t inner, const T* x, void* out) {
  const int64_t oi = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (oi >= outer * inner) return;
  const int64_t o = oi / inner, i = oi % inner;
  const T* base = x + o * r * inner + i;
  if (op == ReduceOp::Sum) {
    double acc = 0;
    for (int64_t j = 0; j < r; ++j) acc += ld_d(base + j * inner);
    static_cast<T*>(out)[oi] = st<T>(static_cast<Cmp<T>>(acc));
    return;
  }
  const bool want_max = op == ReduceOp::Max || op == ReduceOp::ArgMax;
  double best = ld_d(base);
  int64_t bi = 0;
  for (int64_t j = 1; j < r; ++j) {
    if (best != best) break;  // NaN propagates
    const double v = ld_d(base + j * inner);
    if (v != v || (want_max ? v > best : v < best)) best = v, bi = j;
  }
  if (op == ReduceOp::ArgMax || op == ReduceOp::ArgMin)
    static_cast<int64_t*>(out)[oi] = bi;
  else
    static_cast<T*>(out)[oi] = st<T>(static_cast<Cmp<T>>(best));
}

template <class T>
void reduce_kernel(ReduceOp op, int64_t outer, int64_t r, int64_t inner, const void* xp, void* out) {
  if (outer * inner == 0) return;
  const T* x = static_cast<const T*>(xp);
  if (op == ReduceOp::Sum && inner == 1 && r >= 1024 && outer <= INT32_MAX) {
    sum_rows<T><<<static_cast<unsigned>(outer), kThreads>>>(r, x, static_cast<T*>(out));
  } else {
    const int64_t n = outer * inner;
    reduce_columns<T><<<static_cast<unsigned>((n + kThreads - 1) / kThreads), kThreads>>>(op, outer, r, inner, x, out);
  }
  check_launch("reduce");
}

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

// ---- layer_norm, rms_norm -------------------------------------------------------------------

// The block's row statistics for layer_norm: mean, then the centred sum of squares (two passes,
// as the CPU kernel).
template <class T>
__device__ void row_stats(const T* xr, int64_t n, double eps, Cmp<T>* mean_out, Cmp<T>* rstd_out) {
  using V = Cmp<T>;
  V s = 0;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) s += ld(xr + j);
  const V mean = block_reduce<V, false>(s) / static_cast<V>(n);
  V ss = 0;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) {
    const V d = ld(xr + j) - mean;
    ss += d * d;
  }
  ss = block_reduce<V, false>(ss);
  *mean_out = mean;
  *rstd_out = static_cast<V>(1.0 / sqrt(static_cast<double>(ss) / static_cast<double>(n) + eps));
}

template <class T>
__global__ void layer_norm_rows(int64_t n, const T* x, const T* w, const T* b, double eps, T* y) {
  using V = Cmp<T>;
  const T* xr = x + blockIdx.x * n;
  T* yr = y + blockIdx.x * n;
  V mean, rstd;
  row_stats(xr, n, eps, &mean, &rstd);
  for (int64_t j = threadIdx.x; j < n; j += kThreads) {
    V v = (ld(xr + j) - mean) * rstd;
    if (w) v = v * ld(w + j);
    if (b) v = v + ld(b + j);
    yr[j] = st<T>(v);
  }
}

template <class T>
__global__ void rms_norm_rows(int64_t n, const T* x, const T* w, double eps, T* y) {
  using V = Cmp<T>;
  const T* xr = x + blockIdx.x * n;
  T* yr = y + blockIdx.x * n;
  V ss = 0;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) {
    const V v = ld(xr + j);
    ss += v * v;
  }
  ss = block_reduce<V, false>(ss);
  const V rstd = static_cast<V>(1.0 / sqrt(static_cast<double>(ss) / static_cast<double>(n) + eps));
  for (int64_t j = threadIdx.x; j < n; j += kThreads) {
    V v = ld(xr + j) * rstd;
    if (w) v = v * ld(w + j);
    yr[j] = st<T>(v);
  }
}

template <class T>
__global__ void layer_norm_modulate_rows(int64_t tokens, int64_t n, const T* x, const T* scale, const T* shift, double eps,
                                         T* y) {
  using V = Cmp<T>;
  const T* xr = x + blockIdx.x * n;
  T* yr = y + blockIdx.x * n;
  const T* sc = scale + (blockIdx.x / tokens) * n;
  const T* sh = shift + (blockIdx.x / tokens) * n;
  V mean, rstd;
  row_stats(xr, n, eps, &mean, &rstd);
  for (int64_t j = threadIdx.x; j < n; j += kThreads) yr[j] = st<T>((ld(xr + j) - mean) * rstd * (V(1) + ld(sc + j)) + ld(sh + j));
}

template <class T>
void layer_norm_modulate_kernel(int64_t batch, int64_t tokens, int64_t n, const void* x, const void* scale,
                                const void* shift, double eps, void* y) {
  if (batch * tokens == 0 || n == 0) return;
  VGG_CHECK(batch * tokens <= INT32_MAX, "layer_norm_modulate (CUDA): ", batch * tokens, " rows is more than one grid");
  layer_norm_modulate_rows<T><<<static_cast<unsigned>(batch * tokens), kThreads>>>(
      tokens, n, static_cast<const T*>(x), static_cast<const T*>(scale), static_cast<const T*>(shift), eps,
      static_cast<T*>(y));
  check_launch("layer_norm_modulate");
}

// x + gate·y over [batch, tokens, n], one thread per element (grid-stride)
template <class T>
__global__ void gated_residual_k(int64_t total, int64_t tokens, int64_t n, const T* x, const T* gate, const T* y, T* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = i % n, b = i / (tokens * n);
    out[i] = st<T>(ld(x + i) + ld(gate + b * n + j) * ld(y + i));
  }
}

template <class T>
void gated_residual_kernel(int64_t batch, int64_t tokens, int64_t n, const void* x, const void* gate, const void* y,
                           void* out) {
  const int64_t total = batch * tokens * n;
  if (total == 0) return;
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t{1} << 20);
  gated_residual_k<T><<<static_cast<unsigned>(blocks), kThreads>>>(total, tokens, n, static_cast<const T*>(x),
                                                                   static_cast<const T*>(gate), static_cast<const T*>(y),
                                                                   static_cast<T*>(out));
  check_launch("gated_residual");
}

template <class T>
void layer_norm_kernel(int64_t rows, int64_t n, const void* x, const void* w, const void* b, double eps, void* y) {
  if (rows == 0 || n == 0) return;
  VGG_CHECK(rows <= INT32_MAX, "layer_norm (CUDA): ", rows, " rows is more than one grid");
  layer_norm_rows<T><<<static_cast<unsigned>(rows), kThreads>>>(n, static_cast<const T*>(x), static_cast<const T*>(w),
                                                                static_cast<const T*>(b), eps, static_cast<T*>(y));
  check_launch("layer_norm");
}

template <class T>
void rms_norm_kernel(int64_t rows, int64_t n, const void* x, const void* w, double eps, void* y) {
  if (rows == 0 || n == 0) return;
  VGG_CHECK(rows <= INT32_MAX, "rms_norm (CUDA): ", rows, " rows is more than one grid");
  rms_norm_rows<T><<<static_cast<unsigned>(rows), kThreads>>>(n, static_cast<const T*>(x), static_cast<const T*>(w), eps,
                                                              static_cast<T*>(y));
  check_launch("rms_norm");
}

}  // namespace

VGG_REGISTER_KERNEL("reduce", CUDA, F32, (&reduce_kernel<float>));
VGG_REGISTER_KERNEL("reduce", CUDA, F64, (&reduce_kernel<double>));
VGG_REGISTER_KERNEL("reduce", CUDA, BF16, (&reduce_kernel<bf16>));
VGG_REGISTER_KERNEL("reduce", CUDA, I32, (&reduce_kernel<int32_t>));
VGG_REGISTER_KERNEL("reduce", CUDA, I64, (&reduce_kernel<int64_t>));
VGG_REGISTER_KERNEL("softmax", CUDA, F32, (&softmax_kernel<float>));
VGG_REGISTER_KERNEL("softmax", CUDA, F64, (&softmax_kernel<double>));
VGG_REGISTER_KERNEL("softmax", CUDA, BF16, (&softmax_kernel<bf16>));
VGG_REGISTER_KERNEL("layer_norm", CUDA, F32, (&layer_norm_kernel<float>));
VGG_REGISTER_KERNEL("layer_norm", CUDA, F64, (&layer_norm_kernel<double>));
VGG_REGISTER_KERNEL("layer_norm", CUDA, BF16, (&layer_norm_kernel<bf16>));
VGG_REGISTER_KERNEL("gated_residual", CUDA, F32, (&gated_residual_kernel<float>));
VGG_REGISTER_KERNEL("gated_residual", CUDA, F64, (&gated_residual_kernel<double>));
VGG_REGISTER_KERNEL("gated_residual", CUDA, BF16, (&gated_residual_kernel<bf16>));
VGG_REGISTER_KERNEL("layer_norm_modulate", CUDA, F32, (&layer_norm_modulate_kernel<float>));
VGG_REGISTER_KERNEL("layer_norm_modulate", CUDA, F64, (&layer_norm_modulate_kernel<double>));
VGG_REGISTER_KERNEL("layer_norm_modulate", CUDA, BF16, (&layer_norm_modulate_kernel<bf16>));
VGG_REGISTER_KERNEL("rms_norm", CUDA, F32, (&rms_norm_kernel<float>));
VGG_REGISTER_KERNEL("rms_norm", CUDA, F64, (&rms_norm_kernel<double>));
VGG_REGISTER_KERNEL("rms_norm", CUDA, BF16, (&rms_norm_kernel<bf16>));

}  // namespace vgg::kernels::cuda
