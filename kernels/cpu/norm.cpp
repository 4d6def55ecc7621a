// CPU layer_norm and rms_norm forward over contiguous rows: two passes (mean, then centred
// sum of squares) in the compute type with vectorised reductions.
#include <cmath>
#include <vector>

#include "kernels/cpu/loops.h"
#include "kernels/norm.h"
#include "tensor/dispatch.h"
#include "tensor/dtype.h"

namespace vgg::kernels::cpu {
namespace {

template <typename V>
void layer_norm_row(int64_t n, const V* x, const V* w, const V* b, double eps, V* y) {
  V s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += x[j];
  const V mean = s / static_cast<V>(n);
  V ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int64_t j = 0; j < n; ++j) ss += (x[j] - mean) * (x[j] - mean);
  const V rstd = static_cast<V>(1.0 / std::sqrt(static_cast<double>(ss) / static_cast<double>(n) + eps));
  if (w && b) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j] = (x[j] - mean) * rstd * w[j] + b[j];
  } else if (w) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j] = (x[j] - mean) * rstd * w[j];
  } else {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j] = (x[j] - mean) * rstd + (b ? b[j] : V(0));
  }
}

template <typename V>
void rms_norm_row(int64_t n, const V* x, const V* w, double eps, V* y) {
  V ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int64_t j = 0; j < n; ++j) ss += x[j] * x[j];
  const V rstd = static_cast<V>(1.0 / std::sqrt(static_cast<double>(ss) / static_cast<double>(n) + eps));
  if (w) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j] = x[j] * rstd * w[j];
  } else {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) y[j] = x[j] * rstd;
  }
}

template <typename T, typename V>
std::vector<V> widen_all(const T* p, int64_t n) {
  std::vector<V> v(p ? n : 0);
  for (int64_t j = 0; p && j < n; ++j) v[j] = static_cast<V>(load(p[j]));
  return v;
}

template <typename T>
void layer_norm_kernel(int64_t rows, int64_t n, const void* xp, const void* wp, const void* bp, double eps, void* yp) {
  using V = typename compute_type<T>::type;
  const T* x = static_cast<const T*>(xp);
  T* y = static_cast<T*>(yp);
  if constexpr (std::is_same_v<T, V>) {
    const V* w = static_cast<const V*>(wp);
    const V* b = static_cast<const V*>(bp);
    parallel_for(rows, n * 4, [&](int64_t r) { layer_norm_row<V>(n, x + r * n, w, b, eps, y + r * n); });
  } else {
    auto w = widen_all<T, V>(static_cast<const T*>(wp), n), b = widen_all<T, V>(static_cast<const T*>(bp), n);
    parallel_for(rows, n * 4, [&](int64_t r) {
      thread_local std::vector<V> buf;
      buf.resize(n);
      for (int64_t j = 0; j < n; ++j) buf[j] = static_cast<V>(load(x[r * n + j]));
      layer_norm_row<V>(n, buf.data(), wp ? w.data() : nullptr, bp ? b.data() : nullptr, eps, buf.data());
      for (int64_t j = 0; j < n; ++j) y[r * n + j] = store<T>(buf[j]);
    });
  }
}

template <typename T>
void rms_norm_kernel(int64_t rows, int64_t n, const void* xp, const void* wp, double eps, void* yp) {
  using V = typename compute_type<T>::type;
  const T* x = static_cast<const T*>(xp);
  T* y = static_cast<T*>(yp);
  if constexpr (std::is_same_v<T, V>) {
    const V* w = static_cast<const V*>(wp);
    parallel_for(rows, n * 3, [&](int64_t r) { rms_norm_row<V>(n, x + r * n, w, eps, y + r * n); });
  } else {
    auto w = widen_all<T, V>(static_cast<const T*>(wp), n);
    parallel_for(rows, n * 3, [&](int64_t r) {
      thread_local std::vector<V> buf;
      buf.resize(n);
      for (int64_t j = 0; j < n; ++j) buf[j] = static_cast<V>(load(x[r * n + j]));
      rms_norm_row<V>(n, buf.data(), wp ? w.data() : nullptr, eps, buf.data());
      for (int64_t j = 0; j < n; ++j) y[r * n + j] = store<T>(buf[j]);
    });
  }
}


