// Branch-free float math that the compiler can vectorise inside `#pragma omp simd` loops.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace vgg::kernels::cpu {

// exp(x) for float: x = n·ln2 + r with |r| <= ln2/2, a degree-6 polynomial for e^r, and 2^n
// built in the exponent bits. Relative error below 2e-7 on [-87, 88]; exp(x) = 0 for
// x < -87.3 (so exp(-inf) = 0); inputs above 88.7 saturate at exp(88.7) (softmax and the
// attention kernels only pass max-subtracted values <= 0).
inline float exp_f32(float x) {
  const float lo = -87.33f, hi = 88.72f;
  const float keep = x >= lo ? 1.0f : 0.0f;  // select, not a branch
  float xc = x > lo ? x : lo;
  xc = xc < hi ? xc : hi;
  const float n = __builtin_floorf(xc * 1.44269504088896341f + 0.5f);
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const float scale = __builtin_bit_cast(float, (static_cast<int32_t>(n) + 127) << 23);
  return p * scale * keep;
}

// exp in the compute type: the vectorisable exp_f32 for float, std::exp for double.
template <typename V>
inline V vexp(V x) {
  if constexpr (std::is_same_v<V, float>)
    return exp_f32(x);
  else
    return std::exp(x);
}

}  // namespace vgg::kernels::cpu
