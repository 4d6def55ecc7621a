// Tiled online-softmax attention (flash-attention algorithm) on contiguous
// q [bh, sq, d], k [bh, sk, d], v [bh, sk, dv]; O(S) extra memory.
// Forward writes o [bh, sq, dv] and lse [bh, sq] (log-sum-exp of the scaled scores, in the
// compute type: f64 for f64 inputs, f32 otherwise). Backward recomputes P from lse.
#pragma once
#include <cstdint>
#include "tensor/dispatch.h"

namespace vgg::kernels {

struct AttnArgs {
  int64_t bh, sq, sk, d, dv;
  double scale;
};
using AttnFwdFn = void (*)(const AttnArgs& a, const void* q, const void* k, const void* v, void* o, void* lse);
VGG_KERNEL_OP(AttnFwdKernel, "attention_fwd", AttnFwdFn);
// dq, dk, dv are overwritten.
using AttnBwdFn = void (*)(const AttnArgs& a, const void* q, const void* k, const void* v, const void* o,
                           const void* lse, const void* dout, void* dq, void* dk, void* dv);
VGG_KERNEL_OP(AttnBwdKernel, "attention_bwd", AttnBwdFn);

}  // namespace vgg::kernels
