// CPU im2col / col2im and average pooling (forward and adjoint), NCHW.
#include <cstring>
#include <vector>

#include "kernels/conv.h"
#include "kernels/cpu/loops.h"
#include "tensor/dispatch.h"
#include "tensor/dtype.h"

namespace vgg::kernels::cpu {
namespace {

template <typename T>
void im2col_kernel(const Conv2dGeom& g, const void* xp, void* colsp) {
  const T* x = static_cast<const T*>(xp);
  T* cols = static_cast<T*>(colsp);
  const int64_t ck = g.c * g.kh * g.kw, L = g.oh * g.ow;
  parallel_for(g.n * ck, L, [&](int64_t row) {
    int64_t n = row / ck, r = row % ck;
    int64_t c = r / (g.kh * g.kw), ki = (r / g.kw) % g.kh, kj = r % g.kw;
    const T* xc = x + (n * g.c + c) * g.h * g.w;
    T* out = cols + row * L;
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      int64_t iy = oy * g.sh - g.ph + ki;
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        int64_t ix = ox * g.sw - g.pw + kj;
        out[oy * g.ow + ox] = (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) ? xc[iy * g.w + ix] : T(0);
      }
    }
  });
}

template <typename T>
void col2im_kernel(const Conv2dGeom& g, const void* colsp, void* xp) {
  using V = typename compute_type<T>::type;
  const T* cols = static_cast<const T*>(colsp);
  T* x = static_cast<T*>(xp);
  const int64_t L = g.oh * g.ow;
  // parallel over (n, c) planes: each plane is written by one thread; the sums are kept in the
  // compute type (f32 for bf16) and rounded once, as on the GPU
  parallel_for(g.n * g.c, g.kh * g.kw * L, [&](int64_t nc) {
    int64_t n = nc / g.c, c = nc % g.c;
    T* xc = x + nc * g.h * g.w;
    std::vector<V> acc(static_cast<size_t>(g.h * g.w), V(0));
    for (int64_t ki = 0; ki < g.kh; ++ki)
      for (int64_t kj = 0; kj < g.kw; ++kj) {
        const T* col = cols + ((n * g.c + c) * g.kh * g.kw + ki * g.kw + kj) * L;
        for (int64_t oy = 0; oy < g.oh; ++oy) {
          int64_t iy = oy * g.sh - g.ph + ki;
          if (iy < 0 || iy >= g.h) continue;
          for (int64_t ox = 0; ox < g.ow; ++ox) {
            int64_t ix = ox * g.sw - g.pw + kj;
            if (ix < 0 || ix >= g.w) continue;
            acc[static_cast<size_t>(iy * g.w + ix)] += static_cast<V>(load(col[oy * g.ow + ox]));
          }
        }
      }
    for (int64_t i = 0; i < g.h * g.w; ++i) xc[i] = store<T>(acc[static_cast<size_t>(i)]);
  });
}

template <typename T>
void avg_pool_kernel(const Conv2dGeom& g, const void* xp, void* yp) {
  using V = typename compute_type<T>::type;
  const T* x = static_cast<const T*>(xp);
  T* y = static_cast<T*>(yp);
  const V inv = V(1) / static_cast<V>(g.kh * g.kw);
  parallel_for(g.n * g.c, g.oh * g.ow * g.kh * g.kw, [&](int64_t nc) {
    const T* xc = x + nc * g.h * g.w;
    T* yc = y + nc * g.oh * g.ow;
    for (int64_t oy = 0; oy < g.oh; ++oy)
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        V s = 0;
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          int64_t iy = oy * g.sh - g.ph + ki;
          if (iy < 0 || iy >= g.h) continue;
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            int64_t ix = ox * g.sw - g.pw + kj;
            if (ix >= 0 && ix < g.w) s += static_cast<V>(load(xc[iy * g.w + ix]));
          }
        }
        yc[oy * g.ow + ox] = store<T>(s * inv);
      }
  });
}

template <typename T>
void avg_pool_adjoint_kernel(const Conv2dGeom& g, const void* yp, void* xp) {
  using V = typename compute_type<T>::type;
  const T* y = static_cast<const T*>(yp);
  T* x = static_cast<T*>(xp);
  const V inv = V(1) / static_cast<V>(g.kh * g.kw);
  parallel_for(g.n * g.c, g.oh * g.ow * g.kh * g.kw, [&](int64_t nc) {
    T* xc = x + nc * g.h * g.w;
    const T* yc = y + nc * g.oh * g.ow;
    std::vector<V> acc(static_cast<size_t>(g.h * g.w), V(0));  // f32 sums for bf16, rounded once (as col2im)
    for (int64_t oy = 0; oy < g.oh; ++oy)
      for (int64_t ox = 0; ox < g.ow; ++ox) {
        V v = static_cast<V>(load(yc[oy * g.ow + ox])) * inv;
        for (int64_t ki = 0; ki < g.kh; ++ki) {
          int64_t iy = oy * g.sh - g.ph + ki;
          if (iy < 0 || iy >= g.h) continue;
          for (int64_t kj = 0; kj < g.kw; ++kj) {
            int64_t ix = ox * g.sw - g.pw + kj;
            if (ix < 0 || ix >= g.w) continue;
            acc[static_cast<size_t>(iy * g.w + ix)] += v;
          }
        }
      }
    for (int64_t i = 0; i < g.h * g.w; ++i) xc[i] = store<T>(acc[static_cast<size_t>(i)]);
  });
}

}  // namespace

#define VGG_REG_CONV(DT, T)                                                      \
  VGG_REGISTER_KERNEL(Im2ColKernel, CPU, DT, (&im2col_kernel<T>));                   \
  VGG_REGISTER_KERNEL(Col2ImKernel, CPU, DT, (&col2im_kernel<T>));                   \
  VGG_REGISTER_KERNEL(AvgPoolKernel, CPU, DT, (&avg_pool_kernel<T>));             \
  VGG_REGISTER_KERNEL(AvgPoolAdjointKernel, CPU, DT, (&avg_pool_adjoint_kernel<T>))
VGG_REG_CONV(F32, float);
VGG_REG_CONV(F64, double);
VGG_REG_CONV(BF16, bf16);

}  // namespace vgg::kernels::cpu
