// CPU optimizer kernels (contracts in kernels/optim.h). Each element sees exactly torch's sequence
// of roundings: the moment updates use explicit fused multiply-adds where torch's CPU kernels do
// (its vectorised add_/addcmul_), and the compiler may fuse nothing else (contraction is off for
// this file).
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/optim.h"
#include "tensor/dispatch.h"

namespace vgg::kernels::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 15;  // elements below which loops stay single-threaded

// Σ x² in double: fixed blocks, four accumulators each, blocks summed in order.
template <typename T>
double sum_squares(const T* x, int64_t n) {
  auto block = [x](int64_t lo, int64_t hi) {
    double a[4] = {0, 0, 0, 0};
    int64_t i = lo;
    for (; i + 4 <= hi; i += 4)
      for (int k = 0; k < 4; ++k) {
        double v = static_cast<double>(x[i + k]);
        a[k] += v * v;
      }
    for (; i < hi; ++i) a[0] += static_cast<double>(x[i]) * static_cast<double>(x[i]);
    return (a[0] + a[1]) + (a[2] + a[3]);
  };
  const int64_t nb = (n + kSumSquaresBlock - 1) / kSumSquaresBlock;
  if (nb <= 1) return block(0, n);
  std::vector<double> part(static_cast<size_t>(nb));
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t b = 0; b < nb; ++b) part[b] = block(b * kSumSquaresBlock, std::min(n, (b + 1) * kSumSquaresBlock));
  double s = 0;
  for (double p : part) s += p;
  return s;
}

template <typename T>
void sum_squares_multi(const void* const* xs, const int64_t* ns, int64_t count, double* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = sum_squares(static_cast<const T*>(xs[i]), ns[i]);
}

template <typename T>
void adamw_one(const AdamWTensor& t, const AdamWScalars& s) {
  T* p = static_cast<T*>(t.p);
  const T* g = static_cast<const T*>(t.g);
  T* m = static_cast<T*>(t.m);
  T* v = static_cast<T*>(t.v);
  const T decay = static_cast<T>(s.decay);
  const T b1 = static_cast<T>(s.beta1), a1 = static_cast<T>(1.0 - s.beta1);
  const T b2 = static_cast<T>(s.beta2), a2 = static_cast<T>(1.0 - s.beta2);
  const T bc2_sqrt = static_cast<T>(t.bc2_sqrt), eps = static_cast<T>(s.eps);
  const T neg_step = static_cast<T>(t.neg_step);
  const T clip = static_cast<T>(s.clip);
  const bool scale = s.scale;
  const int64_t n = t.n;
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = scale ? g[i] * clip : g[i];
    const T pi = p[i] * decay;
    const T mi = std::fma(a1, gi, m[i] * b1);       // torch's add_(g, alpha) is a fused multiply-add
    const T vi = std::fma(a2 * gi, gi, v[i] * b2);  // and so is addcmul_ (value·g)·g + v
    m[i] = mi;
    v[i] = vi;
    const T denom = std::sqrt(vi) / bc2_sqrt + eps;
    p[i] = pi + (neg_step * mi) / denom;
  }
}

template <typename T>
void adamw_multi(const AdamWTensor* tensors, int64_t count, const AdamWScalars& s) {
  for (int64_t i = 0; i < count; ++i) adamw_one<T>(tensors[i], s);
}

}  // namespace

VGG_REGISTER_KERNEL(AdamWMultiKernel, CPU, F32, (&adamw_multi<float>));
VGG_REGISTER_KERNEL(AdamWMultiKernel, CPU, F64, (&adamw_multi<double>));
VGG_REGISTER_KERNEL(SumSquaresMultiKernel, CPU, F32, (&sum_squares_multi<float>));
VGG_REGISTER_KERNEL(SumSquaresMultiKernel, CPU, F64, (&sum_squares_multi<double>));

}  // namespace vgg::kernels::cpu
