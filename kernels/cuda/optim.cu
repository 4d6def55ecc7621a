// CUDA optimizer kernels (contracts in kernels/optim.h): AdamW over many tensors in one launch and
// per-tensor sums of squares. The tensor table travels in the kernel's arguments (up to kTensors
// tensors and kChunks chunks of work per launch; more make more launches), so a step needs no
// table copy. Every operation of the update is an explicitly rounded intrinsic (no contraction),
// in the order of the CPU reference, so both give the same bits.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/optim.h"
#include "tensor/dispatch.h"
#include "tensor/error.h"
#include "tensor/storage.h"

namespace vgg::kernels::cuda {
namespace {

constexpr int kTensors = 24;
constexpr int kChunks = 256;
constexpr int64_t kAdamChunk = 1 << 16;  // elements per block of the update
constexpr int kThreads = 512;

// Correctly rounded arithmetic, never contracted.
template <class T>
struct R;
template <>
struct R<float> {
  static __device__ float mul(float a, float b) { return __fmul_rn(a, b); }
  static __device__ float add(float a, float b) { return __fadd_rn(a, b); }
  static __device__ float div(float a, float b) { return __fdiv_rn(a, b); }
  static __device__ float fma(float a, float b, float c) { return __fmaf_rn(a, b, c); }
  static __device__ float sqrt(float a) { return __fsqrt_rn(a); }
};
template <>
struct R<double> {
  static __device__ double mul(double a, double b) { return __dmul_rn(a, b); }
  static __device__ double add(double a, double b) { return __dadd_rn(a, b); }
  static __device__ double div(double a, double b) { return __ddiv_rn(a, b); }
  static __device__ double fma(double a, double b, double c) { return __fma_rn(a, b, c); }
  static __device__ double sqrt(double a) { return __dsqrt_rn(a); }
};

template <class T>
struct AdamTensorArg {
  T* p;
  const T* g;
  T* m;
  T* v;
  int64_t n;
  T neg_step, bc2_sqrt;
};

template <class T>
struct AdamLaunch {
  AdamTensorArg<T> t[kTensors];
  int32_t chunk_tensor[kChunks];
  int32_t chunk_index[kChunks];
  T decay, b1, a1, b2, a2, eps, clip;
  int32_t scale;
};

template <class T>
__global__ void __launch_bounds__(kThreads) adamw_k(const __grid_constant__ AdamLaunch<T> a) {
  const AdamTensorArg<T>& t = a.t[a.chunk_tensor[blockIdx.x]];
  const int64_t lo = static_cast<int64_t>(a.chunk_index[blockIdx.x]) * kAdamChunk;
  const int64_t hi = lo + kAdamChunk < t.n ? lo + kAdamChunk : t.n;
  for (int64_t i = lo + threadIdx.x; i < hi; i += kThreads) {
    const T gi = a.scale ? R<T>::mul(t.g[i], a.clip) : t.g[i];
    const T pi = R<T>::mul(t.p[i], a.decay);
    const T mi = R<T>::fma(a.a1, gi, R<T>::mul(t.m[i], a.b1));
    const T vi = R<T>::fma(R<T>::mul(a.a2, gi), gi, R<T>::mul(t.v[i], a.b2));
    t.m[i] = mi;
    t.v[i] = vi;
    const T denom = R<T>::add(R<T>::div(R<T>::sqrt(vi), t.bc2_sqrt), a.eps);
    t.p[i] = R<T>::add(pi, R<T>::div(R<T>::mul(t.neg_step, mi), denom));
  }
}

template <class T>
void adamw_multi(const AdamWTensor* tensors, int64_t count, const AdamWScalars& s) {
  AdamLaunch<T> a{};
  a.decay = static_cast<T>(s.decay);
  a.b1 = static_cast<T>(s.beta1);
  a.a1 = static_cast<T>(1.0 - s.beta1);
  a.b2 = static_cast<T>(s.beta2);
  a.a2 = static_cast<T>(1.0 - s.beta2);
  a.eps = static_cast<T>(s.eps);
  a.clip = static_cast<T>(s.clip);
  a.scale = s.scale ? 1 : 0;
  int nt = 0, nc = 0;
  auto flush = [&] {
    if (nc > 0) {
      adamw_k<T><<<nc, kThreads>>>(a);
      check_launch("adamw_multi");
    }
    nt = nc = 0;
  };
  for (int64_t i = 0; i < count; ++i) {
    const AdamWTensor& src = tensors[i];
    if (src.n == 0) continue;
    if (nt == kTensors) flush();
    a.t[nt] = {static_cast<T*>(src.p), static_cast<const T*>(src.g), static_cast<T*>(src.m), static_cast<T*>(src.v),
               src.n, static_cast<T>(src.neg_step), static_cast<T>(src.bc2_sqrt)};
    const int64_t chunks = (src.n + kAdamChunk - 1) / kAdamChunk;
    for (int64_t c = 0; c < chunks; ++c) {
      if (nc == kChunks) {  // keep this tensor as the first of the next launch
        const AdamTensorArg<T> cur = a.t[nt];
        flush();
        a.t[0] = cur;
      }
      a.chunk_tensor[nc] = nt;
      a.chunk_index[nc] = static_cast<int32_t>(c);
      ++nc;
    }
    ++nt;
  }
  flush();
}

// ---- sums of squares ------------------------------------------------------------------------

struct SqLaunch {
  const void* x[kTensors];
  int64_t n[kTensors];
  int32_t chunk_tensor[kChunks];
  int32_t chunk_index[kChunks];
  int64_t part_base;  // where this launch's first chunk writes in parts
};

template <class T>
__global__ void __launch_bounds__(kThreads) sum_squares_k(const __grid_constant__ SqLaunch a, double* parts) {
  const int k = a.chunk_tensor[blockIdx.x];
  const T* x = static_cast<const T*>(a.x[k]);
  const int64_t lo = static_cast<int64_t>(a.chunk_index[blockIdx.x]) * kSumSquaresBlock;
  const int64_t hi = lo + kSumSquaresBlock < a.n[k] ? lo + kSumSquaresBlock : a.n[k];
  double acc = 0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += kThreads) {
    const double v = static_cast<double>(x[i]);
    acc = __fma_rn(v, v, acc);
  }
  // fixed tree: warps by shuffles, then the warps' sums by the first warp
  for (int o = 16; o > 0; o >>= 1) acc = __dadd_rn(acc, __shfl_down_sync(0xffffffffu, acc, o));
  __shared__ double warp_sum[kThreads / 32];
  if ((threadIdx.x & 31) == 0) warp_sum[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x < 32) {
    double w = threadIdx.x < kThreads / 32 ? warp_sum[threadIdx.x] : 0.0;
    for (int o = 16; o > 0; o >>= 1) w = __dadd_rn(w, __shfl_down_sync(0xffffffffu, w, o));
    if (threadIdx.x == 0) parts[a.part_base + blockIdx.x] = w;
  }
}

template <class T>
void sum_squares_multi(const void* const* xs, const int64_t* ns, int64_t count, double* out) {
  std::vector<int64_t> first(static_cast<size_t>(count) + 1, 0);  // first part of each tensor
  for (int64_t i = 0; i < count; ++i) first[i + 1] = first[i] + (ns[i] + kSumSquaresBlock - 1) / kSumSquaresBlock;
  const int64_t total = first[count];
  for (int64_t i = 0; i < count; ++i) out[i] = 0;
  if (total == 0) return;
  int dev = 0;
  cudaGetDevice(&dev);
  Allocator* alloc = allocator_for(Device::cuda(dev));
  const size_t bytes = static_cast<size_t>(total) * sizeof(double);
  auto* parts = static_cast<double*>(alloc->allocate(bytes));
  SqLaunch a{};
  int nt = 0, nc = 0;
  int64_t written = 0;
  cudaError_t err = cudaSuccess;
  auto flush = [&] {
    if (nc > 0 && err == cudaSuccess) {
      a.part_base = written;
      sum_squares_k<T><<<nc, kThreads>>>(a, parts);
      err = cudaGetLastError();
      written += nc;
    }
    nt = nc = 0;
  };
  for (int64_t i = 0; i < count; ++i) {
    if (ns[i] == 0) continue;
    if (nt == kTensors) flush();
    a.x[nt] = xs[i];
    a.n[nt] = ns[i];
    const int64_t chunks = first[i + 1] - first[i];
    for (int64_t c = 0; c < chunks; ++c) {
      if (nc == kChunks) {
        const void* x = a.x[nt];
        const int64_t n = a.n[nt];
        flush();
        a.x[0] = x;
        a.n[0] = n;
      }
      a.chunk_tensor[nc] = nt;
      a.chunk_index[nc] = static_cast<int32_t>(c);
      ++nc;
    }
    ++nt;
  }
  flush();
  std::vector<double> host(static_cast<size_t>(total));
  if (err == cudaSuccess) err = cudaMemcpy(host.data(), parts, bytes, cudaMemcpyDeviceToHost);
  alloc->deallocate(parts, bytes);
  if (err != cudaSuccess) {
    cudaGetLastError();
    VGG_FAIL("CUDA kernel sum_squares_multi failed: ", cudaGetErrorString(err));
  }
  // chunks were written in tensor order, so tensor i's parts are host[first[i] .. first[i+1])
  for (int64_t i = 0; i < count; ++i) {
    double s = 0;
    for (int64_t c = first[i]; c < first[i + 1]; ++c) s += host[c];
    out[i] = s;
  }
}

}  // namespace

VGG_REGISTER_KERNEL(AdamWMultiKernel, CUDA, F32, (&adamw_multi<float>));
VGG_REGISTER_KERNEL(AdamWMultiKernel, CUDA, F64, (&adamw_multi<double>));
VGG_REGISTER_KERNEL(SumSquaresMultiKernel, CUDA, F32, (&sum_squares_multi<float>));
VGG_REGISTER_KERNEL(SumSquaresMultiKernel, CUDA, F64, (&sum_squares_multi<double>));

}  // namespace vgg::kernels::cuda
