// CPU layer_norm and rms_norm forward over contiguous rows (two-pass statistics in the
// compute type; f32 inputs accumulate in double for the mean and variance).
#include <cmath>

#include "kernels/cpu/loops.h"
#include "kernels/norm.h"
#include "tensor/dispatch.h"
#include "tensor/dtype.h"

namespace vgg::kernels::cpu {
namespace {

template <typename T>
void layer_norm_kernel(int64_t rows, int64_t n, const void* xp, const void* wp, const void* bp, double eps, void* yp) {
  using V = typename compute_type<T>::type;
  const T* x = static_cast<const T*>(xp);
  const T* w = static_cast<const T*>(wp);
  const T* b = static_cast<const T*>(bp);
  T* y = static_cast<T*>(yp);
  parallel_for(rows, n * 4, [&](int64_t r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += static_cast<double>(load(xr[j]));
    const double mean = s / static_cast<double>(n);
    double ss = 0;
    for (int64_t j = 0; j < n; ++j) {
      double d = static_cast<double>(load(xr[j])) - mean;
      ss += d * d;
    }
    const V rstd = static_cast<V>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
    const V m = static_cast<V>(mean);
    for (int64_t j = 0; j < n; ++j) {
      V v = (static_cast<V>(load(xr[j])) - m) * rstd;
      if (w) v *= static_cast<V>(load(w[j]));
      if (b) v += static_cast<V>(load(b[j]));
      yr[j] = store<T>(v);
    }
  });
}

template <typename T>
void rms_norm_kernel(int64_t rows, int64_t n, const void* xp, const void* wp, double eps, void* yp) {
  using V = typename compute_type<T>::type;
  const T* x = static_cast<const T*>(xp);
  const T* w = static_cast<const T*>(wp);
  T* y = static_cast<T*>(yp);
  parallel_for(rows, n * 3, [&](int64_t r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    double ss = 0;
    for (int64_t j = 0; j < n; ++j) {
      double v = static_cast<double>(load(xr[j]));
      ss += v * v;
    }
    const V rstd = static_cast<V>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
    for (int64_t j = 0; j < n; ++j) {
      V v = static_cast<V>(load(xr[j])) * rstd;
      if (w) v *= static_cast<V>(load(w[j]));
      yr[j] = store<T>(v);
    }
  });
}

}  // namespace

VGG_REGISTER_KERNEL("layer_norm", CPU, F32, (&layer_norm_kernel<float>));
VGG_REGISTER_KERNEL("layer_norm", CPU, F64, (&layer_norm_kernel<double>));
VGG_REGISTER_KERNEL("layer_norm", CPU, BF16, (&layer_norm_kernel<bf16>));
VGG_REGISTER_KERNEL("rms_norm", CPU, F32, (&rms_norm_kernel<float>));
VGG_REGISTER_KERNEL("rms_norm", CPU, F64, (&rms_norm_kernel<double>));
VGG_REGISTER_KERNEL("rms_norm", CPU, BF16, (&rms_norm_kernel<bf16>));

}  // namespace vgg::kernels::cpu
