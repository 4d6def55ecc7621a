// Elementwise kernels: unary (with up to two scalar parameters), binary with
// broadcasting through strides (stride 0 = broadcast), ternary where, copy/cast and fill.
// Every output is contiguous with the iteration shape; inputs are strided.
#pragma once
#include "kernels/layout.h"
#include "tensor/dtype.h"

namespace vgg::kernels {

enum class UnaryOp : uint8_t {
  Neg, Abs, Exp, Log, Sqrt, Rsqrt, Square, Sin, Cos, Tanh, Sigmoid, Silu, Relu,
  GeluErf, GeluTanh, Erf, Sign, Reciprocal,
  PowScalar,  // x^a
  Clamp,      // min(max(x, a), b)
  AddScalar,  // x + a
  MulScalar,  // x * a
  Step,       // 1 if x > 0 else 0 (in the input dtype)
  InRange,    // 1 if a <= x <= b else 0
  GeluTanhGrad,  // d/dx of GeluTanh
};
struct UnaryParams {
  UnaryOp op;
  double a = 0, b = 0;
};
const char* unary_name(UnaryOp op);

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, Pow, Maximum, Minimum, Eq, Ne, Lt, Le, Gt, Ge };
const char* binary_name(BinaryOp op);
inline bool is_comparison(BinaryOp op) { return op >= BinaryOp::Eq; }

// y (contiguous, shape of x_layout) = op(x)
using UnaryFn = void (*)(const UnaryParams& p, const Layout& x, const void* xp, void* yp);
// out (contiguous, shape of a/b layouts, which share one shape) = op(a, b); comparisons write bool.
using BinaryFn = void (*)(BinaryOp op, const Layout& a, const void* ap, const Layout& b, const void* bp, void* out);
// out = cond ? a : b, all three layouts share one shape; cond is bool.
using WhereFn = void (*)(const Layout& c, const bool* cp, const Layout& a, const void* ap, const Layout& b,
                         const void* bp, void* out);
// dst (strided, dtype of the registration) = cast(src) where src has dtype src_dtype; shapes equal.
using CopyFn = void (*)(const Layout& dst, void* dp, const Layout& src, const void* sp, DType src_dtype);
// n contiguous elements set to v.
using FillFn = void (*)(int64_t n, void* out, double v);

}  // namespace vgg::kernels
