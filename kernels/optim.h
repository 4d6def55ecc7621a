// Optimizer kernels over many tensors at once (the "multi-tensor" form): AdamW's update and the
// per-tensor sums of squares that gradient clipping needs. nn/optim.h documents the arithmetic;
// both implementations round exactly as its CPU reference does, so an update on the GPU gives the
// same bits as on the CPU for the same gradient, clip factor and state.
//
// The tensor table lives on the host; the pointers in it are of the tensors' device, every tensor
// contiguous, all of one dtype (f32 or f64) and one device. The CUDA version packs up to
// kAdamWTensorsPerLaunch tensors into the arguments of one launch (no table copy, no sync).
#pragma once
#include <cstdint>
#include "tensor/dispatch.h"

namespace vgg::kernels {

struct AdamWTensor {
  void* p;           // parameter, updated in place
  const void* g;     // gradient
  void* m;           // first moment, in place
  void* v;           // second moment, in place
  int64_t n;         // elements
  double neg_step;   // −lr / (1 − β1^step), this tensor's step
  double bc2_sqrt;   // sqrt(1 − β2^step)
};

struct AdamWScalars {
  double decay;      // 1 − lr·weight_decay
  double beta1, beta2, eps;
  double clip;       // gradient factor, used when scale is set
  bool scale;
};

using AdamWMultiFn = void (*)(const AdamWTensor* tensors, int64_t count, const AdamWScalars& s);
VGG_KERNEL_OP(AdamWMultiKernel, "adamw_multi", AdamWMultiFn);
// out[i] = Σ xs[i][k]² in double. The summation order is fixed by the sizes alone (blocks of
// 16384 elements in order), never by the thread count or launch configuration.
using SumSquaresMultiFn = void (*)(const void* const* xs, const int64_t* ns, int64_t count, double* out);
VGG_KERNEL_OP(SumSquaresMultiKernel, "sum_squares_multi", SumSquaresMultiFn);

constexpr int64_t kSumSquaresBlock = 1 << 14;

}  // namespace vgg::kernels
