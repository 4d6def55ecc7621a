// Softmax / log-softmax over the middle axis of a contiguous [outer, n, inner] block.
#pragma once
#include <cstdint>
#include "tensor/dispatch.h"

namespace vgg::kernels {

using SoftmaxFn = void (*)(bool log, int64_t outer, int64_t n, int64_t inner, const void* x, void* y);
VGG_KERNEL_OP(SoftmaxKernel, "softmax", SoftmaxFn);

}  // namespace vgg::kernels
