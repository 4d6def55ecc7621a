// Shared by the CUDA kernel files: the bf16 type, the compute type of a storage type (f32 for f32
// and bf16, f64 for f64 and the integers, as on the CPU), loads that widen and stores that round
// to nearest even, and the launch check that turns a CUDA error into a vgg::Error naming the kernel.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "tensor/error.h"

namespace vgg::kernels::cuda {

using bf16 = __nv_bfloat16;

inline void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) VGG_FAIL("CUDA kernel ", what, " failed: ", cudaGetErrorString(e));
}

template <class T>
using Cmp = std::conditional_t<std::is_same_v<T, float> || std::is_same_v<T, bf16>, float, double>;

// value -> compute type
template <class T>
__device__ __forceinline__ Cmp<T> ldv(T v) {
  if constexpr (std::is_same_v<T, bf16>)
    return __bfloat162float(v);
  else
    return static_cast<Cmp<T>>(v);
}
template <class T>
__device__ __forceinline__ Cmp<T> ld(const T* p) {
  return ldv(*p);
}
// compute value -> storage type (bf16: round to nearest even; bool: nonzero)
template <class T, class V>
__device__ __forceinline__ T st(V v) {
  if constexpr (std::is_same_v<T, bf16>)
    return __float2bfloat16_rn(static_cast<float>(v));
  else if constexpr (std::is_same_v<T, bool>)
    return v != V(0);
  else
    return static_cast<T>(v);
}

}  // namespace vgg::kernels::cuda
