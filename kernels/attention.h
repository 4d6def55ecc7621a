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

namespace vgg::kernels {

// Fused JVP of attention (forward mode in one pass over the key tiles, O(S) extra memory). With
// S = scale·QKᵀ, tS = scale·(tQ·Kᵀ + Q·tKᵀ), P = softmax(S) and μ = rowsum(P∘tS):
//   O = P·V,   tO = P·tV + (P∘tS)·V − μ∘O
// carried online with the running max, the normaliser, μ and two output accumulators. tq, tk, tv
// may be null (a zero tangent). Writes o, to [bh, sq, dv] and lse, mu [bh, sq] (compute type).
using AttnJvpFn = void (*)(const AttnArgs& a, const void* q, const void* k, const void* v, const void* tq,
                           const void* tk, const void* tv, void* o, void* to, void* lse, void* mu);
VGG_KERNEL_OP(AttnJvpKernel, "attention_jvp", AttnJvpFn);

// The adjoint of the fused JVP: for L = <dO, O> + <dtO, tO>, the gradients with respect to q, k, v
// and the tangents, recomputing P and tS per tile from the saved lse (no S x S storage):
//   Dt = rowsum(dtO∘O),  D = rowsum(dO∘O) + rowsum(dtO∘tO) − μ∘Dt,  G = dtO·Vᵀ
//   dP = dO·Vᵀ + dtO·tVᵀ + (tS − μ)∘G − tS∘Dt,  dS = P∘(dP − D),  dtS = P∘(G − Dt)
//   dV = Pᵀ·dO + (P∘(tS − μ))ᵀ·dtO,  dtV = Pᵀ·dtO
//   dQ = scale·(dS·K + dtS·tK),  dK = scale·(dSᵀ·Q + dtSᵀ·tQ),  dtQ = scale·dtS·K,  dtK = scale·dtSᵀ·Q
// Inputs that are null are zero (tangents, dout, dtout); outputs that are null are not computed;
// the others are overwritten. One task per batch·head owns its dK, dV, dtK, dtV: deterministic.
struct AttnJvpGrads {
  const void *q, *k, *v, *tq, *tk, *tv;  // the forward's inputs
  const void *o, *to, *lse, *mu;         // its outputs
  const void *dout, *dtout;              // upstream gradients of o and to
  void *dq, *dk, *dv, *dtq, *dtk, *dtv;  // results
};
using AttnJvpBwdFn = void (*)(const AttnArgs& a, const AttnJvpGrads& g);
VGG_KERNEL_OP(AttnJvpBwdKernel, "attention_jvp_bwd", AttnJvpBwdFn);

}  // namespace vgg::kernels
