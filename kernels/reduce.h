// Reductions over the middle axis of a contiguous [outer, r, inner] block.
#pragma once
#include <cstdint>

namespace vgg::kernels {

enum class ReduceOp : uint8_t { Sum, Max, Min, ArgMax, ArgMin };
// out has [outer, inner] elements; dtype of x for Sum/Max/Min (Sum accumulates in double),
// i64 for ArgMax/ArgMin (first index on ties). r must be >= 1 for Max/Min/Arg*.
using ReduceFn = void (*)(ReduceOp op, int64_t outer, int64_t r, int64_t inner, const void* x, void* out);

}  // namespace vgg::kernels
