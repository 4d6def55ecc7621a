// CPU softmax / log-softmax over the middle axis of [outer, n, inner] (max-subtracted).
#include <cmath>
#include <vector>

#include "kernels/cpu/loops.h"
#include "kernels/softmax.h"
#include "tensor/dispatch.h"
#include "tensor/dtype.h"

namespace vgg::kernels::cpu {
namespace {

template <typename T>
void softmax_kernel(bool log, int64_t outer, int64_t n, int64_t inner, const void* xp, void* yp) {
  using V = typename compute_type<T>::type;
  const T* x = static_cast<const T*>(xp);
  T* y = static_cast<T*>(yp);
  if (inner == 1) {
    parallel_for(outer, n * 8, [&](int64_t o) {
      const T* xr = x + o * n;
      T* yr = y + o * n;
      V m = -INFINITY;
      for (int64_t j = 0; j < n; ++j) m = std::max(m, static_cast<V>(load(xr[j])));
      if (std::isinf(m) && m < 0) m = 0;  // all -inf row: avoid NaN from inf - inf
      V s = 0;
      if (log) {
        for (int64_t j = 0; j < n; ++j) s += std::exp(static_cast<V>(load(xr[j])) - m);
        V ls = std::log(s) + m;
        for (int64_t j = 0; j < n; ++j) yr[j] = store<T>(static_cast<V>(load(xr[j])) - ls);
      } else if constexpr (std::is_same_v<T, bf16>) {
        std::vector<float> tmp(n);
        for (int64_t j = 0; j < n; ++j) s += (tmp[j] = std::exp(static_cast<V>(load(xr[j])) - m));
        V inv = V(1) / s;
        for (int64_t j = 0; j < n; ++j) yr[j] = store<T>(tmp[j] * inv);
      } else {
        for (int64_t j = 0; j < n; ++j) {
          V e = std::exp(xr[j] - m);
          yr[j] = e;
          s += e;
        }
        V inv = V(1) / s;
        for (int64_t j = 0; j < n; ++j) yr[j] *= inv;
      }
    });
    return;
  }
  parallel_for(outer * inner, n * 8, [&](int64_t oi) {
    int64_t o = oi / inner, i = oi % inner;
    const T* xr = x + o * n * inner + i;
    T* yr = y + o * n * inner + i;
    V m = -INFINITY;
    for (int64_t j = 0; j < n; ++j) m = std::max(m, static_cast<V>(load(xr[j * inner])));
    if (std::isinf(m) && m < 0) m = 0;
    V s = 0;
    for (int64_t j = 0; j < n; ++j) s += std::exp(static_cast<V>(load(xr[j * inner])) - m);
    if (log) {
      V ls = std::log(s) + m;
      for (int64_t j = 0; j < n; ++j) yr[j * inner] = store<T>(static_cast<V>(load(xr[j * inner])) - ls);
    } else {
      V inv = V(1) / s;
      for (int64_t j = 0; j < n; ++j) yr[j * inner] = store<T>(std::exp(static_cast<V>(load(xr[j * inner])) - m) * inv);
    }
  });
}

}  // namespace

VGG_REGISTER_KERNEL("softmax", CPU, F32, (&softmax_kernel<float>));
VGG_REGISTER_KERNEL("softmax", CPU, F64, (&softmax_kernel<double>));
VGG_REGISTER_KERNEL("softmax", CPU, BF16, (&softmax_kernel<bf16>));

}  // namespace vgg::kernels::cpu
