// Row normalisations over the last n elements of contiguous [rows, n] data.
// layer_norm: y = (x - mean) * rstd * w + b  (w, b may be null)
// rms_norm:   y = x * rsqrt(mean(x^2) + eps) * w  (w may be null)
// layer_norm_modulate: the MMDiT's adaLN, below; gated_residual: its residual update (not a
// normalisation, but its partner in every block)
#pragma once
#include <cstdint>
#include "tensor/dispatch.h"

namespace vgg::kernels {

using LayerNormFn = void (*)(int64_t rows, int64_t n, const void* x, const void* w, const void* b, double eps,
                             void* y);
VGG_KERNEL_OP(LayerNormKernel, "layer_norm", LayerNormFn);
using RmsNormFn = void (*)(int64_t rows, int64_t n, const void* x, const void* w, double eps, void* y);
VGG_KERNEL_OP(RmsNormKernel, "rms_norm", RmsNormFn);
// adaLN, fused: y[b, t, :] = layer_norm(x[b, t, :]) · (1 + scale[b, :]) + shift[b, :] over contiguous
// x [batch, tokens, n] with scale, shift [batch, n] (no affine weights), one pass over x.
using LayerNormModulateFn = void (*)(int64_t batch, int64_t tokens, int64_t n, const void* x, const void* scale,
                                     const void* shift, double eps, void* y);
VGG_KERNEL_OP(LayerNormModulateKernel, "layer_norm_modulate", LayerNormModulateFn);
// The MMDiT's gated residual, fused: out[b, t, :] = x[b, t, :] + gate[b, :]·y[b, t, :] over contiguous
// x, y [batch, tokens, n] and gate [batch, n], computed in the compute type and rounded once.
using GatedResidualFn = void (*)(int64_t batch, int64_t tokens, int64_t n, const void* x, const void* gate,
                                 const void* y, void* out);
VGG_KERNEL_OP(GatedResidualKernel, "gated_residual", GatedResidualFn);

// Fused backwards (GPU; the CPU composes them from differentiable ops). Sums over the tokens are
// deterministic (fixed chunks, combined in order). Null outputs are not computed.
// layer_norm_modulate: gx [batch, tokens, n] = rstd·(gm − mean(gm) − x̂·mean(gm·x̂)), gm = gy·(1 + scale),
// gscale [batch, n] = Σ_t gy·x̂, gshift [batch, n] = Σ_t gy (gscale and gshift together or neither).
constexpr int64_t kLayerNormModulateBwdMaxWidth = 12288;
using LayerNormModulateBwdFn = void (*)(int64_t batch, int64_t tokens, int64_t n, const void* x, const void* scale,
                                        const void* gy, double eps, void* gx, void* gscale, void* gshift);
VGG_KERNEL_OP(LayerNormModulateBwdKernel, "layer_norm_modulate_bwd", LayerNormModulateBwdFn);
// gated_residual: gy [batch, tokens, n] = g·gate, ggate [batch, n] = Σ_t g·y.
using GatedResidualBwdFn = void (*)(int64_t batch, int64_t tokens, int64_t n, const void* g, const void* gate,
                                    const void* y, void* gy, void* ggate);
VGG_KERNEL_OP(GatedResidualBwdKernel, "gated_residual_bwd", GatedResidualBwdFn);

}  // namespace vgg::kernels
