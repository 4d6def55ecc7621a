// CUDA normalisations (contract in kernels/norm.h): layer_norm, rms_norm, the MMDiT's fused adaLN
// (layer_norm_modulate) and gated residual, and the fused backwards of those two. A block per row
// for the norms (statistics in the compute type, two passes as the CPU kernel); column sums over the
// tokens in fixed chunks combined in order (deterministic, no atomics).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rows.cuh"
#include "kernels/norm.h"
#include "tensor/dispatch.h"
#include "tensor/error.h"

namespace vgg::kernels::cuda {
namespace {

// ---- layer_norm, rms_norm -------------------------------------------------------------------

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

// x + gate·y over [batch, tokens, n]: a thread owns 16 bytes of neighbouring columns (one vector
// of gate, loaded once) and walks rows; grid x over column vectors and row chunks, grid y over batch.
template <class T, int V>
__global__ void gated_residual_k(int64_t tokens, int64_t n, int64_t rows_per_block, const T* x, const T* gate,
                                 const T* y, T* out) {
  const int64_t nv = n / V;
  const int64_t cv = blockIdx.x % ((nv + kThreads - 1) / kThreads) * kThreads + threadIdx.x;
  const int64_t chunk = blockIdx.x / ((nv + kThreads - 1) / kThreads);
  if (cv >= nv) return;
  const int64_t b = blockIdx.y, t0 = chunk * rows_per_block, t1 = t0 + rows_per_block < tokens ? t0 + rows_per_block : tokens;
  union Pk {
    typename std::conditional_t<V * sizeof(T) == 16, uint4, std::conditional_t<V * sizeof(T) == 8, uint2, uint32_t>> u;
    T t[V];
  };
  Pk gp;
  if constexpr (V > 1) gp.u = *reinterpret_cast<const decltype(gp.u)*>(gate + b * n + cv * V); else gp.t[0] = gate[b * n + cv];
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t off = (b * tokens + t) * n + cv * V;
    Pk xp, yp, op;
    if constexpr (V > 1) {
      xp.u = *reinterpret_cast<const decltype(xp.u)*>(x + off);
      yp.u = *reinterpret_cast<const decltype(yp.u)*>(y + off);
    } else {
      xp.t[0] = x[off];
      yp.t[0] = y[off];
    }
#pragma unroll
    for (int k = 0; k < V; ++k) op.t[k] = st<T>(ldv(xp.t[k]) + ldv(gp.t[k]) * ldv(yp.t[k]));
    if constexpr (V > 1) *reinterpret_cast<decltype(op.u)*>(out + off) = op.u; else out[off] = op.t[0];
  }
}

template <class T>
void gated_residual_kernel(int64_t batch, int64_t tokens, int64_t n, const void* x, const void* gate, const void* y,
                           void* out) {
  if (batch * tokens * n == 0) return;
  VGG_CHECK(batch <= 65535, "gated_residual (CUDA): batch ", batch, " is more than one grid column");
  constexpr int VW = 16 / sizeof(T);
  const bool vec = VW > 1 && n % VW == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(y) % 16 == 0 && reinterpret_cast<uintptr_t>(gate) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(out) % 16 == 0;
  const int64_t v = vec ? VW : 1, col_blocks = (n / v + kThreads - 1) / kThreads;
  const int64_t rpb = rows_per_block_for(batch, tokens, col_blocks), chunks = (tokens + rpb - 1) / rpb;
  const dim3 grid(static_cast<unsigned>(col_blocks * chunks), static_cast<unsigned>(batch));
  auto xp = static_cast<const T*>(x), gp = static_cast<const T*>(gate), yp = static_cast<const T*>(y);
  if (vec)
    gated_residual_k<T, VW><<<grid, kThreads>>>(tokens, n, rpb, xp, gp, yp, static_cast<T*>(out));
  else
    gated_residual_k<T, 1><<<grid, kThreads>>>(tokens, n, rpb, xp, gp, yp, static_cast<T*>(out));
  check_launch("gated_residual");
}

// ---- fused backward of the adaLN modulation and of the gated residual ------------------------
//
// Both produce per-batch column sums over the tokens ([batch, n]); a block owns a chunk of rows,
// keeps its columns' partial sums in shared memory (in the compute type: f32 for f32/bf16, f64 for
// f64), and writes them to a workspace [batch, chunks, n]; sum_chunks adds the chunks in order in
// double and rounds once (deterministic, no atomics).

template <class T, class P>
__global__ void sum_chunks(int64_t batch, int64_t chunks, int64_t n, const P* part, T* out) {
  const int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (i >= batch * n) return;
  const int64_t b = i / n, j = i % n;
  double s = 0;
  for (int64_t c = 0; c < chunks; ++c) s += part[(b * chunks + c) * n + j];
  out[i] = st<T>(static_cast<Cmp<T>>(s));
}

// layer_norm_modulate backward over one chunk of rows of one batch: gx = rstd·(gm − mean(gm) −
// x̂·mean(gm·x̂)) with gm = gy·(1 + scale); column partials of gy·x̂ (gscale) and gy (gshift).
// Statistics as the forward (row_stats), arithmetic in the compute type.
template <class T>
__global__ void ln_modulate_bwd_rows(int64_t tokens, int64_t n, int64_t rows_per_block, const T* x, const T* scale,
                                     const T* gy, double eps, T* gx, Cmp<T>* part_s, Cmp<T>* part_h) {
  using V = Cmp<T>;
  extern __shared__ __align__(8) unsigned char colacc_raw[];
  V* colacc = reinterpret_cast<V*>(colacc_raw);  // [2][n]: Σ gy·x̂, Σ gy
  const int64_t b = blockIdx.y, chunk = blockIdx.x, chunks = gridDim.x;
  const int64_t t0 = chunk * rows_per_block, t1 = t0 + rows_per_block < tokens ? t0 + rows_per_block : tokens;
  const bool cols = part_s != nullptr;
  if (cols)
    for (int64_t j = threadIdx.x; j < 2 * n; j += kThreads) colacc[j] = 0;
  const T* sc = scale + b * n;
  for (int64_t t = t0; t < t1; ++t) {
    const T* xr = x + (b * tokens + t) * n;
    const T* gr = gy + (b * tokens + t) * n;
    V mean, rstd;
    row_stats(xr, n, eps, &mean, &rstd);
    V a1 = 0, a2 = 0;
    for (int64_t j = threadIdx.x; j < n; j += kThreads) {
      const V xh = (ld(xr + j) - mean) * rstd, g = ld(gr + j), gm = g * (V(1) + ld(sc + j));
      a1 += gm;
      a2 += gm * xh;
      if (cols) {
        colacc[j] += g * xh;
        colacc[n + j] += g;
      }
    }
    if (gx) {
      const V m1 = block_reduce<V, false>(a1) / static_cast<V>(n), m2 = block_reduce<V, false>(a2) / static_cast<V>(n);
      T* orow = gx + (b * tokens + t) * n;
      for (int64_t j = threadIdx.x; j < n; j += kThreads) {
        const V xh = (ld(xr + j) - mean) * rstd, gm = ld(gr + j) * (V(1) + ld(sc + j));
        orow[j] = st<T>(rstd * (gm - m1 - xh * m2));
      }
    }
  }
  if (!cols) return;
  __syncthreads();
  for (int64_t j = threadIdx.x; j < n; j += kThreads) {
    part_s[(b * chunks + chunk) * n + j] = colacc[j];
    part_h[(b * chunks + chunk) * n + j] = colacc[n + j];
  }
}

template <class T>
void layer_norm_modulate_bwd_kernel(int64_t batch, int64_t tokens, int64_t n, const void* x, const void* scale,
                                    const void* gy, double eps, void* gx, void* gscale, void* gshift) {
  if (batch * tokens == 0 || n == 0) return;
  VGG_CHECK(n <= kLayerNormModulateBwdMaxWidth, "layer_norm_modulate backward (CUDA): width ", n, " is over ",
            kLayerNormModulateBwdMaxWidth);
  VGG_CHECK(batch <= 65535, "layer_norm_modulate backward (CUDA): batch ", batch, " is more than one grid column");
  VGG_CHECK((gscale == nullptr) == (gshift == nullptr), "layer_norm_modulate backward (CUDA): gscale and gshift go together");
  const int64_t rpb = rows_per_block_for(batch, tokens, 1), chunks = (tokens + rpb - 1) / rpb;
  using P = Cmp<T>;
  std::unique_ptr<Workspace> ws;
  P *ps = nullptr, *ph = nullptr;
  if (gscale) {
    ws = std::make_unique<Workspace>(static_cast<size_t>(2 * batch * chunks * n) * sizeof(P));
    ps = static_cast<P*>(ws->p);
    ph = ps + batch * chunks * n;
  }
  const size_t smem = gscale ? static_cast<size_t>(2 * n) * sizeof(P) : 0;
  if (smem > 48 * 1024)
    cudaFuncSetAttribute(ln_modulate_bwd_rows<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  ln_modulate_bwd_rows<T><<<dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(batch)), kThreads, smem>>>(
      tokens, n, rpb, static_cast<const T*>(x), static_cast<const T*>(scale), static_cast<const T*>(gy), eps,
      static_cast<T*>(gx), ps, ph);
  if (gscale) {
    const unsigned g = static_cast<unsigned>((batch * n + kThreads - 1) / kThreads);
    sum_chunks<T, P><<<g, kThreads>>>(batch, chunks, n, ps, static_cast<T*>(gscale));
    sum_chunks<T, P><<<g, kThreads>>>(batch, chunks, n, ph, static_cast<T*>(gshift));
  }
  check_launch("layer_norm_modulate backward");
}

// gated residual backward: gy = g·gate (broadcast over tokens), ggate = Σ_t g·y; a thread owns one
// column of a chunk of rows (coalesced across the warp), partials in a register
template <class T>
__global__ void gated_residual_bwd_k(int64_t tokens, int64_t n, int64_t rows_per_block, const T* g, const T* gate,
                                     const T* y, T* gy, Cmp<T>* part) {
  using V = Cmp<T>;
  const int64_t col_blocks = (n + kThreads - 1) / kThreads;
  const int64_t j = blockIdx.x % col_blocks * kThreads + threadIdx.x, chunk = blockIdx.x / col_blocks;
  const int64_t chunks = gridDim.x / col_blocks;
  if (j >= n) return;
  const int64_t b = blockIdx.y, t0 = chunk * rows_per_block, t1 = t0 + rows_per_block < tokens ? t0 + rows_per_block : tokens;
  const V gt = ld(gate + b * n + j);
  V acc = 0;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t off = (b * tokens + t) * n + j;
    const V gv = ld(g + off);
    if (gy) gy[off] = st<T>(gv * gt);
    if (part) acc += gv * ld(y + off);
  }
  if (part) part[(b * chunks + chunk) * n + j] = acc;
}

