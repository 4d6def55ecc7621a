// Batched GEMM: C[b] = alpha·op(A[b])·op(B[b]) + beta·C[b] for b < batch, with uniform batch
// strides (stride 0 broadcasts). Row-major matrices with leading dimensions lda/ldb/ldc; trans
// flags mean the stored matrix is the transpose. bf16 computes in f32 (C read, scaled and added
// in f32, rounded once). beta = 0 never reads C (it may hold NaN).
#pragma once
#include <cstdint>
#include <string>
#include "tensor/dispatch.h"

namespace vgg::kernels {

struct GemmArgs {
  int64_t batch = 1, m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  double alpha = 1, beta = 0;
  // optional [n] vector of the GEMM's dtype added to every row of every C (after alpha·AB + beta·C;
  // bf16: in f32, one rounding): the bias of a linear layer, fused (cuBLASLt's bias epilogue)
  const void* bias = nullptr;
};
using GemmFn = void (*)(const GemmArgs& g, const void* a, const void* b, void* c);
VGG_KERNEL_OP(GemmKernel, "gemm", GemmFn);

// The CPU GEMM's kernel set: empty when it suits the CPU, else one line saying how to fix it.
// OpenBLAS picks its kernels from the CPU's model number and falls back to its SSE3 "Prescott" ones
// on a model it does not know (some virtual machines), 2-3x slower than the AVX2/AVX-512 kernels the
// CPU runs; OPENBLAS_CORETYPE, read when the library loads, names them (tools/lib/common.sh sets it).
std::string cpu_gemm_advice();

}  // namespace vgg::kernels
