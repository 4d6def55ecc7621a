// CUDA attention, the straightforward version (contract in kernels/attention.h): correct for any
// sequence lengths and head sizes up to 256, O(S) memory, no tensor cores. The bf16 forward and
// backward hand head sizes 64 and 128 to the tensor-core flash kernels (flash.cu) first; this one is the
// flash kernels' reference on the device and the fallback for every other shape and dtype.
//
// Forward: one warp per query row. For each key the warp forms the score with a shuffle
// reduction of the d-long dot product, then updates the online softmax (running max m, sum l) and
// the output accumulator, of which each lane holds dv/32 elements. o = acc/l, lse = m + log l.
// Backward, deterministic (no atomics): D_i = rowsum(dO_i ∘ O_i) (a warp per row), then
// dq_i = s·Σ_j dS_ij k_j with a warp per query row, and dk_j = s·Σ_i dS_ij q_i, dv_j = Σ_i P_ij dO_i
// with a warp per key row, where P_ij = exp(s·q_i·k_j − lse_i) and dS_ij = P_ij (dO_i·v_j − D_i).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/attention.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/flash.cuh"
#include "tensor/dispatch.h"
#include "tensor/error.h"
#include "tensor/storage.h"

namespace vgg::kernels::cuda {
namespace {

constexpr int kWarps = 4;      // warps per block
constexpr int kMaxPerLane = 8;  // head sizes up to 256

template <class V>
__device__ __forceinline__ V warp_sum(V v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// ⟨a, b⟩ over n elements, the lanes striding by 32; every lane gets the sum.
template <class T, class U>
__device__ __forceinline__ Cmp<T> warp_dot(const T* a, const U* b, int64_t n, int lane) {
  Cmp<T> s = 0;
  for (int64_t e = lane; e < n; e += 32) s += ldv(a[e]) * ldv(b[e]);
  return warp_sum(s);
}

template <class T>
__global__ void fwd_k(AttnArgs a, const T* q, const T* k, const T* v, T* o, Cmp<T>* lse) {
  using V = Cmp<T>;
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);  // over bh·sq
  if (row >= a.bh * a.sq) return;
  const int64_t b = row / a.sq;
  const T* qi = q + row * a.d;
  const T* kb = k + b * a.sk * a.d;
  const T* vb = v + b * a.sk * a.dv;
  V acc[kMaxPerLane];
#pragma unroll
  for (int t = 0; t < kMaxPerLane; ++t) acc[t] = 0;
  V m = -INFINITY, l = 0;
  const V scale = static_cast<V>(a.scale);
  for (int64_t j = 0; j < a.sk; ++j) {
    const V s = scale * warp_dot(qi, kb + j * a.d, a.d, lane);
    const V mn = s > m ? s : m;
    const V corr = exp(m - mn), p = exp(s - mn);
    l = l * corr + p;
#pragma unroll
    for (int t = 0; t < kMaxPerLane; ++t) {
      const int64_t e = lane + 32 * t;
      if (e < a.dv) acc[t] = acc[t] * corr + p * ldv(vb[j * a.dv + e]);
    }
    m = mn;
  }
  const V inv = V(1) / l;
#pragma unroll
  for (int t = 0; t < kMaxPerLane; ++t) {
    const int64_t e = lane + 32 * t;
    if (e < a.dv) o[row * a.dv + e] = st<T>(acc[t] * inv);
  }
  if (lane == 0) lse[row] = m + log(l);
}

template <class T>
__global__ void bwd_rowdot_k(AttnArgs a, const T* o, const T* dout, Cmp<T>* dvec) {
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);
  if (row >= a.bh * a.sq) return;
  const Cmp<T> s = warp_dot(dout + row * a.dv, o + row * a.dv, a.dv, lane);
  if (lane == 0) dvec[row] = s;
}

template <class T>
__global__ void bwd_dq_k(AttnArgs a, const T* q, const T* k, const T* v, const Cmp<T>* lse, const T* dout,
                         const Cmp<T>* dvec, T* dq) {
  using V = Cmp<T>;
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);
  if (row >= a.bh * a.sq) return;
  const int64_t b = row / a.sq;
  const T* qi = q + row * a.d;
  const T* doi = dout + row * a.dv;
  const T* kb = k + b * a.sk * a.d;
  const T* vb = v + b * a.sk * a.dv;
  const V scale = static_cast<V>(a.scale), li = lse[row], di = dvec[row];
  V acc[kMaxPerLane];
#pragma unroll
  for (int t = 0; t < kMaxPerLane; ++t) acc[t] = 0;
  for (int64_t j = 0; j < a.sk; ++j) {
    const V p = exp(scale * warp_dot(qi, kb + j * a.d, a.d, lane) - li);
    const V ds = p * (warp_dot(doi, vb + j * a.dv, a.dv, lane) - di);
#pragma unroll
    for (int t = 0; t < kMaxPerLane; ++t) {
      const int64_t e = lane + 32 * t;
      if (e < a.d) acc[t] += ds * ldv(kb[j * a.d + e]);
    }
  }
#pragma unroll
  for (int t = 0; t < kMaxPerLane; ++t) {
    const int64_t e = lane + 32 * t;
    if (e < a.d) dq[row * a.d + e] = st<T>(scale * acc[t]);
  }
}

