// Helpers shared by the op implementations (not part of the public API).
#pragma once
#include "autograd/forward_ad.h"
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

// ---- forward mode ------------------------------------------------------------------------
// Applies an op's JVP rule: when a dual level is open (and rules are not already running) and
// one of `inputs` carries a tangent, runs rule(tangents) (one entry per input, undefined for
// none) with propagation paused and reverse recording as usual, and attaches the result as y's
// tangent (an undefined result: y gets none). Call it after recording y's reverse node.
template <typename F>
inline void run_forward_rule(const char* op, const std::vector<Tensor>& ts, const Tensor& y, F&& rule) {
  bool any = false;
  for (const Tensor& t : ts) any = any || t.defined();
  if (!any) return;
  Tensor t;
  {
    fwad::PauseGuard pause;
    t = rule(ts);
  }
  if (t.defined()) fwad::detail::set_tangent(op, y, t);
}

template <typename F>
inline void forward_rule(const char* op, std::initializer_list<const Tensor*> inputs, const Tensor& y, F&& rule) {
  if (!fwad::detail::propagating()) return;  // the only cost when forward mode is not in use
  std::vector<Tensor> ts;
  ts.reserve(inputs.size());
  for (const Tensor* p : inputs) ts.push_back(p ? fwad::detail::tangent_of(*p) : Tensor());
  run_forward_rule(op, ts, y, rule);
}

template <typename F>
inline void forward_rule(const char* op, const std::vector<Tensor>& inputs, const Tensor& y, F&& rule) {
  if (!fwad::detail::propagating()) return;
  std::vector<Tensor> ts;
  ts.reserve(inputs.size());
  for (const Tensor& x : inputs) ts.push_back(fwad::detail::tangent_of(x));
  run_forward_rule(op, ts, y, rule);
}

// A tangent broadcast to an output's shape (a view; no copy).
inline Tensor fit(const Tensor& t, const Shape& shape) { return t.shape() == shape ? t : expand(t, shape); }

// a + b where either may be undefined (an undefined term is zero).
inline Tensor add_terms(const Tensor& a, const Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return add(a, b);
}

// d/dx gelu_tanh(x) as a differentiable op (one fused kernel pass; its own derivative composed).
Tensor gelu_tanh_grad(const Tensor& x);

}  // namespace vgg::ops::detail
