// Indexing kernels on contiguous data viewed as [outer, n, inner]; indices are i64 and
// already validated to lie in [0, n) by the caller.
#pragma once
#include <cstdint>

namespace vgg::kernels {

// out[o, j, i] = src[o, idx[j], i] for j < m
using IndexSelectFn = void (*)(int64_t outer, int64_t n, int64_t inner, const void* src, const int64_t* idx,
                               int64_t m, void* out);
// dst[o, idx[j], i] += src[o, j, i] for j < m
using IndexAddFn = void (*)(int64_t outer, int64_t n, int64_t inner, void* dst, const int64_t* idx, int64_t m,
                            const void* src);
// out[o, j, i] = src[o, idx[o, j, i], i] for j < m
using GatherFn = void (*)(int64_t outer, int64_t n, int64_t inner, const void* src, const int64_t* idx, int64_t m,
                          void* out);
// dst[o, idx[o, j, i], i] += src[o, j, i] for j < m
using ScatterAddFn = void (*)(int64_t outer, int64_t n, int64_t inner, void* dst, const int64_t* idx, int64_t m,
                              const void* src);

}  // namespace vgg::kernels
