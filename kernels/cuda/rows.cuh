// Shared by the CUDA row and reduction kernels (reduce.cu, softmax.cu, norm.cu): the block size,
// block-wide reductions, the layer-norm row statistics, the multiprocessor count, and a workspace
// from the caching allocator for deterministic two-pass sums.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/common.cuh"
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

// rows per block so that the grid fills the GPU a few times over
int64_t rows_per_block_for(int64_t batch, int64_t tokens, int64_t col_blocks) {
  const int64_t target = int64_t{4} * sm_count();
  const int64_t per = (batch * col_blocks * tokens + target - 1) / target;
  return std::max<int64_t>(1, std::min<int64_t>(per, tokens));
}

}  // namespace
}  // namespace vgg::kernels::cuda
