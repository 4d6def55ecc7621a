// CPU indexing kernels: index_select / index_add (1-D index along a dim) and
// gather / scatter_add (index tensor of the output's shape).
#include <cstring>

#include "kernels/cpu/loops.h"
#include "kernels/index.h"
#include "tensor/dispatch.h"
#include "tensor/dtype.h"

namespace vgg::kernels::cpu {
namespace {

template <typename T>
void index_select_kernel(int64_t outer, int64_t n, int64_t inner, const void* srcp, const int64_t* idx, int64_t m,
                         void* outp) {
  const T* src = static_cast<const T*>(srcp);
  T* out = static_cast<T*>(outp);
  parallel_for(outer * m, inner, [&](int64_t oj) {
    int64_t o = oj / m, j = oj % m;
    std::memcpy(out + oj * inner, src + (o * n + idx[j]) * inner, inner * sizeof(T));
  });
}

template <typename T>
void index_add_kernel(int64_t outer, int64_t n, int64_t inner, void* dstp, const int64_t* idx, int64_t m,
                      const void* srcp) {
  using V = typename compute_type<T>::type;
  T* dst = static_cast<T*>(dstp);
  const T* src = static_cast<const T*>(srcp);
  // parallel over (outer, inner) columns: distinct threads never touch the same element
  parallel_for(outer, m * inner, [&](int64_t o) {
    for (int64_t j = 0; j < m; ++j) {
      T* d = dst + (o * n + idx[j]) * inner;
      const T* s = src + (o * m + j) * inner;
      for (int64_t i = 0; i < inner; ++i) d[i] = store<T>(static_cast<V>(load(d[i])) + static_cast<V>(load(s[i])));
    }
  });
}

template <typename T>
void gather_kernel(int64_t outer, int64_t n, int64_t inner, const void* srcp, const int64_t* idx, int64_t m,
                   void* outp) {
  const T* src = static_cast<const T*>(srcp);
  T* out = static_cast<T*>(outp);
  parallel_for(outer * m, inner, [&](int64_t oj) {
    int64_t o = oj / m;
    for (int64_t i = 0; i < inner; ++i) out[oj * inner + i] = src[(o * n + idx[oj * inner + i]) * inner + i];
  });
}

template <typename T>
void scatter_add_kernel(int64_t outer, int64_t n, int64_t inner, void* dstp, const int64_t* idx, int64_t m,
                        const void* srcp) {
  using V = typename compute_type<T>::type;
  T* dst = static_cast<T*>(dstp);
  const T* src = static_cast<const T*>(srcp);
  parallel_for(outer * inner, m, [&](int64_t oi) {
    int64_t o = oi / inner, i = oi % inner;
    for (int64_t j = 0; j < m; ++j) {
      int64_t e = (o * m + j) * inner + i;
      T& d = dst[(o * n + idx[e]) * inner + i];
      d = store<T>(static_cast<V>(load(d)) + static_cast<V>(load(src[e])));
    }
  });
}

}  // namespace

#define VGG_REG_INDEX(DT, T)                                               \
  VGG_REGISTER_KERNEL(IndexSelectKernel, CPU, DT, (&index_select_kernel<T>)); \
  VGG_REGISTER_KERNEL(IndexAddKernel, CPU, DT, (&index_add_kernel<T>));       \
  VGG_REGISTER_KERNEL(GatherKernel, CPU, DT, (&gather_kernel<T>));             \
  VGG_REGISTER_KERNEL(ScatterAddKernel, CPU, DT, (&scatter_add_kernel<T>))
VGG_REG_INDEX(F32, float);
VGG_REG_INDEX(F64, double);
VGG_REG_INDEX(BF16, bf16);
VGG_REG_INDEX(I32, int32_t);
VGG_REG_INDEX(I64, int64_t);

}  // namespace vgg::kernels::cpu
