// CPU softmax / log-softmax over the middle axis of [outer, n, inner] (max-subtracted).
// f32 rows use the vectorisable exp_f32; f64 uses std::exp (the reference path).
#include <cmath>
#include <vector>

#include "kernels/cpu/loops.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/softmax.h"
#include "tensor/dispatch.h"
#include "tensor/dtype.h"

namespace vgg::kernels::cpu {
namespace {

// One contiguous row in the compute type; y may alias x.
template <typename V>
void softmax_row(bool log, int64_t n, const V* x, V* y) {
  V m = -INFINITY;
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < n; ++j) m = x[j] > m ? x[j] : m;
  if (std::isinf(m) && m < 0) m = 0;  // all -inf: avoid inf - inf
  V s = 0;
  if (log) {
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; ++j) s += vexp(x[j] - m);
    const V ls = std::log(s) + m;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j] = x[j] - ls;
    return;
  }
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) {
    V e = vexp(x[j] - m);
    y[j] = e;
    s += e;
  }
  const V inv = V(1) / s;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] *= inv;
}

template <typename T>
void softmax_kernel(bool log, int64_t outer, int64_t n, int64_t inner, const void* xp, void* yp) {
  using V = typename compute_type<T>::type;
  const T* x = static_cast<const T*>(xp);
  T* y = static_cast<T*>(yp);
  constexpr bool direct = std::is_same_v<T, V>;
  if (inner == 1) {
    parallel_for(outer, n * 8, [&](int64_t o) {
      if constexpr (direct) {
        softmax_row<V>(log, n, x + o * n, y + o * n);
      } else {
        thread_local std::vector<V> buf;
        buf.resize(n);
        for (int64_t j = 0; j < n; ++j) buf[j] = static_cast<V>(load(x[o * n + j]));
        softmax_row<V>(log, n, buf.data(), buf.data());
        for (int64_t j = 0; j < n; ++j) y[o * n + j] = store<T>(buf[j]);
      }
    });
    return;
  }
  // strided rows: gather each into a buffer
  parallel_for(outer * inner, n * 8, [&](int64_t oi) {
    const int64_t o = oi / inner, i = oi % inner;
    thread_local std::vector<V> buf;
    buf.resize(n);
    for (int64_t j = 0; j < n; ++j) buf[j] = static_cast<V>(load(x[(o * n + j) * inner + i]));
    softmax_row<V>(log, n, buf.data(), buf.data());
    for (int64_t j = 0; j < n; ++j) y[(o * n + j) * inner + i] = store<T>(buf[j]);
  });
}

}  // namespace

VGG_REGISTER_KERNEL(SoftmaxKernel, CPU, F32, (&softmax_kernel<float>));
VGG_REGISTER_KERNEL(SoftmaxKernel, CPU, F64, (&softmax_kernel<double>));
VGG_REGISTER_KERNEL(SoftmaxKernel, CPU, BF16, (&softmax_kernel<bf16>));

}  // namespace vgg::kernels::cpu
