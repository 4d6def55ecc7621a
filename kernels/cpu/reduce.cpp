// CPU reductions over the middle axis of [outer, r, inner]. Sums accumulate in double.
#include <cmath>
#include <vector>

#include "kernels/cpu/loops.h"
#include "kernels/reduce.h"
#include "tensor/dispatch.h"
#include "tensor/dtype.h"

namespace vgg::kernels::cpu {
namespace {

template <typename T>
void reduce_kernel(ReduceOp op, int64_t outer, int64_t r, int64_t inner, const void* xp, void* outp) {
  const T* x = static_cast<const T*>(xp);
  using V = double;
  if (op == ReduceOp::Sum) {
    T* out = static_cast<T*>(outp);
    if (inner == 1) {
      parallel_for(outer, r, [&](int64_t o) {
        const T* row = x + o * r;
        V acc = 0;
        for (int64_t j = 0; j < r; ++j) acc += static_cast<V>(load(row[j]));
        out[o] = store<T>(static_cast<typename compute_type<T>::type>(acc));
      });
    } else {
      parallel_for(outer, r * inner, [&](int64_t o) {
        std::vector<V> acc(inner, 0.0);
        for (int64_t j = 0; j < r; ++j) {
          const T* row = x + (o * r + j) * inner;
          for (int64_t i = 0; i < inner; ++i) acc[i] += static_cast<V>(load(row[i]));
        }
        for (int64_t i = 0; i < inner; ++i) out[o * inner + i] = store<T>(static_cast<typename compute_type<T>::type>(acc[i]));
      });
    }
    return;
  }
  const bool want_max = op == ReduceOp::Max || op == ReduceOp::ArgMax;
  const bool want_idx = op == ReduceOp::ArgMax || op == ReduceOp::ArgMin;
  parallel_for(outer * inner, r, [&](int64_t oi) {
    int64_t o = oi / inner, i = oi % inner;
    const T* base = x + o * r * inner + i;
    V best = static_cast<V>(load(base[0]));
    int64_t bi = 0;
    for (int64_t j = 1; j < r; ++j) {
      V v = static_cast<V>(load(base[j * inner]));
      if (std::isnan(best)) break;  // NaN propagates
      if (std::isnan(v) || (want_max ? v > best : v < best)) {
        best = v;
        bi = j;
      }
    }
    if (want_idx)
      static_cast<int64_t*>(outp)[oi] = bi;
    else
      static_cast<T*>(outp)[oi] = store<T>(static_cast<typename compute_type<T>::type>(best));
  });
}

}  // namespace

VGG_REGISTER_KERNEL(ReduceKernel, CPU, F32, (&reduce_kernel<float>));
VGG_REGISTER_KERNEL(ReduceKernel, CPU, F64, (&reduce_kernel<double>));
VGG_REGISTER_KERNEL(ReduceKernel, CPU, BF16, (&reduce_kernel<bf16>));
VGG_REGISTER_KERNEL(ReduceKernel, CPU, I32, (&reduce_kernel<int32_t>));
VGG_REGISTER_KERNEL(ReduceKernel, CPU, I64, (&reduce_kernel<int64_t>));

}  // namespace vgg::kernels::cpu
