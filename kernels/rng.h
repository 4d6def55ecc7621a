// Counter-based random numbers (Philox 4x32-10). Element i of a draw is a pure function of
// (seed, subsequence, offset + i/4, lane i%4), so results do not depend on threads or device.
#pragma once
#include <cstdint>
#include "tensor/dispatch.h"

#if defined(__CUDACC__)
#define VGG_HD __host__ __device__
#else
#define VGG_HD
#endif

namespace vgg::kernels {

enum class RandKind : uint8_t { Uniform, Normal, RandInt };
struct RandArgs {
  RandKind kind;
  uint64_t seed, subsequence, offset;  // offset counts 4-element blocks
  double a, b;                         // uniform [a, b); normal mean a, std b; randint [a, b)
};
using RandFn = void (*)(const RandArgs& r, int64_t n, void* out);
VGG_KERNEL_OP(RandKernel, "rand", RandFn);

struct Philox4 {
  uint32_t v[4];
};

// Philox 4x32 with 10 rounds (Salmon et al., SC'11).
VGG_HD inline Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = static_cast<uint64_t>(M0) * c0;
    uint64_t p1 = static_cast<uint64_t>(M1) * c2;
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    k0 += W0; k1 += W1;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Uniform in (0, 1]: never 0, so log() is safe in Box-Muller.
VGG_HD inline double u32_to_unit(uint32_t x) { return (static_cast<double>(x) + 1.0) * (1.0 / 4294967296.0); }

}  // namespace vgg::kernels
