// Helpers shared by the op implementations (not part of the public API).
#pragma once
#include "autograd/node.h"
#include "autograd/ops.h"
#include "kernels/layout.h"
#include "tensor/dispatch.h"

namespace vgg::ops::detail {

inline kernels::Layout layout(const Tensor& t) { return kernels::make_layout(t.shape(), t.strides()); }

inline void check_defined(const char* op, const Tensor& t, const char* what = "input") {
  VGG_CHECK(t.defined(), op, ": ", what, " is undefined");
}

inline void check_same(const char* op, const Tensor& a, const Tensor& b) {
  check_defined(op, a);
  check_defined(op, b);
  VGG_CHECK(a.device() == b.device(), op, ": device mismatch between ", describe(a), " and ", describe(b));
  VGG_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch between ", describe(a), " and ", describe(b));
}

inline void check_float(const char* op, const Tensor& t) {
  check_defined(op, t);
  VGG_CHECK(is_floating(t.dtype()), op, ": expects a floating-point tensor, got ", describe(t));
}

// Index tensors: i64 (i32 is widened); returned contiguous on the same device.
inline Tensor index_i64(const char* op, const Tensor& idx) {
  check_defined(op, idx, "index");
  VGG_CHECK(is_integral(idx.dtype()), op, ": index must be i64 or i32, got ", describe(idx));
  return contiguous_raw(cast_raw(idx, DType::I64));
}

// Throws when a fused kernel's backward is asked to build a graph it cannot provide.
inline void no_double_backward(const char* op, const char* fallback) {
  VGG_CHECK(!grad_enabled(), op, ": double backward (create_graph=true) is not supported by the fused kernel; use ",
            fallback);
}

// d/dx gelu_tanh(x) as a differentiable op (one fused kernel pass; its own derivative composed).
Tensor gelu_tanh_grad(const Tensor& x);

}  // namespace vgg::ops::detail
