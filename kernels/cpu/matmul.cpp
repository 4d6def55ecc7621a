// CPU GEMM through OpenBLAS (cblas); bf16 converts to f32 around sgemm.
#include <cblas.h>

#include <vector>

#include "kernels/cpu/loops.h"
#include "kernels/matmul.h"
#include "tensor/dispatch.h"
#include "tensor/dtype.h"

namespace vgg::kernels::cpu {
namespace {

void sgemm_one(const GemmArgs& g, const float* a, const float* b, float* c) {
  cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(g.m), static_cast<int>(g.n), static_cast<int>(g.k), static_cast<float>(g.alpha), a,
              static_cast<int>(g.lda), b, static_cast<int>(g.ldb), static_cast<float>(g.beta), c, static_cast<int>(g.ldc));
}
void dgemm_one(const GemmArgs& g, const double* a, const double* b, double* c) {
  cblas_dgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(g.m), static_cast<int>(g.n), static_cast<int>(g.k), g.alpha, a, static_cast<int>(g.lda), b,
              static_cast<int>(g.ldb), g.beta, c, static_cast<int>(g.ldc));
}

template <typename T, typename F>
void batched(const GemmArgs& g, const void* a, const void* b, void* c, F one) {
  const T* A = static_cast<const T*>(a);
  const T* B = static_cast<const T*>(b);
  T* Cm = static_cast<T*>(c);
  if (g.k == 0) {
    for (int64_t bi = 0; bi < g.batch; ++bi)
      for (int64_t i = 0; i < g.m; ++i)
        for (int64_t j = 0; j < g.n; ++j) {
          T& cij = Cm[bi * g.stride_c + i * g.ldc + j];
          cij = g.beta == 0 ? T(0) : static_cast<T>(g.beta) * cij;
        }
  } else {
    for (int64_t bi = 0; bi < g.batch; ++bi) one(g, A + bi * g.stride_a, B + bi * g.stride_b, Cm + bi * g.stride_c);
  }
  if (g.bias) {
    const T* bias = static_cast<const T*>(g.bias);
    for (int64_t bi = 0; bi < g.batch; ++bi)
      for (int64_t i = 0; i < g.m; ++i)
        for (int64_t j = 0; j < g.n; ++j) Cm[bi * g.stride_c + i * g.ldc + j] += bias[j];
  }
}

void gemm_f32(const GemmArgs& g, const void* a, const void* b, void* c) { batched<float>(g, a, b, c, sgemm_one); }
void gemm_f64(const GemmArgs& g, const void* a, const void* b, void* c) { batched<double>(g, a, b, c, dgemm_one); }

// bf16: widen each operand matrix to f32, multiply, round the result to bf16.
void gemm_bf16(const GemmArgs& g, const void* a, const void* b, void* c) {
  const bf16* A = static_cast<const bf16*>(a);
  const bf16* B = static_cast<const bf16*>(b);
  bf16* Cm = static_cast<bf16*>(c);
  int64_t arows = g.trans_a ? g.k : g.m, acols = g.trans_a ? g.m : g.k;
  int64_t brows = g.trans_b ? g.n : g.k, bcols = g.trans_b ? g.k : g.n;
  std::vector<float> fa(arows * acols), fb(brows * bcols), fc(g.m * g.n);
  const bool acc = g.beta != 0;
  GemmArgs h = g;
  h.lda = acols;
  h.ldb = bcols;
  h.ldc = g.n;
  for (int64_t bi = 0; bi < g.batch; ++bi) {
    for (int64_t i = 0; i < arows; ++i)
      for (int64_t j = 0; j < acols; ++j) fa[i * acols + j] = static_cast<float>(A[bi * g.stride_a + i * g.lda + j]);
    for (int64_t i = 0; i < brows; ++i)
      for (int64_t j = 0; j < bcols; ++j) fb[i * bcols + j] = static_cast<float>(B[bi * g.stride_b + i * g.ldb + j]);
    if (acc)
      for (int64_t i = 0; i < g.m; ++i)
        for (int64_t j = 0; j < g.n; ++j) fc[i * g.n + j] = static_cast<float>(Cm[bi * g.stride_c + i * g.ldc + j]);
    if (g.k == 0) {
      for (float& f : fc) f = acc ? static_cast<float>(g.beta) * f : 0.0f;
    } else {
      sgemm_one(h, fa.data(), fb.data(), fc.data());
    }
    if (g.bias)
      for (int64_t i = 0; i < g.m; ++i)
        for (int64_t j = 0; j < g.n; ++j) fc[i * g.n + j] += static_cast<float>(static_cast<const bf16*>(g.bias)[j]);
    for (int64_t i = 0; i < g.m; ++i)
      for (int64_t j = 0; j < g.n; ++j) Cm[bi * g.stride_c + i * g.ldc + j] = bf16(fc[i * g.n + j]);
  }
}

}  // namespace

VGG_REGISTER_KERNEL(GemmKernel, CPU, F32, &gemm_f32);
VGG_REGISTER_KERNEL(GemmKernel, CPU, F64, &gemm_f64);
VGG_REGISTER_KERNEL(GemmKernel, CPU, BF16, &gemm_bf16);

}  // namespace vgg::kernels::cpu

namespace vgg::kernels {

std::string cpu_gemm_advice() {
  const char* core = openblas_get_corename();
  if (core == nullptr || std::string(core) != "Prescott") return "";
#if defined(__x86_64__)
  __builtin_cpu_init();
  const char* fix = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") ? "SkylakeX"
                    : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")      ? "Haswell"
                                                                                          : nullptr;
  if (fix == nullptr) return "";
  return std::string("OpenBLAS did not recognise this CPU and runs its SSE3 kernels; export OPENBLAS_CORETYPE=") + fix +
         " for its AVX kernels (2-3x faster GEMMs)";
#else
  return "";
#endif
}

}  // namespace vgg::kernels
