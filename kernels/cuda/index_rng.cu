// CUDA indexing kernels (kernels/index.h) and Philox random fills (kernels/rng.h).
//
// index_add and scatter_add give one thread each (outer, inner) column and let it walk the m
// source rows in order, as the CPU kernels do: no atomics, so the sums are deterministic and equal
// to the CPU's in f32 and f64. The random fills evaluate the same Philox4x32-10 counter function
// (kernels/rng.h is host/device) with the same transforms, so uniform and randint draws equal the
// CPU's bit for bit and normal draws agree to the last bits of the device's log/sin/cos.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/index.h"
#include "kernels/rng.h"
#include "kernels/cuda/common.cuh"
#include "tensor/dispatch.h"
#include "tensor/error.h"

namespace vgg::kernels::cuda {
namespace {

constexpr int kThreads = 256;

unsigned grid(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }


// ---- indexing -------------------------------------------------------------------------------

template <class T>
__global__ void index_select_k(int64_t outer, int64_t n, int64_t inner, const T* src, const int64_t* idx, int64_t m, T* out) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // over outer·m·inner outputs
  if (e >= outer * m * inner) return;
  const int64_t i = e % inner, oj = e / inner, o = oj / m, j = oj % m;
  out[e] = src[(o * n + idx[j]) * inner + i];
}

template <class T>
__global__ void index_add_k(int64_t outer, int64_t n, int64_t inner, T* dst, const int64_t* idx, int64_t m, const T* src) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // one (outer, inner) column
  if (c >= outer * inner) return;
  const int64_t o = c / inner, i = c % inner;
  for (int64_t j = 0; j < m; ++j) {
    T& d = dst[(o * n + idx[j]) * inner + i];
    d = st<T>(ldv(d) + ldv(src[(o * m + j) * inner + i]));
  }
}

template <class T>
__global__ void gather_k(int64_t outer, int64_t n, int64_t inner, const T* src, const int64_t* idx, int64_t m, T* out) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= outer * m * inner) return;
  const int64_t i = e % inner, o = e / inner / m;
  out[e] = src[(o * n + idx[e]) * inner + i];
}

template <class T>
__global__ void scatter_add_k(int64_t outer, int64_t n, int64_t inner, T* dst, const int64_t* idx, int64_t m, const T* src) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= outer * inner) return;
  const int64_t o = c / inner, i = c % inner;
  for (int64_t j = 0; j < m; ++j) {
    const int64_t e = (o * m + j) * inner + i;
    T& d = dst[(o * n + idx[e]) * inner + i];
    d = st<T>(ldv(d) + ldv(src[e]));
  }
}

template <class T>
void index_select_kernel(int64_t outer, int64_t n, int64_t inner, const void* src, const int64_t* idx, int64_t m, void* out) {
  if (outer * m * inner == 0) return;
  index_select_k<T><<<grid(outer * m * inner), kThreads>>>(outer, n, inner, static_cast<const T*>(src), idx, m, static_cast<T*>(out));
  check_launch("index_select");
}
template <class T>
void index_add_kernel(int64_t outer, int64_t n, int64_t inner, void* dst, const int64_t* idx, int64_t m, const void* src) {
  if (outer * inner == 0 || m == 0) return;
  index_add_k<T><<<grid(outer * inner), kThreads>>>(outer, n, inner, static_cast<T*>(dst), idx, m, static_cast<const T*>(src));
  check_launch("index_add");
}
template <class T>
void gather_kernel(int64_t outer, int64_t n, int64_t inner, const void* src, const int64_t* idx, int64_t m, void* out) {
  if (outer * m * inner == 0) return;
  gather_k<T><<<grid(outer * m * inner), kThreads>>>(outer, n, inner, static_cast<const T*>(src), idx, m, static_cast<T*>(out));
  check_launch("gather");
}
template <class T>
void scatter_add_kernel(int64_t outer, int64_t n, int64_t inner, void* dst, const int64_t* idx, int64_t m, const void* src) {
  if (outer * inner == 0 || m == 0) return;
  scatter_add_k<T><<<grid(outer * inner), kThreads>>>(outer, n, inner, static_cast<T*>(dst), idx, m, static_cast<const T*>(src));
  check_launch("scatter_add");
}