template <class T>
void gated_residual_bwd_kernel(int64_t batch, int64_t tokens, int64_t n, const void* g, const void* gate, const void* y,
                               void* gy, void* ggate) {
  if (batch * tokens * n == 0) return;
  VGG_CHECK(batch <= 65535, "gated_residual backward (CUDA): batch ", batch, " is more than one grid column");
  const int64_t col_blocks = (n + kThreads - 1) / kThreads;
  const int64_t rpb = rows_per_block_for(batch, tokens, col_blocks), chunks = (tokens + rpb - 1) / rpb;
  std::unique_ptr<Workspace> ws;
  Cmp<T>* part = nullptr;
  if (ggate) {
    ws = std::make_unique<Workspace>(static_cast<size_t>(batch * chunks * n) * sizeof(Cmp<T>));
    part = static_cast<Cmp<T>*>(ws->p);
  }
  gated_residual_bwd_k<T><<<dim3(static_cast<unsigned>(col_blocks * chunks), static_cast<unsigned>(batch)), kThreads>>>(
      tokens, n, rpb, static_cast<const T*>(g), static_cast<const T*>(gate), static_cast<const T*>(y), static_cast<T*>(gy),
      part);
  if (ggate)
    sum_chunks<T, Cmp<T>><<<static_cast<unsigned>((batch * n + kThreads - 1) / kThreads), kThreads>>>(batch, chunks, n, part,
                                                                                          static_cast<T*>(ggate));
  check_launch("gated_residual backward");
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

VGG_REGISTER_KERNEL(LayerNormKernel, CUDA, F32, (&layer_norm_kernel<float>));
VGG_REGISTER_KERNEL(LayerNormKernel, CUDA, F64, (&layer_norm_kernel<double>));
VGG_REGISTER_KERNEL(LayerNormKernel, CUDA, BF16, (&layer_norm_kernel<bf16>));
VGG_REGISTER_KERNEL(GatedResidualKernel, CUDA, F32, (&gated_residual_kernel<float>));
VGG_REGISTER_KERNEL(GatedResidualKernel, CUDA, F64, (&gated_residual_kernel<double>));
VGG_REGISTER_KERNEL(GatedResidualKernel, CUDA, BF16, (&gated_residual_kernel<bf16>));
VGG_REGISTER_KERNEL(GatedResidualBwdKernel, CUDA, F32, (&gated_residual_bwd_kernel<float>));
VGG_REGISTER_KERNEL(GatedResidualBwdKernel, CUDA, F64, (&gated_residual_bwd_kernel<double>));
VGG_REGISTER_KERNEL(GatedResidualBwdKernel, CUDA, BF16, (&gated_residual_bwd_kernel<bf16>));
VGG_REGISTER_KERNEL(LayerNormModulateBwdKernel, CUDA, F32, (&layer_norm_modulate_bwd_kernel<float>));
VGG_REGISTER_KERNEL(LayerNormModulateBwdKernel, CUDA, F64, (&layer_norm_modulate_bwd_kernel<double>));
VGG_REGISTER_KERNEL(LayerNormModulateBwdKernel, CUDA, BF16, (&layer_norm_modulate_bwd_kernel<bf16>));
VGG_REGISTER_KERNEL(LayerNormModulateKernel, CUDA, F32, (&layer_norm_modulate_kernel<float>));
VGG_REGISTER_KERNEL(LayerNormModulateKernel, CUDA, F64, (&layer_norm_modulate_kernel<double>));
VGG_REGISTER_KERNEL(LayerNormModulateKernel, CUDA, BF16, (&layer_norm_modulate_kernel<bf16>));
VGG_REGISTER_KERNEL(RmsNormKernel, CUDA, F32, (&rms_norm_kernel<float>));
VGG_REGISTER_KERNEL(RmsNormKernel, CUDA, F64, (&rms_norm_kernel<double>));
VGG_REGISTER_KERNEL(RmsNormKernel, CUDA, BF16, (&rms_norm_kernel<bf16>));

}  // namespace vgg::kernels::cuda
