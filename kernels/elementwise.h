// Elementwise kernels: unary (with up to two scalar parameters), binary with
// broadcasting through strides (stride 0 = broadcast), ternary where, copy/cast and fill.
// Every output is contiguous with the iteration shape; inputs are strided.
#pragma once
#include "kernels/layout.h"
#include "tensor/dtype.h"
#include "tensor/dispatch.h"

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

// GeluTanhBwd: a·gelu_tanh'(b) (the upstream gradient a times the derivative at the input b): the
// GELU backward in one pass, used where no graph of the backward is wanted
enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, Pow, Maximum, Minimum, GeluTanhBwd, Eq, Ne, Lt, Le, Gt, Ge };
const char* binary_name(BinaryOp op);
inline bool is_comparison(BinaryOp op) { return op >= BinaryOp::Eq; }

// y (contiguous, shape of x_layout) = op(x)
using UnaryFn = void (*)(const UnaryParams& p, const Layout& x, const void* xp, void* yp);
VGG_KERNEL_OP(UnaryKernel, "unary", UnaryFn);
// out (contiguous, shape of a/b layouts, which share one shape) = op(a, b); comparisons write bool.
using BinaryFn = void (*)(BinaryOp op, const Layout& a, const void* ap, const Layout& b, const void* bp, void* out);
VGG_KERNEL_OP(BinaryKernel, "binary", BinaryFn);
// out = cond ? a : b, all three layouts share one shape; cond is bool.
using WhereFn = void (*)(const Layout& c, const bool* cp, const Layout& a, const void* ap, const Layout& b,
                         const void* bp, void* out);
VGG_KERNEL_OP(WhereKernel, "where", WhereFn);
// dst (strided, dtype of the registration) = cast(src) where src has dtype src_dtype; shapes equal.
using CopyFn = void (*)(const Layout& dst, void* dp, const Layout& src, const void* sp, DType src_dtype);
VGG_KERNEL_OP(CopyKernel, "copy", CopyFn);
// n contiguous elements set to v.
using FillFn = void (*)(int64_t n, void* out, double v);
VGG_KERNEL_OP(FillKernel, "fill", FillFn);

// Bytes a call moves (read once, written once), for the per-op profile (tensor/profile.h).
inline double kernel_bytes(UnaryKernel, DType t, const UnaryParams&, const Layout& x, const void*, void*) {
  return (touched_elements(x) + layout_numel(x)) * static_cast<double>(itemsize(t));
}
inline double kernel_bytes(BinaryKernel, DType t, BinaryOp op, const Layout& a, const void*, const Layout& b, const void*,
                           void*) {
  const double out = layout_numel(a) * (is_comparison(op) ? 1.0 : static_cast<double>(itemsize(t)));
  return (touched_elements(a) + touched_elements(b)) * static_cast<double>(itemsize(t)) + out;
}
inline double kernel_bytes(CopyKernel, DType t, const Layout& dst, void*, const Layout& src, const void*, DType st) {
  return layout_numel(dst) * static_cast<double>(itemsize(t)) + touched_elements(src) * static_cast<double>(itemsize(st));
}
inline const char* kernel_label(UnaryKernel, const UnaryParams& p, const Layout&, const void*, void*) {
  return unary_name(p.op);
}
inline const char* kernel_label(BinaryKernel, BinaryOp op, const Layout&, const void*, const Layout&, const void*, void*) {
  return binary_name(op);
}
inline double kernel_bytes(FillKernel, DType t, int64_t n, void*, double) {
  return static_cast<double>(n) * static_cast<double>(itemsize(t));
}

}  // namespace vgg::kernels