// adaLN: per row the layer_norm statistics (as layer_norm_row), then (x − μ)·rstd·(1 + s) + h.
template <typename T>
void layer_norm_modulate_kernel(int64_t batch, int64_t tokens, int64_t n, const void* xp, const void* sp, const void* hp,
                                double eps, void* yp) {
  using V = typename compute_type<T>::type;
  const T* x = static_cast<const T*>(xp);
  const T* sc = static_cast<const T*>(sp);
  const T* sh = static_cast<const T*>(hp);
  T* y = static_cast<T*>(yp);
  parallel_for(batch * tokens, n * 4, [&](int64_t r) {
    const int64_t b = r / tokens;
    const T* xr = x + r * n;
    V s = 0;
    for (int64_t j = 0; j < n; ++j) s += static_cast<V>(load(xr[j]));
    const V mean = s / static_cast<V>(n);
    V ss = 0;
    for (int64_t j = 0; j < n; ++j) {
      const V d = static_cast<V>(load(xr[j])) - mean;
      ss += d * d;
    }
    const V rstd = static_cast<V>(1.0 / std::sqrt(static_cast<double>(ss) / static_cast<double>(n) + eps));
    for (int64_t j = 0; j < n; ++j)
      y[r * n + j] = store<T>((static_cast<V>(load(xr[j])) - mean) * rstd * (V(1) + static_cast<V>(load(sc[b * n + j]))) +
                              static_cast<V>(load(sh[b * n + j])));
  });
}

// x + gate·y, one rounding per element.
template <typename T>
void gated_residual_kernel(int64_t batch, int64_t tokens, int64_t n, const void* xp, const void* gp, const void* yp,
                           void* op) {
  using V = typename compute_type<T>::type;
  const T* x = static_cast<const T*>(xp);
  const T* gate = static_cast<const T*>(gp);
  const T* y = static_cast<const T*>(yp);
  T* out = static_cast<T*>(op);
  parallel_for(batch * tokens, n, [&](int64_t r) {
    const T* gr = gate + (r / tokens) * n;
    for (int64_t j = 0; j < n; ++j)
      out[r * n + j] = store<T>(static_cast<V>(load(x[r * n + j])) +
                                static_cast<V>(load(gr[j])) * static_cast<V>(load(y[r * n + j])));
  });
}

}  // namespace

VGG_REGISTER_KERNEL(GatedResidualKernel, CPU, F32, (&gated_residual_kernel<float>));
VGG_REGISTER_KERNEL(GatedResidualKernel, CPU, F64, (&gated_residual_kernel<double>));
VGG_REGISTER_KERNEL(GatedResidualKernel, CPU, BF16, (&gated_residual_kernel<bf16>));
VGG_REGISTER_KERNEL(LayerNormModulateKernel, CPU, F32, (&layer_norm_modulate_kernel<float>));
VGG_REGISTER_KERNEL(LayerNormModulateKernel, CPU, F64, (&layer_norm_modulate_kernel<double>));
VGG_REGISTER_KERNEL(LayerNormModulateKernel, CPU, BF16, (&layer_norm_modulate_kernel<bf16>));
VGG_REGISTER_KERNEL(LayerNormKernel, CPU, F32, (&layer_norm_kernel<float>));
VGG_REGISTER_KERNEL(LayerNormKernel, CPU, F64, (&layer_norm_kernel<double>));
VGG_REGISTER_KERNEL(LayerNormKernel, CPU, BF16, (&layer_norm_kernel<bf16>));
VGG_REGISTER_KERNEL(RmsNormKernel, CPU, F32, (&rms_norm_kernel<float>));
VGG_REGISTER_KERNEL(RmsNormKernel, CPU, F64, (&rms_norm_kernel<double>));
VGG_REGISTER_KERNEL(RmsNormKernel, CPU, BF16, (&rms_norm_kernel<bf16>));

}  // namespace vgg::kernels::cpu
