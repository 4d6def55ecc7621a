// The iteration plan of the CUDA elementwise kernels (elementwise.cu): several operands of one
// shape, each with its own strides, walked in row-major order of that shape.
//
// The host side simplifies the layouts before a launch, so most kernels see one to three dims:
//   * dims of size 1 go away, and neighbouring dims merge when every operand steps through them
//     as through one dim (stride[outer] == stride[inner] * shape[inner] for all operands);
//   * when the innermost dim is contiguous (stride 1) or broadcast (stride 0) in every operand and
//     its length is a multiple of the vector width W, the kernels move W elements (16 bytes of the
//     widest operand) per access: a contiguous operand is one 16-byte load or store, a broadcast
//     operand one scalar load repeated W times. The plan is then written in units of vectors.
// Index arithmetic is 32-bit with multiply-shift division (no 64-bit divide per element); plans
// for tensors of 2^31 elements or more fall back to 64-bit division.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/layout.h"

namespace vgg::kernels::cuda {

// n / d and n % d for 0 <= n < 2^31, 1 <= d < 2^31, by one high multiply, an add and a shift
// (Granlund and Montgomery, "Division by invariant integers using multiplication").
struct FastDiv {
  uint32_t d = 1, m = 1, s = 0;
  FastDiv() = default;
  explicit FastDiv(uint32_t divisor) : d(divisor) {
    while ((uint64_t{1} << s) < d) ++s;
    m = static_cast<uint32_t>(((uint64_t{1} << 32) * ((uint64_t{1} << s) - d)) / d + 1);
  }
  __device__ __forceinline__ uint32_t div(uint32_t n) const { return (__umulhi(n, m) + n) >> s; }
};

constexpr int kMaxOperands = 4;  // the output and up to three inputs

// Dims are stored innermost first: dim 0 is the fastest-varying.
struct IterPlan {
  int ndim = 0;
  int nops = 0;
  int64_t numel = 0;  // in units of the plan (vectors when vectorised)
  FastDiv size[kMaxDims];
  int64_t shape[kMaxDims] = {};
  int64_t stride[kMaxOperands][kMaxDims] = {};
  bool bcast_inner[kMaxOperands] = {};  // vectorised plans: this operand's innermost stride is 0
};

// Element offsets of linear index i (in plan units) for the first N operands.
template <int N>
__device__ __forceinline__ void plan_offsets(const IterPlan& p, uint32_t i, int64_t (&off)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
#pragma unroll
  for (int d = 0; d < kMaxDims; ++d) {
    if (d == p.ndim) break;
    const uint32_t q = p.size[d].div(i);
    const int64_t c = static_cast<int64_t>(i - q * p.size[d].d);
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += c * p.stride[k][d];
    i = q;
  }
}

template <int N>
__device__ __forceinline__ void plan_offsets64(const IterPlan& p, int64_t i, int64_t (&off)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
  for (int d = 0; d < p.ndim; ++d) {
    const int64_t s = p.shape[d];
    const int64_t c = i % s;
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += c * p.stride[k][d];
    i /= s;
  }
}

// Builds the plan of n layouts sharing one shape (operand 0 first). elem_bytes[k] is operand k's
// element size, ptrs[k] its base pointer (for alignment). When vectorise is true and the layouts
// allow it, the plan is in units of vectors of w elements (w = 16 / the widest element size), and
// *vec_width is set to w; else *vec_width is 1.
IterPlan make_plan(int n, const Layout* const* layouts, const int* elem_bytes, const void* const* ptrs, bool vectorise,
                   int* vec_width);

// true when the plan's numel fits the 32-bit index path
inline bool plan_is_32bit(const IterPlan& p) {
  if (p.numel >= (int64_t{1} << 31)) return false;
  for (int d = 0; d < p.ndim; ++d)
    if (p.shape[d] >= (int64_t{1} << 31)) return false;
  return true;
}

// grid size for n work items of `per_block` items per block, at most `cap` blocks (grid-stride
// loops pick up the rest)
inline unsigned grid_for(int64_t n, int64_t per_block, int64_t cap = int64_t{1} << 20) {
  int64_t b = (n + per_block - 1) / per_block;
  if (b < 1) b = 1;
  if (b > cap) b = cap;
  return static_cast<unsigned>(b);
}

}  // namespace vgg::kernels::cuda
