// CUDA batched GEMM through cuBLASLt (contract in kernels/matmul.h): f32 (full f32, no TF32, so it
// agrees with the CPU), bf16 with f32 accumulation, f64.
//
// Row-major to column-major: cuBLASLt is column-major, and a row-major matrix read column-major is
// its transpose, so C = op(A)·op(B) (row-major) is computed as Cᵀ = op(B)ᵀ·op(A)ᵀ with the operands
// swapped, m and n swapped and the same transpose flags. Batches use strided layouts (a zero stride
// broadcasts one matrix). One handle and one 32 MiB workspace per device, from the caching allocator; one
// plan (descriptors, alignment-aware preference, algorithm) per problem shape, made on first use.
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>
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

// Everything cuBLASLt needs for one problem shape, made once and kept: descriptors, preference
// and the chosen algorithm. Looking up a plan is a hash of the shape (no heuristic query, no
// descriptor creation per call: those cost tens of microseconds of host time each).
struct PlanKey {
  int dtype;
  int64_t batch, m, n, k;
  bool trans_a, trans_b;
  int64_t lda, ldb, ldc, stride_a, stride_b, stride_c;
  uint32_t align_a, align_b, align_c;
  bool bias;
  bool operator==(const PlanKey& o) const {
    return dtype == o.dtype && batch == o.batch && m == o.m && n == o.n && k == o.k && trans_a == o.trans_a &&
           trans_b == o.trans_b && lda == o.lda && ldb == o.ldb && ldc == o.ldc && stride_a == o.stride_a &&
           stride_b == o.stride_b && stride_c == o.stride_c && align_a == o.align_a && align_b == o.align_b &&
           align_c == o.align_c && bias == o.bias;
  }
};
struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    mix(static_cast<uint64_t>(k.dtype));
    for (int64_t v : {k.batch, k.m, k.n, k.k, k.lda, k.ldb, k.ldc, k.stride_a, k.stride_b, k.stride_c})
      mix(static_cast<uint64_t>(v));
    mix((k.trans_a ? 1u : 0u) | (k.trans_b ? 2u : 0u) | (static_cast<uint64_t>(k.align_a) << 2) |
        (static_cast<uint64_t>(k.align_b) << 12) | (static_cast<uint64_t>(k.align_c) << 22) |
        (static_cast<uint64_t>(k.bias) << 32));
    return static_cast<size_t>(h);
  }
};

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  cublasLtMatmulAlgo_t algo{};
  // kept for the process (the runtime may be gone at exit): no destructor
};

// the largest power of two (at most 256) dividing the address
uint32_t alignment(const void* p) {
  const uintptr_t v = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && v % a != 0) a >>= 1;
  return a;
}

// VGG_GEMM_TUNE=1: on the first call of a shape, time cuBLASLt's top candidates and keep the
// fastest (results then depend on timings, so bits may differ between runs; off by default)
bool tune_gemm() {
  static const bool on = [] {
    const char* e = std::getenv("VGG_GEMM_TUNE");
    return e != nullptr && std::strcmp(e, "1") == 0;
  }();
  return on;
}

struct DeviceLt {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = size_t{32} << 20;
  std::mutex mu;
  std::unordered_map<PlanKey, std::unique_ptr<Plan>, PlanKeyHash> plans;

  template <class Make>
  const Plan& plan(const PlanKey& key, Make&& make) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = plans.find(key);
    if (it != plans.end()) return *it->second;
    auto p = std::make_unique<Plan>();
    make(*p);
    return *plans.emplace(key, std::move(p)).first->second;
  }
};

// Per device, created on first use and kept for the process (the runtime may be gone at exit).
DeviceLt& lt_for_current_device() {
  static std::mutex mu;
  static auto* table = new std::vector<std::unique_ptr<DeviceLt>>();
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) VGG_FAIL("cuBLASLt: cudaGetDevice failed");
  std::lock_guard<std::mutex> lock(mu);
  if (table->size() <= static_cast<size_t>(dev)) table->resize(static_cast<size_t>(dev) + 1);
  auto& d = (*table)[static_cast<size_t>(dev)];
  if (!d) d = std::make_unique<DeviceLt>();
  if (!d->handle) {
    check(cublasLtCreate(&d->handle), "cublasLtCreate");
    d->workspace = allocator_for(Device::cuda(dev))->allocate(d->workspace_bytes);
  }
  return *d;
}

void set_batch(cublasLtMatrixLayout_t l, int64_t batch, int64_t stride) {
  const int32_t count = static_cast<int32_t>(batch);
  check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count), "layout batch");
  check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride),
        "layout stride");
}