// ---- random fills ---------------------------------------------------------------------------

template <class T>
__global__ void rand_k(RandArgs r, int64_t n, T* out) {
  const int64_t blk = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // one Philox block of 4 values
  if (blk * 4 >= n) return;
  const uint32_t k0 = static_cast<uint32_t>(r.seed), k1 = static_cast<uint32_t>(r.seed >> 32);
  const uint32_t c2 = static_cast<uint32_t>(r.subsequence), c3 = static_cast<uint32_t>(r.subsequence >> 32);
  const uint64_t ctr = r.offset + static_cast<uint64_t>(blk);
  const Philox4 p = philox4x32_10(static_cast<uint32_t>(ctr), static_cast<uint32_t>(ctr >> 32), c2, c3, k0, k1);
  double vals[4];
  if (r.kind == RandKind::Normal) {
    for (int h = 0; h < 2; ++h) {
      const double u1 = u32_to_unit(p.v[2 * h]), u2 = u32_to_unit(p.v[2 * h + 1]);
      const double rad = sqrt(-2.0 * log(u1));
      vals[2 * h] = r.a + r.b * rad * cos(2.0 * M_PI * u2);
      vals[2 * h + 1] = r.a + r.b * rad * sin(2.0 * M_PI * u2);
    }
  } else if (r.kind == RandKind::Uniform) {
    for (int l = 0; l < 4; ++l) vals[l] = r.a + (r.b - r.a) * (static_cast<double>(p.v[l]) * (1.0 / 4294967296.0));
  } else {
    const double span = r.b - r.a;
    for (int l = 0; l < 4; ++l) vals[l] = r.a + floor(static_cast<double>(p.v[l]) / 4294967296.0 * span);
  }
  for (int l = 0; l < 4; ++l) {
    const int64_t i = blk * 4 + l;
    if (i >= n) break;
    if constexpr (std::is_integral_v<T>) {
      out[i] = static_cast<T>(vals[l]);
    } else {
      Cmp<T> v = static_cast<Cmp<T>>(vals[l]);
      if (r.kind == RandKind::Uniform && static_cast<double>(v) >= r.b) {
        if constexpr (std::is_same_v<Cmp<T>, float>)
          v = nextafterf(v, static_cast<float>(r.a));
        else
          v = nextafter(v, r.a);
      }
      out[i] = st<T>(v);
    }
  }
}

template <class T>
void rand_kernel(const RandArgs& r, int64_t n, void* out) {
  if (n == 0) return;
  rand_k<T><<<grid((n + 3) / 4), kThreads>>>(r, n, static_cast<T*>(out));
  check_launch("rand");
}

}  // namespace

#define VGG_REG_CUDA_INDEX(DT, T)                                           \
  VGG_REGISTER_KERNEL(IndexSelectKernel, CUDA, DT, (&index_select_kernel<T>)); \
  VGG_REGISTER_KERNEL(IndexAddKernel, CUDA, DT, (&index_add_kernel<T>));       \
  VGG_REGISTER_KERNEL(GatherKernel, CUDA, DT, (&gather_kernel<T>));             \
  VGG_REGISTER_KERNEL(ScatterAddKernel, CUDA, DT, (&scatter_add_kernel<T>));   \
  VGG_REGISTER_KERNEL(RandKernel, CUDA, DT, (&rand_kernel<T>))
VGG_REG_CUDA_INDEX(F32, float);
VGG_REG_CUDA_INDEX(F64, double);
VGG_REG_CUDA_INDEX(BF16, bf16);
VGG_REG_CUDA_INDEX(I32, int32_t);
VGG_REG_CUDA_INDEX(I64, int64_t);

}  // namespace vgg::kernels::cuda
