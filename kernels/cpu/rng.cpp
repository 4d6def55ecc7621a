// CPU Philox fills: element i depends only on (seed, subsequence, offset + i/4, i%4).
#include <cmath>

#include "kernels/cpu/loops.h"
#include "kernels/rng.h"
#include "tensor/dispatch.h"
#include "tensor/dtype.h"

namespace vgg::kernels::cpu {
namespace {

template <typename T>
void rand_kernel(const RandArgs& r, int64_t n, void* outp) {
  T* out = static_cast<T*>(outp);
  const int64_t blocks = (n + 3) / 4;
  const uint32_t k0 = static_cast<uint32_t>(r.seed), k1 = static_cast<uint32_t>(r.seed >> 32);
  const uint32_t c2 = static_cast<uint32_t>(r.subsequence), c3 = static_cast<uint32_t>(r.subsequence >> 32);
  parallel_for(blocks, 64, [&](int64_t blk) {
    uint64_t ctr = r.offset + static_cast<uint64_t>(blk);
    Philox4 p = philox4x32_10(static_cast<uint32_t>(ctr), static_cast<uint32_t>(ctr >> 32), c2, c3, k0, k1);
    double vals[4];
    if (r.kind == RandKind::Normal) {
      for (int h = 0; h < 2; ++h) {
        double u1 = u32_to_unit(p.v[2 * h]), u2 = u32_to_unit(p.v[2 * h + 1]);
        double rad = std::sqrt(-2.0 * std::log(u1));
        vals[2 * h] = r.a + r.b * rad * std::cos(2.0 * M_PI * u2);
        vals[2 * h + 1] = r.a + r.b * rad * std::sin(2.0 * M_PI * u2);
      }
    } else if (r.kind == RandKind::Uniform) {
      for (int l = 0; l < 4; ++l) vals[l] = r.a + (r.b - r.a) * (static_cast<double>(p.v[l]) * (1.0 / 4294967296.0));
    } else {
      double span = r.b - r.a;
      for (int l = 0; l < 4; ++l) vals[l] = r.a + std::floor(static_cast<double>(p.v[l]) / 4294967296.0 * span);
    }
    for (int l = 0; l < 4; ++l) {
      int64_t i = blk * 4 + l;
      if (i >= n) break;
      if constexpr (std::is_integral_v<T>)
        out[i] = static_cast<T>(vals[l]);
      else {
        auto v = static_cast<typename compute_type<T>::type>(vals[l]);
        // float rounding can push a value in [a, b) up to b; keep the interval half-open
        if (r.kind == RandKind::Uniform && static_cast<double>(v) >= r.b) v = std::nextafter(v, static_cast<decltype(v)>(r.a));
        out[i] = store<T>(v);
      }
    }
  });
}

}  // namespace

VGG_REGISTER_KERNEL(RandKernel, CPU, F32, (&rand_kernel<float>));
VGG_REGISTER_KERNEL(RandKernel, CPU, F64, (&rand_kernel<double>));
VGG_REGISTER_KERNEL(RandKernel, CPU, BF16, (&rand_kernel<bf16>));
VGG_REGISTER_KERNEL(RandKernel, CPU, I32, (&rand_kernel<int32_t>));
VGG_REGISTER_KERNEL(RandKernel, CPU, I64, (&rand_kernel<int64_t>));

}  // namespace vgg::kernels::cpu