// VGG_GEMM_TUNE: the fastest of cuBLASLt's candidates for this problem, each timed (best of 3)
// into a scratch output so the real C (which beta may read) is untouched
template <class T>
cublasLtMatmulAlgo_t fastest(DeviceLt& lt, const Plan& d, const cublasLtMatmulHeuristicResult_t* heur, int found,
                             const GemmArgs& g, const void* a, const void* b) {
  int dev = 0;
  cudaGetDevice(&dev);
  Allocator* al = allocator_for(Device::cuda(dev));
  const size_t bytes = static_cast<size_t>((g.batch - 1) * g.stride_c + (g.m - 1) * g.ldc + g.n) * sizeof(T);
  void* scratch = al->allocate(bytes);
  const float one_f = 1, zero_f = 0;
  const double one_d = 1, zero_d = 0;
  const void* one = std::is_same_v<T, double> ? static_cast<const void*>(&one_d) : &one_f;
  const void* zero = std::is_same_v<T, double> ? static_cast<const void*>(&zero_d) : &zero_f;
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  int best = 0;
  float best_ms = 1e30f;
  for (int i = 0; i < found; ++i) {
    for (int rep = 0; rep < 3; ++rep) {
      cudaEventRecord(e0, 0);
      const cublasStatus_t st = cublasLtMatmul(lt.handle, d.op, one, b, d.a, a, d.b, zero, scratch, d.c, scratch, d.c,
                                               &heur[i].algo, lt.workspace, lt.workspace_bytes, 0);
      cudaEventRecord(e1, 0);
      cudaEventSynchronize(e1);
      float ms = 0;
      if (st != CUBLAS_STATUS_SUCCESS || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) break;
      if (ms < best_ms) best_ms = ms, best = i;
    }
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  al->deallocate(scratch, bytes);
  return heur[best].algo;
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
  VGG_CHECK(g.k > 0 || g.bias == nullptr, "gemm (CUDA): k = 0 with a bias is not supported");
  if (g.k == 0) {  // C = 0: no GEMM to run
    const size_t row = static_cast<size_t>(g.n) * sizeof(T);
    for (int64_t i = 0; i < g.batch; ++i)
      if (cudaMemset2DAsync(static_cast<char*>(c) + i * g.stride_c * sizeof(T), static_cast<size_t>(g.ldc) * sizeof(T), 0,
                            row, static_cast<size_t>(g.m), 0) != cudaSuccess)
        VGG_FAIL("gemm (CUDA): cudaMemset2DAsync failed");
    return;
  }
  DeviceLt& lt = lt_for_current_device();
  const PlanKey key{static_cast<int>(sizeof(T)) * 16 + (std::is_same_v<T, __nv_bfloat16> ? 1 : 0),
                    g.batch, g.m, g.n, g.k, g.trans_a, g.trans_b, g.lda, g.ldb, g.ldc,
                    g.stride_a, g.stride_b, g.stride_c, alignment(a), alignment(b), alignment(c), g.bias != nullptr};
  const Plan& plan = lt.plan(key, [&](Plan& d) {
    check(cublasLtMatmulDescCreate(&d.op, ct, scale), "matmul desc");
    // the swapped problem: first operand = B, second = A, flags as given
    const cublasOperation_t op_first = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, op_second = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    check(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_first, sizeof op_first), "transa");
    check(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_second, sizeof op_second), "transb");
    if (key.bias) {  // the bias runs along the rows of the swapped problem's column-major C (n of them)
      const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
      check(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi), "epilogue");
      const void* any = g.bias;  // a placeholder for the heuristic; each call sets its own
      check(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &any, sizeof any), "bias pointer");
    }
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
    // the operands' real alignment (the default preference assumes 256 bytes), as the first
    // operand of the swapped problem is B
    const uint32_t al_first = key.align_b, al_second = key.align_a, al_c = key.align_c;
    check(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_first, sizeof al_first), "align A");
    check(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_second, sizeof al_second), "align B");
    check(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c), "align C");
    check(cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c), "align D");
    constexpr int kCandidates = 8;
    cublasLtMatmulHeuristicResult_t heur[kCandidates] = {};
    int found = 0;
    check(cublasLtMatmulAlgoGetHeuristic(lt.handle, d.op, d.a, d.b, d.c, d.c, d.pref, tune_gemm() ? kCandidates : 1, heur,
                                         &found),
          "heuristic");
    VGG_CHECK(found > 0, "gemm (CUDA): cuBLASLt has no algorithm for m=", g.m, " n=", g.n, " k=", g.k, " batch=", g.batch);
    d.algo = heur[0].algo;
    if (found > 1) d.algo = fastest<T>(lt, d, heur, found, g, a, b);
  });
  const float alpha_f = static_cast<float>(g.alpha), beta_f = static_cast<float>(g.beta);
  const double alpha_d = g.alpha, beta_d = g.beta;
  const void* alpha = std::is_same_v<T, double> ? static_cast<const void*>(&alpha_d) : &alpha_f;
  const void* beta = std::is_same_v<T, double> ? static_cast<const void*>(&beta_d) : &beta_f;
  std::unique_lock<std::mutex> lock(lt.mu, std::defer_lock);
  if (g.bias) {  // the plan's descriptor is shared: its bias pointer is set and used under the lock
    lock.lock();
    check(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof g.bias), "bias pointer");
  }
  check(cublasLtMatmul(lt.handle, plan.op, alpha, b, plan.a, a, plan.b, beta, c, plan.c, c, plan.c, &plan.algo,
                       lt.workspace, lt.workspace_bytes, 0),
        "matmul");
}

}  // namespace

VGG_REGISTER_KERNEL(GemmKernel, CUDA, F32, (&gemm_kernel<float>));
VGG_REGISTER_KERNEL(GemmKernel, CUDA, F64, (&gemm_kernel<double>));
VGG_REGISTER_KERNEL(GemmKernel, CUDA, BF16, (&gemm_kernel<__nv_bfloat16>));

}  // namespace vgg::kernels::cuda
