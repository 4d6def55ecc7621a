// CUDA indexing kernels (contract in kernels/index.h). index_add and scatter_add give one thread each
// (outer, inner) column and let it walk the m source rows in order, as the CPU kernels do: no
// atomics, so the sums are deterministic and equal to the CPU's in f32 and f64.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/index.h"
#include "tensor/dispatch.h"
#include "tensor/error.h"

namespace vgg::kernels::cuda {
namespace {

constexpr int kThreads = 256;

unsigned grid(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }


// ---- indexing -------------------------------------------------------------------------------

template <class T>
__global__ void index_select_k(int64_t outer, int64_t n, int64_t inner, const T* src, const int64_t* idx, int64_t m, T* out) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // over outer·m·inner outputs
  if (e >= outer * m * inner) return;
  const int64_t i = e % inner, oj = e / inner, o = oj / m, j = oj % m;
  out[e] = src[(o * n + idx[j]) * inner + i];
}

template <class T>
__global__ void index_add_k(int64_t outer, int64_t n, int64_t inner, T* dst, const int64_t* idx, int64_t m, const T* src) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // one (outer, inner) column
  if (c >= outer * inner) return;
  const int64_t o = c / inner, i = c % inner;
  for (int64_t j = 0; j < m; ++j) {
    T& d = dst[(o * n + idx[j]) * inner + i];
    d = st<T>(ldv(d) + ldv(src[(o * m + j) * inner + i]));
  }
}

template <class T>
__global__ void gather_k(int64_t outer, int64_t n, int64_t inner, const T* src, const int64_t* idx, int64_t m, T* out) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= outer * m * inner) return;
  const int64_t i = e % inner, o = e / inner / m;
  out[e] = src[(o * n + idx[e]) * inner + i];
}

template <class T>
__global__ void scatter_add_k(int64_t outer, int64_t n, int64_t inner, T* dst, const int64_t* idx, int64_t m, const T* src) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= outer * inner) return;
  const int64_t o = c / inner, i = c % inner;
  for (int64_t j = 0; j < m; ++j) {
    const int64_t e = (o * m + j) * inner + i;
    T& d = dst[(o * n + idx[e]) * inner + i];
    d = st<T>(ldv(d) + ldv(src[e]));
  }
}

template <class T>
void index_select_kernel(int64_t outer, int64_t n, int64_t inner, const void* src, const int64_t* idx, int64_t m, void* out) {
  if (outer * m * inner == 0) return;
  index_select_k<T><<<grid(outer * m * inner), kThreads>>>(outer, n, inner, static_cast<const T*>(src), idx, m, static_cast<T*>(out));
  check_launch("index_select");
}
template <class T>
void index_add_kernel(int64_t outer, int64_t n, int64_t inner, void* dst, const int64_t* idx, int64_t m, const void* src) {
  if (outer * inner == 0 || m == 0) return;
  index_add_k<T><<<grid(outer * inner), kThreads>>>(outer, n, inner, static_cast<T*>(dst), idx, m, static_cast<const T*>(src));
  check_launch("index_add");
}
template <class T>
void gather_kernel(int64_t outer, int64_t n, int64_t inner, const void* src, const int64_t* idx, int64_t m, void* out) {
  if (outer * m * inner == 0) return;
  gather_k<T><<<grid(outer * m * inner), kThreads>>>(outer, n, inner, static_cast<const T*>(src), idx, m, static_cast<T*>(out));
  check_launch("gather");
}
template <class T>
void scatter_add_kernel(int64_t outer, int64_t n, int64_t inner, void* dst, const int64_t* idx, int64_t m, const void* src) {
  if (outer * inner == 0 || m == 0) return;
  scatter_add_k<T><<<grid(outer * inner), kThreads>>>(outer, n, inner, static_cast<T*>(dst), idx, m, static_cast<const T*>(src));
  check_launch("scatter_add");
}

}  // namespace

#define VGG_REG_CUDA_INDEX(DT, T)                                              \
  VGG_REGISTER_KERNEL(IndexSelectKernel, CUDA, DT, (&index_select_kernel<T>)); \
  VGG_REGISTER_KERNEL(IndexAddKernel, CUDA, DT, (&index_add_kernel<T>));       \
  VGG_REGISTER_KERNEL(GatherKernel, CUDA, DT, (&gather_kernel<T>));            \
  VGG_REGISTER_KERNEL(ScatterAddKernel, CUDA, DT, (&scatter_add_kernel<T>))
VGG_REG_CUDA_INDEX(F32, float);
VGG_REG_CUDA_INDEX(F64, double);
VGG_REG_CUDA_INDEX(BF16, bf16);
VGG_REG_CUDA_INDEX(I32, int32_t);
VGG_REG_CUDA_INDEX(I64, int64_t);

}  // namespace vgg::kernels::cuda
