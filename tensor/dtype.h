// Element types. bf16 is stored as 16 bits and computed in f32; conversions
// round to nearest even.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace vgg {

enum class DType : uint8_t { F32, F64, BF16, I32, I64, Bool };
constexpr int kNumDTypes = 6;

struct bf16 {
  uint16_t bits = 0;
  bf16() = default;
  explicit bf16(float f) : bits(from_float(f)) {}
  explicit operator float() const {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  static uint16_t from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return static_cast<uint16_t>((u + rounding) >> 16);
  }
};

size_t itemsize(DType t);
const char* dtype_name(DType t);
bool is_floating(DType t);
bool is_integral(DType t);  // i32, i64 (not bool)
DType dtype_from_name(const std::string& name);  // "f32", "float32", ...

// Compile-time mapping from C++ type to DType.
template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::F32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::F64; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::BF16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::I32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::I64; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::Bool; };

// Arithmetic type used to compute on a storage type (bf16 computes in float).
template <typename T> struct compute_type { using type = T; };
template <> struct compute_type<bf16> { using type = float; };

template <typename T>
inline typename compute_type<T>::type load(T v) { return static_cast<typename compute_type<T>::type>(v); }
template <typename T, typename C>
inline T store(C v) { if constexpr (std::is_same_v<T, bf16>) return bf16(static_cast<float>(v)); else return static_cast<T>(v); }

}  // namespace vgg

// Calls the generic lambda `body` with a typed null pointer for the dtype.
#define VGG_DISPATCH_FLOAT(dt, NAME, ...)                                        \
  [&] {                                                                           \
    switch (dt) {                                                                 \
      case ::vgg::DType::F32: { using scalar_t = float; return __VA_ARGS__(); }    \
      case ::vgg::DType::F64: { using scalar_t = double; return __VA_ARGS__(); }   \
      case ::vgg::DType::BF16: { using scalar_t = ::vgg::bf16; return __VA_ARGS__(); } \
      default: VGG_FAIL(NAME, ": dtype ", ::vgg::dtype_name(dt), " is not supported (expects f32, f64 or bf16)"); \
    }                                                                             \
  }()
