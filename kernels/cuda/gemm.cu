// CUDA batched GEMM through cuBLASLt (contract in kernels/matmul.h): f32 (full f32, no TF32, so it
// agrees with the CPU), bf16 with f32 accumulation, f64.
//
// Row-major to column-major: cuBLASLt is column-major, and a row-major matrix read column-major is
// its transpose, so C = op(A)·op(B) (row-major) is computed as Cᵀ = op(B)ᵀ·op(A)ᵀ with the operands
// swapped, m and n swapped and the same transpose flags. Batches use strided layouts (a zero stride
// broadcasts one matrix). One handle and one 32 MiB workspace per device, from the caching allocator.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/matmul.h"
#include "tensor/dispatch.h"
#include "tensor/error.h"
#include "tensor/storage.h"

namespace vgg::kernels::cuda {
namespace {

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) VGG_FAIL("cuBLASLt ", what, " failed with status ", static_cast<int>(s));
}

struct DeviceLt {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = size_t{32} << 20;
};

// Per device, created on first use and kept for the process (the runtime may be gone at exit).
DeviceLt& lt_for_current_device() {
  static std::mutex mu;
  static auto* table = new std::vector<DeviceLt>();
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) VGG_FAIL("cuBLASLt: cudaGetDevice failed");
  std::lock_guard<std::mutex> lock(mu);
  if (table->size() <= static_cast<size_t>(dev)) table->resize(static_cast<size_t>(dev) + 1);
  DeviceLt& d = (*table)[static_cast<size_t>(dev)];
  if (!d.handle) {
    check(cublasLtCreate(&d.handle), "cublasLtCreate");
    d.workspace = allocator_for(Device::cuda(dev))->allocate(d.workspace_bytes);
  }
  return d;
}

// RAII for the descriptors of one call.
struct Descs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~Descs() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

void set_batch(cublasLtMatrixLayout_t l, int64_t batch, int64_t stride) {
  const int32_t count = static_cast<int32_t>(batch);
  check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count), "layout batch");
  check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride),
        "layout stride");
}

template <class T>
void gemm_kernel(const GemmArgs& g, const void* a, const void* b, void* c) {
  if (g.batch == 0 || g.m == 0 || g.n == 0) return;
  VGG_CHECK(g.batch <= INT32_MAX, "gemm (CUDA): batch ", g.batch, " is too large");
  cudaDataType_t dt;
  cublasComputeType_t ct;
  cudaDataType_t scale;
  if constexpr (std::is_same_v<T, float>)
    dt = CUDA_R_32F, ct = CUBLAS_COMPUTE_32F, scale = CUDA_R_32F;
  else if constexpr (std::is_same_v<T, double>)
    dt = CUDA_R_64F, ct = CUBLAS_COMPUTE_64F, scale = CUDA_R_64F;
  else
    dt = CUDA_R_16BF, ct = CUBLAS_COMPUTE_32F, scale = CUDA_R_32F;
  VGG_CHECK(g.k > 0 || g.beta == 0, "gemm (CUDA): k = 0 with beta != 0 is not supported");
  if (g.k == 0) {  // C = 0: no GEMM to run
    const size_t row = static_cast<size_t>(g.n) * sizeof(T);
    for (int64_t i = 0; i < g.batch; ++i)
      if (cudaMemset2DAsync(static_cast<char*>(c) + i * g.stride_c * sizeof(T), static_cast<size_t>(g.ldc) * sizeof(T), 0,
                            row, static_cast<size_t>(g.m), 0) != cudaSuccess)
        VGG_FAIL("gemm (CUDA): cudaMemset2DAsync failed");
    return;
  }
  DeviceLt& lt = lt_for_current_device();
  Descs d;
  check(cublasLtMatmulDescCreate(&d.op, ct, scale), "matmul desc");
  // the swapped problem: first operand = B, second = A, flags as given
  const cublasOperation_t op_first = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, op_second = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  check(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first), "transa");
  check(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second), "transb");
  // stored shapes, column-major: B is (trans_b ? k x n : n x k), A is (trans_a ? m x k : k x m), C is n x m
  check(cublasLtMatrixLayoutCreate(&d.a, dt, g.trans_b ? g.k : g.n, g.trans_b ? g.n : g.k, g.ldb), "layout B");
  check(cublasLtMatrixLayoutCreate(&d.b, dt, g.trans_a ? g.m : g.k, g.trans_a ? g.k : g.m, g.lda), "layout A");
  check(cublasLtMatrixLayoutCreate(&d.c, dt, g.n, g.m, g.ldc), "layout C");
  if (g.batch > 1) {
    set_batch(d.a, g.batch, g.stride_b);
    set_batch(d.b, g.batch, g.stride_a);
    set_batch(d.c, g.batch, g.stride_c);
  }
  check(cublasLtMatmulPreferenceCreate(&d.pref), "preference");
  check(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &lt.workspace_bytes,
                                             sizeof lt.workspace_bytes),
        "workspace preference");
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  check(cublasLtMatmulAlgoGetHeuristic(lt.handle, d.op, d.a, d.b, d.c, d.c, d.pref, 1, &heur, &found), "heuristic");
  VGG_CHECK(found > 0, "gemm (CUDA): cuBLASLt has no algorithm for m=", g.m, " n=", g.n, " k=", g.k, " batch=", g.batch);
  const float alpha_f = static_cast<float>(g.alpha), beta_f = static_cast<float>(g.beta);
  const double alpha_d = g.alpha, beta_d = g.beta;
  const void* alpha = std::is_same_v<T, double> ? static_cast<const void*>(&alpha_d) : &alpha_f;
  const void* beta = std::is_same_v<T, double> ? static_cast<const void*>(&beta_d) : &beta_f;
  check(cublasLtMatmul(lt.handle, d.op, alpha, b, d.a, a, d.b, beta, c, d.c, c, d.c, &heur.algo, lt.workspace,
                       lt.workspace_bytes, 0),
        "matmul");
}

}  // namespace

VGG_REGISTER_KERNEL(GemmKernel, CUDA, F32, (&gemm_kernel<float>));
VGG_REGISTER_KERNEL(GemmKernel, CUDA, F64, (&gemm_kernel<double>));
VGG_REGISTER_KERNEL(GemmKernel, CUDA, BF16, (&gemm_kernel<__nv_bfloat16>));

}  // namespace vgg::kernels::cuda
