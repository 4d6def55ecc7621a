// The flash-attention kernels (flash.cu), called by the attention entry points of
// attention.cu before they fall back to the straightforward kernels.
#pragma once
#include "kernels/attention.h"

namespace vgg::kernels::cuda {

// Runs the bf16 tensor-core forward and returns true when it applies: head size 64 or 128 with
// dv == d, sk > 0, 16-byte-aligned operands, and not disabled by VGG_CUDA_FLASH=0 in the
// environment (read once). Returns false, having done nothing, otherwise.
bool flash_fwd_bf16(const AttnArgs& a, const void* q, const void* k, const void* v, void* o, void* lse);
// The backward under the same conditions, given the forward's lse and D = rowsum(dO∘O) (f32,
// [bh·sq]); deterministic (no atomics). Returns false, having done nothing, when it does not apply.
bool flash_bwd_bf16(const AttnArgs& a, const void* q, const void* k, const void* v, const void* lse, const void* dout,
                    const float* dvec, void* dq, void* dk, void* dv);

}  // namespace vgg::kernels::cuda
