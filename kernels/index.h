// Indexing kernels on contiguous data viewed as [outer, n, inner]; indices are i64 and
// already validated to lie in [0, n) by the caller.
#pragma once
#include <cstdint>
#include "tensor/dispatch.h"

namespace vgg::kernels {

// out[o, j, i] = src[o, idx[j], i] for j < m
using IndexSelectFn = void (*)(int64_t outer, int64_t n, int64_t inner, const void* src, const int64_t* idx,
                               int64_t m, void* out);
VGG_KERNEL_OP(IndexSelectKernel, "index_select", IndexSelectFn);
// dst[o, idx[j], i] += src[o, j, i] for j < m
using IndexAddFn = void (*)(int64_t outer, int64_t n, int64_t inner, void* dst, const int64_t* idx, int64_t m,
                            const void* src);
VGG_KERNEL_OP(IndexAddKernel, "index_add", IndexAddFn);
// out[o, j, i] = src[o, idx[o, j, i], i] for j < m
using GatherFn = void (*)(int64_t outer, int64_t n, int64_t inner, const void* src, const int64_t* idx, int64_t m,
                          void* out);
VGG_KERNEL_OP(GatherKernel, "gather", GatherFn);
// dst[o, idx[o, j, i], i] += src[o, j, i] for j < m
using ScatterAddFn = void (*)(int64_t outer, int64_t n, int64_t inner, void* dst, const int64_t* idx, int64_t m,
                              const void* src);
VGG_KERNEL_OP(ScatterAddKernel, "scatter_add", ScatterAddFn);

}  // namespace vgg::kernels
