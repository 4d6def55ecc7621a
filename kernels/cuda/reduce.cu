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

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/iter.cuh"
#include "kernels/norm.h"
#include "kernels/reduce.h"
#include "kernels/softmax.h"
#include "tensor/dispatch.h"
#include "tensor/error.h"
#include "tensor/storage.h"

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

// Sums (accumulated in double, as on the CPU) are deterministic: a fixed split of the work and a
// fixed order of combining the parts, whatever the launch. Three shapes of work:
//   * columns (inner > 1): a block of 32 x 8 threads owns 32 column vectors (16 bytes of
//     neighbouring columns per thread, so a warp reads 512 contiguous bytes of a row) and a slice of
//     the rows, its 8 row lanes combined in shared memory; when outer * column blocks would not fill
//     the GPU, the rows are split over blocks (grid y) into a double workspace, summed in order by a
//     second kernel;
//   * long rows (inner == 1, r >= 1024): a block per row, or per slice of a row into the workspace
//     when there are fewer rows than the GPU has room for;
//   * short rows (inner == 1, r < 1024): a warp per row.
constexpr int kColX = 32, kColY = 8;

int sm_count() {
  static int n = [] {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
      return 132;
    return v > 0 ? v : 132;
  }();
  return n;
}

// A device buffer of doubles for the partial sums, from the caching allocator (stream order makes
// the release right after the launches safe).
struct Workspace {
  void* p = nullptr;
  size_t bytes = 0;
  Allocator* a = nullptr;
  explicit Workspace(size_t n) : bytes(n) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) VGG_FAIL("reduce (CUDA): cudaGetDevice failed");
    a = allocator_for(Device::cuda(dev));
    p = a->allocate(bytes);
  }
  ~Workspace() {
    if (p) a->deallocate(p, bytes);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
};

template <class T, int V>
__global__ void sum_columns(int64_t r, int64_t inner, int64_t col_blocks, int64_t rows_per_split, const T* x, T* out,
                            double* part) {
  __shared__ double acc_s[kColY][kColX * V];
  const int64_t o = blockIdx.x / col_blocks, cb = blockIdx.x % col_blocks;
  const int64_t col0 = (cb * kColX + threadIdx.x) * V;
  const int64_t r0 = blockIdx.y * rows_per_split, r1 = r0 + rows_per_split < r ? r0 + rows_per_split : r;
  double acc[V];
#pragma unroll
  for (int k = 0; k < V; ++k) acc[k] = 0;
  if (col0 < inner) {
    const T* base = x + o * r * inner + col0;
    for (int64_t j = r0 + threadIdx.y; j < r1; j += kColY) {
      const T* row = base + j * inner;
      if constexpr (V > 1) {
        union {
          uint4 u;
          T t[V];
        } pk;
        pk.u = *reinterpret_cast<const uint4*>(row);
#pragma unroll
        for (int k = 0; k < V; ++k) acc[k] += static_cast<double>(ldv(pk.t[k]));
      } else {
        acc[0] += static_cast<double>(ldv(*row));
      }
    }
  }
#pragma unroll
  for (int k = 0; k < V; ++k) acc_s[threadIdx.y][threadIdx.x * V + k] = acc[k];
  __syncthreads();
  // the 256 threads finish the 32 * V columns of the block, each summing the 8 row lanes in order
  for (int c = threadIdx.y * kColX + threadIdx.x; c < kColX * V; c += kColX * kColY) {
    const int64_t col = cb * kColX * V + c;
    if (col >= inner) continue;
    double s = 0;
#pragma unroll
    for (int y = 0; y < kColY; ++y) s += acc_s[y][c];
    if (part)
      part[(int64_t(blockIdx.y) * (gridDim.x / col_blocks) + o) * inner + col] = s;  // [splits, outer, inner]
    else
      out[o * inner + col] = st<T>(static_cast<Cmp<T>>(s));
  }
}

// out[i] = sum over s of part[s * n + i], s in order
template <class T>
__global__ void sum_parts(int64_t n, int64_t splits, const double* part, T* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    double s = 0;
    for (int64_t k = 0; k < splits; ++k) s += part[k * n + i];
    out[i] = st<T>(static_cast<Cmp<T>>(s));
  }
}

// one block per (row, slice of the row); part (when set) is [splits, rows]
template <class T>
__global__ void sum_rows(int64_t r, int64_t per_split, const T* x, T* out, double* part) {
  const T* row = x + blockIdx.x * r;
  const int64_t j0 = blockIdx.y * per_split, j1 = j0 + per_split < r ? j0 + per_split : r;
  double acc = 0;
  for (int64_t j = j0 + threadIdx.x; j < j1; j += kThreads) acc += ld_d(row + j);
  acc = block_reduce<double, false>(acc);
  if (threadIdx.x != 0) return;
  if (part)
    part[int64_t(blockIdx.y) * gridDim.x + blockIdx.x] = acc;
  else
    out[blockIdx.x] = st<T>(static_cast<Cmp<T>>(acc));
}

