// CUDA reductions (contract in kernels/reduce.h) over the middle axis of [outer, r, inner]: sums in
// double, deterministic (a fixed split of the work, parts combined in a fixed order); max/min and
// argmax/argmin with NaN propagating and the first index on ties, as the CPU kernels.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/iter.cuh"
#include "kernels/cuda/rows.cuh"
#include "kernels/reduce.h"
#include "tensor/dispatch.h"
#include "tensor/error.h"

namespace vgg::kernels::cuda {
namespace {

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

// a warp per row; V > 1: each lane reads 16 bytes (V elements) at a time (rows of a multiple of V
// elements, 16-byte aligned)
template <class T, int V>
__global__ void sum_short_rows(int64_t rows, int64_t r, const T* x, T* out) {
  const int64_t row = blockIdx.x * int64_t(kThreads / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const T* xr = x + row * r;
  double acc = 0;
  if constexpr (V > 1) {
    for (int64_t j = int64_t(lane) * V; j < r; j += 32 * V) {
      union {
        uint4 u;
        T t[V];
      } pk;
      pk.u = *reinterpret_cast<const uint4*>(xr + j);
#pragma unroll
      for (int k = 0; k < V; ++k) acc += static_cast<double>(ldv(pk.t[k]));
    }
  } else {
    for (int64_t j = lane; j < r; j += 32) acc += ld_d(xr + j);
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) out[row] = st<T>(static_cast<Cmp<T>>(acc));
}

template <class T>
void sum_kernel(int64_t outer, int64_t r, int64_t inner, const T* x, T* out) {
  const int64_t target = int64_t{4} * sm_count();  // blocks that fill the GPU a few times over
  if (inner == 1) {
    // a warp per row: short rows, and rows up to 16 K when there are enough of them to fill the GPU
    // (a block per row there spends 256 threads and a block-wide reduction on a few KB)
    if (r < 1024 || (r <= 16384 && outer >= target * (kThreads / 32))) {
      constexpr int VW = 16 / sizeof(T);
      const unsigned g = grid_for(outer, kThreads / 32, INT32_MAX);
      if (VW > 1 && r % VW == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0)
        sum_short_rows<T, VW><<<g, kThreads>>>(outer, r, x, out);
      else
        sum_short_rows<T, 1><<<g, kThreads>>>(outer, r, x, out);
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

}  // namespace

VGG_REGISTER_KERNEL(ReduceKernel, CUDA, F32, (&reduce_kernel<float>));
VGG_REGISTER_KERNEL(ReduceKernel, CUDA, F64, (&reduce_kernel<double>));
VGG_REGISTER_KERNEL(ReduceKernel, CUDA, BF16, (&reduce_kernel<bf16>));
VGG_REGISTER_KERNEL(ReduceKernel, CUDA, I32, (&reduce_kernel<int32_t>));
VGG_REGISTER_KERNEL(ReduceKernel, CUDA, I64, (&reduce_kernel<int64_t>));

}  // namespace vgg::kernels::cuda
