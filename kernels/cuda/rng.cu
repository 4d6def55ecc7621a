// CUDA Philox random fills (contract in kernels/rng.h): the same Philox4x32-10 counter function
// (kernels/rng.h is host/device) with the same transforms as the CPU, so uniform and randint draws
// equal the CPU's bit for bit and normal draws agree to the last bits of the device's log/sin/cos.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/rng.h"
#include "tensor/dispatch.h"
#include "tensor/error.h"

namespace vgg::kernels::cuda {
namespace {

constexpr int kThreads = 256;

unsigned grid(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }


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

VGG_REGISTER_KERNEL(RandKernel, CUDA, F32, (&rand_kernel<float>));
VGG_REGISTER_KERNEL(RandKernel, CUDA, F64, (&rand_kernel<double>));
VGG_REGISTER_KERNEL(RandKernel, CUDA, BF16, (&rand_kernel<bf16>));
VGG_REGISTER_KERNEL(RandKernel, CUDA, I32, (&rand_kernel<int32_t>));
VGG_REGISTER_KERNEL(RandKernel, CUDA, I64, (&rand_kernel<int64_t>));

}  // namespace vgg::kernels::cuda