template <class T>
__global__ void bwd_dkv_k(AttnArgs a, const T* q, const T* k, const T* v, const Cmp<T>* lse, const T* dout,
                          const Cmp<T>* dvec, T* dk, T* dv) {
  using V = Cmp<T>;
  const int lane = threadIdx.x & 31;
  const int64_t col = blockIdx.x * int64_t(kWarps) + (threadIdx.x >> 5);  // over bh·sk
  if (col >= a.bh * a.sk) return;
  const int64_t b = col / a.sk;
  const T* kj = k + col * a.d;
  const T* vj = v + col * a.dv;
  const T* qb = q + b * a.sq * a.d;
  const T* dob = dout + b * a.sq * a.dv;
  const V scale = static_cast<V>(a.scale);
  V ak[kMaxPerLane], av[kMaxPerLane];
#pragma unroll
  for (int t = 0; t < kMaxPerLane; ++t) ak[t] = 0, av[t] = 0;
  for (int64_t i = 0; i < a.sq; ++i) {
    const int64_t r = b * a.sq + i;
    const V p = exp(scale * warp_dot(qb + i * a.d, kj, a.d, lane) - lse[r]);
    const V ds = p * (warp_dot(dob + i * a.dv, vj, a.dv, lane) - dvec[r]);
#pragma unroll
    for (int t = 0; t < kMaxPerLane; ++t) {
      const int64_t e = lane + 32 * t;
      if (e < a.d) ak[t] += ds * ldv(qb[i * a.d + e]);
      if (e < a.dv) av[t] += p * ldv(dob[i * a.dv + e]);
    }
  }
#pragma unroll
  for (int t = 0; t < kMaxPerLane; ++t) {
    const int64_t e = lane + 32 * t;
    if (e < a.d) dk[col * a.d + e] = st<T>(scale * ak[t]);
    if (e < a.dv) dv[col * a.dv + e] = st<T>(av[t]);
  }
}

unsigned blocks_for_rows(int64_t rows) { return static_cast<unsigned>((rows + kWarps - 1) / kWarps); }

void check_sizes(const AttnArgs& a) {
  VGG_CHECK(a.d <= 32 * kMaxPerLane && a.dv <= 32 * kMaxPerLane, "attention (CUDA): head sizes up to ", 32 * kMaxPerLane,
            ", got d = ", a.d, ", dv = ", a.dv);
  VGG_CHECK(a.sk >= 1, "attention (CUDA): need at least one key");
}

template <class T>
void fwd_kernel(const AttnArgs& a, const void* q, const void* k, const void* v, void* o, void* lse) {
  if (a.bh * a.sq == 0) return;
  if constexpr (std::is_same_v<T, bf16>)
    if (flash_fwd_bf16(a, q, k, v, o, lse)) return;  // tensor cores when the shape allows (flash.cuh)
  check_sizes(a);
  fwd_k<T><<<blocks_for_rows(a.bh * a.sq), 32 * kWarps>>>(a, static_cast<const T*>(q), static_cast<const T*>(k),
                                                           static_cast<const T*>(v), static_cast<T*>(o),
                                                           static_cast<Cmp<T>*>(lse));
  check_launch("attention_fwd");
}

template <class T>
void bwd_kernel(const AttnArgs& a, const void* q, const void* k, const void* v, const void* o, const void* lse,
                const void* dout, void* dq, void* dk, void* dv) {
  if (a.bh == 0) return;
  check_sizes(a);
  const T *Q = static_cast<const T*>(q), *K = static_cast<const T*>(k), *Vv = static_cast<const T*>(v);
  const T *O = static_cast<const T*>(o), *dO = static_cast<const T*>(dout);
  const auto* L = static_cast<const Cmp<T>*>(lse);
  // D from the caching allocator; the kernels that read it are queued before the block can be
  // handed out again (one stream)
  int dev = 0;
  cudaGetDevice(&dev);
  Allocator* alloc = allocator_for(Device::cuda(dev));
  const size_t dbytes = static_cast<size_t>(a.bh * a.sq) * sizeof(Cmp<T>);
  auto* D = static_cast<Cmp<T>*>(alloc->allocate(dbytes));
  if (a.sq > 0) bwd_rowdot_k<T><<<blocks_for_rows(a.bh * a.sq), 32 * kWarps>>>(a, O, dO, D);
  if constexpr (std::is_same_v<T, bf16>) {
    if (flash_bwd_bf16(a, q, k, v, lse, dout, D, dq, dk, dv)) {  // tensor cores (flash.cuh)
      const cudaError_t e = cudaGetLastError();
      alloc->deallocate(D, dbytes);
      if (e != cudaSuccess) VGG_FAIL("CUDA kernel attention_bwd failed: ", cudaGetErrorString(e));
      return;
    }
  }
  if (a.sq > 0) {
    bwd_dq_k<T><<<blocks_for_rows(a.bh * a.sq), 32 * kWarps>>>(a, Q, K, Vv, L, dO, D, static_cast<T*>(dq));
  }
  bwd_dkv_k<T><<<blocks_for_rows(a.bh * a.sk), 32 * kWarps>>>(a, Q, K, Vv, L, dO, D, static_cast<T*>(dk), static_cast<T*>(dv));
  const cudaError_t e = cudaGetLastError();
  alloc->deallocate(D, dbytes);
  if (e != cudaSuccess) VGG_FAIL("CUDA kernel attention_bwd failed: ", cudaGetErrorString(e));
}

}  // namespace

VGG_REGISTER_KERNEL(AttnFwdKernel, CUDA, F32, (&fwd_kernel<float>));
VGG_REGISTER_KERNEL(AttnFwdKernel, CUDA, F64, (&fwd_kernel<double>));
VGG_REGISTER_KERNEL(AttnFwdKernel, CUDA, BF16, (&fwd_kernel<bf16>));
VGG_REGISTER_KERNEL(AttnBwdKernel, CUDA, F32, (&bwd_kernel<float>));
VGG_REGISTER_KERNEL(AttnBwdKernel, CUDA, F64, (&bwd_kernel<double>));
VGG_REGISTER_KERNEL(AttnBwdKernel, CUDA, BF16, (&bwd_kernel<bf16>));

}  // namespace vgg::kernels::cuda