// a warp per row
template <class T>
__global__ void sum_short_rows(int64_t rows, int64_t r, const T* x, T* out) {
  const int64_t row = blockIdx.x * int64_t(kThreads / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const T* xr = x + row * r;
  double acc = 0;
  for (int64_t j = lane; j < r; j += 32) acc += ld_d(xr + j);
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) out[row] = st<T>(static_cast<Cmp<T>>(acc));
}

template <class T>
void sum_kernel(int64_t outer, int64_t r, int64_t inner, const T* x, T* out) {
  const int64_t target = int64_t{4} * sm_count();  // blocks that fill the GPU a few times over
  if (inner == 1) {
    if (r < 1024) {
      sum_short_rows<T><<<grid_for(outer, kThreads / 32, INT32_MAX), kThreads>>>(outer, r, x, out);
      return;
    }
    VGG_CHECK(outer <= INT32_MAX, "sum (CUDA): ", outer, " rows is more than one grid");
    int64_t splits = outer >= target ? 1 : std::min<int64_t>((target + outer - 1) / outer, r / 1024);
    splits = std::max<int64_t>(1, std::min<int64_t>(splits, 65535));
    const int64_t per = (r + splits - 1) / splits;
    splits = (r + per - 1) / per;
    if (splits == 1) {
      sum_rows<T><<<static_cast<unsigned>(outer), kThreads>>>(r, r, x, out, nullptr);
      return;
    }
    Workspace ws(static_cast<size_t>(splits * outer) * sizeof(double));
    double* part = static_cast<double*>(ws.p);
    sum_rows<T><<<dim3(static_cast<unsigned>(outer), static_cast<unsigned>(splits)), kThreads>>>(r, per, x, out, part);
    sum_parts<T><<<grid_for(outer, kThreads), kThreads>>>(outer, splits, part, out);
    return;
  }
  constexpr int VW = 16 / sizeof(T);
  const bool vec = VW > 1 && inner % VW == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  const int v = vec ? VW : 1;
  const int64_t col_blocks = (inner + kColX * v - 1) / (kColX * v);
  VGG_CHECK(outer * col_blocks <= INT32_MAX, "sum (CUDA): ", outer * col_blocks, " column blocks is more than one grid");
  const int64_t blocks = outer * col_blocks;
  // rows per block at least 64 (8 per row lane), splits at most 65535 (grid y)
  int64_t splits = blocks >= target ? 1 : std::min<int64_t>((target + blocks - 1) / blocks, (r + 63) / 64);
  splits = std::max<int64_t>(1, std::min<int64_t>(splits, 65535));
  const int64_t per = (r + splits - 1) / splits;
  splits = (r + per - 1) / per;
  std::unique_ptr<Workspace> ws;
  double* part = nullptr;
  if (splits > 1) {
    ws = std::make_unique<Workspace>(static_cast<size_t>(splits * outer * inner) * sizeof(double));
    part = static_cast<double*>(ws->p);
  }
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(splits)), block(kColX, kColY);
  if (vec)
    sum_columns<T, VW><<<grid, block>>>(r, inner, col_blocks, per, x, out, part);
  else
    sum_columns<T, 1><<<grid, block>>>(r, inner, col_blocks, per, x, out, part);
  if (part) sum_parts<T><<<grid_for(outer * inner, kThreads), kThreads>>>(outer * inner, splits, part, out);
}

template <class T>
__global__ void reduce_columns(ReduceOp op, int64_t outer, int64_t r, int64_t inner, const T* x, void* out) {
  const int64_t oi = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (oi >= outer * inner) return;
  const int64_t o = oi / inner, i = oi % inner;
  const T* base = x + o * r * inner + i;
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
  if (op == ReduceOp::Sum) {
    sum_kernel<T>(outer, r, inner, x, static_cast<T*>(out));
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

// rows per block so that the grid fills the GPU a few times over
int64_t rows_per_block_for(int64_t batch, int64_t tokens, int64_t col_blocks) {
  const int64_t target = int64_t{4} * sm_count();
  const int64_t per = (batch * col_blocks * tokens + target - 1) / target;
  return std::max<int64_t>(1, std::min<int64_t>(per, tokens));
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

VGG_REGISTER_KERNEL(ReduceKernel, CUDA, F32, (&reduce_kernel<float>));
VGG_REGISTER_KERNEL(ReduceKernel, CUDA, F64, (&reduce_kernel<double>));
VGG_REGISTER_KERNEL(ReduceKernel, CUDA, BF16, (&reduce_kernel<bf16>));
VGG_REGISTER_KERNEL(ReduceKernel, CUDA, I32, (&reduce_kernel<int32_t>));
VGG_REGISTER_KERNEL(ReduceKernel, CUDA, I64, (&reduce_kernel<int64_t>));
VGG_REGISTER_KERNEL(SoftmaxKernel, CUDA, F32, (&softmax_kernel<float>));
VGG_REGISTER_KERNEL(SoftmaxKernel, CUDA, F64, (&softmax_kernel<double>));
VGG_REGISTER_KERNEL(SoftmaxKernel, CUDA, BF16, (&softmax_kernel<bf16>));
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
