// Reductions over the middle axis of a contiguous [outer, r, inner] block.
#pragma once
#include <cstdint>
#include "tensor/dispatch.h"

namespace vgg::kernels {

enum class ReduceOp : uint8_t { Sum, Max, Min, ArgMax, ArgMin };
// out has [outer, inner] elements; dtype of x for Sum/Max/Min (Sum accumulates in double),
// i64 for ArgMax/ArgMin (first index on ties). r must be >= 1 for Max/Min/Arg*.
using ReduceFn = void (*)(ReduceOp op, int64_t outer, int64_t r, int64_t inner, const void* x, void* out);
VGG_KERNEL_OP(ReduceKernel, "reduce", ReduceFn);

// bytes a call moves: the input read once and the output written (profile)
inline double kernel_bytes(ReduceKernel, DType t, ReduceOp op, int64_t outer, int64_t r, int64_t inner, const void*, void*) {
  const double out = static_cast<double>(outer * inner) * (op == ReduceOp::ArgMax || op == ReduceOp::ArgMin ? 8.0 : static_cast<double>(itemsize(t)));
  return static_cast<double>(outer) * static_cast<double>(r) * static_cast<double>(inner) * static_cast<double>(itemsize(t)) + out;
}

}  // namespace vgg::kernels
