// Elementwise ops and their derivative rules.
#include <cmath>

#include "autograd/ops_util.h"
#include "kernels/elementwise.h"

namespace vgg::ops {

using detail::layout;
using kernels::BinaryOp;
using kernels::UnaryOp;
using kernels::UnaryParams;

namespace {

Tensor unary_raw(const Tensor& x, UnaryParams p) {
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  get_kernel<kernels::UnaryKernel>(x.device(), x.dtype())(p, layout(x), x.data_ptr(), y.data_ptr());
  return y;
}

Tensor binary_raw(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = kernels::binary_name(op);
  detail::check_same(name, a, b);
  Shape out = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor ae = expand_raw(a, out, name), be = expand_raw(b, out, name);
  Tensor y = empty(out, kernels::is_comparison(op) ? DType::Bool : a.dtype(), a.device());
  get_kernel<kernels::BinaryKernel>(a.device(), a.dtype())(op, layout(ae), ae.data_ptr(), layout(be),
                                                                  be.data_ptr(), y.data_ptr());
  return y;
}

// Mask (in x's dtype) from a comparison, without history.
Tensor as_float_mask(const Tensor& m, DType dt) { return cast_raw(m, dt); }

using Backward = std::function<Grads(const Grads&, const std::vector<bool>&)>;

// A unary op with grads computed by fn(g, x, y).
template <typename F>
Tensor unary_op(const char* name, const Tensor& x, UnaryParams p, bool float_only, F grad_fn) {
  detail::check_defined(name, x);
  if (float_only) detail::check_float(name, x);
  VGG_CHECK(x.dtype() != DType::Bool, name, ": bool tensors are not supported");
  Tensor y = unary_raw(x, p);
  if (any_requires_grad({&x})) {
    auto node = record(name, {x}, {&y});
    SavedTensor sx(x, false), sy(y, true);
    node->backward = [sx, sy, grad_fn, name](const Grads& g, const std::vector<bool>&) -> Grads {
      return {grad_fn(g[0], sx.unpack(name), sy.unpack(name))};
    };
  }
  // the Jacobian is diagonal: the tangent goes through the same map as the gradient
  detail::forward_rule(name, {&x}, y, [&](const std::vector<Tensor>& t) {
    return grad_fn(t[0], x, fwad::detail::history_alias(y));
  });
  return y;
}

}  // namespace

Tensor neg(const Tensor& x) {
  return unary_op("neg", x, {UnaryOp::Neg}, false, [](const Tensor& g, const Tensor&, const Tensor&) { return neg(g); });
}
Tensor abs(const Tensor& x) {
  return unary_op("abs", x, {UnaryOp::Abs}, false,
                  [](const Tensor& g, const Tensor& x, const Tensor&) { return mul(g, sign(x)); });
}
Tensor exp(const Tensor& x) {
  return unary_op("exp", x, {UnaryOp::Exp}, true, [](const Tensor& g, const Tensor&, const Tensor& y) { return mul(g, y); });
}
Tensor log(const Tensor& x) {
  return unary_op("log", x, {UnaryOp::Log}, true, [](const Tensor& g, const Tensor& x, const Tensor&) { return div(g, x); });
}
Tensor sqrt(const Tensor& x) {
  return unary_op("sqrt", x, {UnaryOp::Sqrt}, true,
                  [](const Tensor& g, const Tensor&, const Tensor& y) { return div(mul(g, 0.5), y); });
}
Tensor rsqrt(const Tensor& x) {
  return unary_op("rsqrt", x, {UnaryOp::Rsqrt}, true, [](const Tensor& g, const Tensor&, const Tensor& y) {
    return mul(mul(g, -0.5), pow(y, 3.0));
  });
}
Tensor square(const Tensor& x) {
  return unary_op("square", x, {UnaryOp::Square}, false,
                  [](const Tensor& g, const Tensor& x, const Tensor&) { return mul(g, mul(x, 2.0)); });
}
Tensor sin(const Tensor& x) {
  return unary_op("sin", x, {UnaryOp::Sin}, true, [](const Tensor& g, const Tensor& x, const Tensor&) { return mul(g, cos(x)); });
}
Tensor cos(const Tensor& x) {
  return unary_op("cos", x, {UnaryOp::Cos}, true,
                  [](const Tensor& g, const Tensor& x, const Tensor&) { return neg(mul(g, sin(x))); });
}
Tensor tanh(const Tensor& x) {
  return unary_op("tanh", x, {UnaryOp::Tanh}, true, [](const Tensor& g, const Tensor&, const Tensor& y) {
    return mul(g, add(neg(square(y)), 1.0));
  });
}
Tensor sigmoid(const Tensor& x) {
  return unary_op("sigmoid", x, {UnaryOp::Sigmoid}, true, [](const Tensor& g, const Tensor&, const Tensor& y) {
    return mul(g, mul(y, add(neg(y), 1.0)));
  });
}
Tensor silu(const Tensor& x) {
  // d/dx x·s(x) = s(x)·(1 + x·(1 − s(x)))
  return unary_op("silu", x, {UnaryOp::Silu}, true, [](const Tensor& g, const Tensor& x, const Tensor&) {
    Tensor s = sigmoid(x);
    return mul(g, mul(s, add(mul(x, add(neg(s), 1.0)), 1.0)));
  });
}
Tensor relu(const Tensor& x) {
  return unary_op("relu", x, {UnaryOp::Relu}, true, [](const Tensor& g, const Tensor& x, const Tensor&) {
    return mul(g, unary_raw(x.detach(), {UnaryOp::Step}));
  });
}
Tensor erf(const Tensor& x) {
  return unary_op("erf", x, {UnaryOp::Erf}, true, [](const Tensor& g, const Tensor& x, const Tensor&) {
    return mul(g, mul(exp(neg(square(x))), 2.0 / std::sqrt(M_PI)));
  });
}
Tensor gelu(const Tensor& x, bool tanh_approximation) {
  if (!tanh_approximation) {
    // d/dx x·Φ(x) = Φ(x) + x·φ(x)
    return unary_op("gelu", x, {UnaryOp::GeluErf}, true, [](const Tensor& g, const Tensor& x, const Tensor&) {
      Tensor cdf = mul(add(erf(mul(x, M_SQRT1_2)), 1.0), 0.5);
      Tensor pdf = mul(exp(mul(square(x), -0.5)), 1.0 / std::sqrt(2.0 * M_PI));
      return mul(g, add(cdf, mul(x, pdf)));
    });
  }
  // y = ½x(1 + tanh u) = x·σ(2u), u = k(x + c x³); dy/dx is its own op (one fused pass)
  // without a graph of the backward on a GPU: g·dy/dx in one pass (one read of g and x, one write)
  return unary_op("gelu_tanh", x, {UnaryOp::GeluTanh}, true, [](const Tensor& g, const Tensor& x, const Tensor&) {
    if (!grad_enabled() && g.device().is_cuda() && g.shape() == x.shape()) return binary_raw(BinaryOp::GeluTanhBwd, g, x);
    return mul(g, detail::gelu_tanh_grad(x));
  });
}

namespace detail {
// dy/dx = s + 2x·q·u', s = σ(2u), q = s(1 − s); its derivative, composed for any order:
// d²y/dx² = 4q·u' + 2x·(2(1 − 2s)·q·u'² + q·u''), u' = k(1 + 3c x²), u'' = 6kc·x.
Tensor gelu_tanh_grad(const Tensor& x) {
  return unary_op("gelu_tanh_grad", x, {UnaryOp::GeluTanhGrad}, true,
                  [](const Tensor& g, const Tensor& x, const Tensor&) {
                    const double k = 0.7978845608028654, c = 0.044715;
                    Tensor u = mul(add(x, mul(pow(x, 3.0), c)), k);
                    Tensor s = sigmoid(mul(u, 2.0));
                    Tensor q = mul(s, add(neg(s), 1.0));
                    Tensor du = mul(add(mul(square(x), 3.0 * c), 1.0), k);
                    Tensor ddu = mul(x, 6.0 * k * c);
                    Tensor inner = add(mul(mul(mul(add(mul(s, -2.0), 1.0), q), square(du)), 2.0), mul(q, ddu));
                    return mul(g, add(mul(mul(q, du), 4.0), mul(mul(x, inner), 2.0)));
                  });
}
}  // namespace detail

Tensor reciprocal(const Tensor& x) {
  return unary_op("reciprocal", x, {UnaryOp::Reciprocal}, true,
                  [](const Tensor& g, const Tensor&, const Tensor& y) { return neg(mul(g, square(y))); });
}
Tensor sign(const Tensor& x) {
  detail::check_defined("sign", x);
  return unary_raw(x, {UnaryOp::Sign});  // piecewise constant: no history, gradient zero
}
Tensor pow(const Tensor& x, double a) {
  if (a == 1.0) return mul(x, 1.0);
  return unary_op("pow", x, {UnaryOp::PowScalar, a}, true, [a](const Tensor& g, const Tensor& x, const Tensor&) {
    return mul(g, mul(pow(x, a - 1.0), a));
  });
}
Tensor clamp(const Tensor& x, double lo, double hi) {
  VGG_CHECK(!(lo > hi), "clamp: lower bound ", lo, " is above upper bound ", hi);
  return unary_op("clamp", x, {UnaryOp::Clamp, lo, hi}, false, [lo, hi](const Tensor& g, const Tensor& x, const Tensor&) {
    return mul(g, unary_raw(x.detach(), {UnaryOp::InRange, lo, hi}));
  });
}
Tensor add(const Tensor& x, double s) {
  return unary_op("add_scalar", x, {UnaryOp::AddScalar, s}, false,
                  [](const Tensor& g, const Tensor&, const Tensor&) { return g; });
}
Tensor mul(const Tensor& x, double s) {
  return unary_op("mul_scalar", x, {UnaryOp::MulScalar, s}, false,
                  [s](const Tensor& g, const Tensor&, const Tensor&) { return mul(g, s); });
}

// ---- binary ---------------------------------------------------------------------------

namespace {
template <typename F>
Tensor binary_op(BinaryOp op, const Tensor& a, const Tensor& b, F grad_fn) {
  const char* name = kernels::binary_name(op);
  Tensor y = binary_raw(op, a, b);
  if (any_requires_grad({&a, &b})) {
    auto node = record(name, {a, b}, {&y});
    SavedTensor sa(a, false), sb(b, false), sy(y, true);
    Shape as = a.shape(), bs = b.shape();
    node->backward = [=](const Grads& g, const std::vector<bool>& needs) -> Grads {
      auto [ga, gb] = grad_fn(g[0], sa.unpack(name), sb.unpack(name), sy, needs);
      return {ga.defined() ? sum_to(ga, as) : ga, gb.defined() ? sum_to(gb, bs) : gb};
    };
  }
  // ∂y/∂a·ta + ∂y/∂b·tb: each partial is elementwise, so the gradient maps (before sum_to)
  // applied to the tangents broadcast to the output's shape give the two terms
  detail::forward_rule(name, {&a, &b}, y, [&](const std::vector<Tensor>& t) {
    static const std::vector<bool> only_a{true, false}, only_b{false, true};
    SavedTensor sy(fwad::detail::history_alias(y), false);
    Tensor ta, tb;
    if (t[0].defined()) ta = grad_fn(detail::fit(t[0], y.shape()), a, b, sy, only_a).first;
    if (t[1].defined()) tb = grad_fn(detail::fit(t[1], y.shape()), a, b, sy, only_b).second;
    return detail::add_terms(ta, tb);
  });
  return y;
}
using Pair = std::pair<Tensor, Tensor>;
}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  return binary_op(BinaryOp::Add, a, b, [](const Tensor& g, const Tensor&, const Tensor&, const SavedTensor&, auto&) {
    return Pair{g, g};
  });
}
Tensor sub(const Tensor& a, const Tensor& b) {
  return binary_op(BinaryOp::Sub, a, b, [](const Tensor& g, const Tensor&, const Tensor&, const SavedTensor&,
                                           const std::vector<bool>& n) { return Pair{g, n[1] ? neg(g) : Tensor()}; });
}
Tensor mul(const Tensor& a, const Tensor& b) {
  return binary_op(BinaryOp::Mul, a, b,
                   [](const Tensor& g, const Tensor& a, const Tensor& b, const SavedTensor&, const std::vector<bool>& n) {
                     return Pair{n[0] ? mul(g, b) : Tensor(), n[1] ? mul(g, a) : Tensor()};
                   });
}
Tensor div(const Tensor& a, const Tensor& b) {
  return binary_op(BinaryOp::Div, a, b,
                   [](const Tensor& g, const Tensor& a, const Tensor& b, const SavedTensor&, const std::vector<bool>& n) {
                     return Pair{n[0] ? div(g, b) : Tensor(), n[1] ? neg(div(mul(g, a), square(b))) : Tensor()};
                   });
}
Tensor pow(const Tensor& a, const Tensor& b) {
  detail::check_float("pow", a);
  return binary_op(BinaryOp::Pow, a, b,
                   [](const Tensor& g, const Tensor& a, const Tensor& b, const SavedTensor& sy, const std::vector<bool>& n) {
                     Tensor ga, gb;
                     if (n[0]) ga = mul(g, mul(b, pow(a, sub(b, ones_like(b)))));
                     if (n[1]) gb = mul(g, mul(sy.unpack("pow"), log(a)));
                     return Pair{ga, gb};
                   });
}
Tensor maximum(const Tensor& a, const Tensor& b) {
  return binary_op(BinaryOp::Maximum, a, b, [](const Tensor& g, const Tensor& a, const Tensor& b, const SavedTensor&, auto&) {
    // weight 1 where a wins, ½ on ties
    Tensor wa = add(as_float_mask(binary_raw(BinaryOp::Gt, a.detach(), b.detach()), a.dtype()),
                    mul(as_float_mask(binary_raw(BinaryOp::Eq, a.detach(), b.detach()), a.dtype()), 0.5));
    Tensor ga = mul(g, wa);
    return Pair{ga, sub(g, ga)};
  });
}
Tensor minimum(const Tensor& a, const Tensor& b) {
  return binary_op(BinaryOp::Minimum, a, b, [](const Tensor& g, const Tensor& a, const Tensor& b, const SavedTensor&, auto&) {
    Tensor wa = add(as_float_mask(binary_raw(BinaryOp::Lt, a.detach(), b.detach()), a.dtype()),
                    mul(as_float_mask(binary_raw(BinaryOp::Eq, a.detach(), b.detach()), a.dtype()), 0.5));
    Tensor ga = mul(g, wa);
    return Pair{ga, sub(g, ga)};
  });
}

Tensor eq(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary_raw(BinaryOp::Ge, a, b); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  detail::check_defined("where", cond, "condition");
  detail::check_same("where", a, b);
  VGG_CHECK(cond.dtype() == DType::Bool, "where: condition must be bool, got ", describe(cond));
  VGG_CHECK(cond.device() == a.device(), "where: device mismatch between ", describe(cond), " and ", describe(a));
  Shape out = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor ce = expand_raw(cond, out, "where"), ae = expand_raw(a, out, "where"), be = expand_raw(b, out, "where");
  Tensor y = empty(out, a.dtype(), a.device());
  get_kernel<kernels::WhereKernel>(a.device(), a.dtype())(layout(ce), static_cast<const bool*>(ce.data_ptr()),
                                                                layout(ae), ae.data_ptr(), layout(be), be.data_ptr(),
                                                                y.data_ptr());
  if (any_requires_grad({&a, &b})) {
    auto node = record("where", {a, b}, {&y});
    Tensor c = cond.detach();
    Shape as = a.shape(), bs = b.shape();
    node->backward = [c, as, bs](const Grads& g, const std::vector<bool>& n) -> Grads {
      Tensor z = zeros({}, {g[0].dtype(), g[0].device()});
      return {n[0] ? sum_to(where(c, g[0], z), as) : Tensor(), n[1] ? sum_to(where(c, z, g[0]), bs) : Tensor()};
    };
  }
  // the condition is piecewise constant: it selects between the tangents
  detail::forward_rule("where", {&a, &b}, y, [&](const std::vector<Tensor>& t) {
    Tensor z = zeros({}, {y.dtype(), y.device()});
    Tensor ta = t[0].defined() ? detail::fit(t[0], out) : z, tb = t[1].defined() ? detail::fit(t[1], out) : z;
    return detail::fit(where(cond.detach(), ta, tb), out);
  });
  return y;
}

// ---- in place -------------------------------------------------------------------------

static void check_inplace(const char* op, const Tensor& x, const Tensor& src = Tensor()) {
  detail::check_defined(op, x);
  fwad::detail::check_not_dual(op, x);
  fwad::detail::check_not_dual(op, src);
  VGG_CHECK(!(grad_enabled() && x.requires_grad()), op,
            ": in-place update of a tensor that requires grad while grad mode is on (use NoGradGuard)");
}

void add_(const Tensor& x, const Tensor& other, double alpha) {
  check_inplace("add_", x, other);
  NoGradGuard ng;
  Tensor o = alpha == 1.0 ? other : mul(other, alpha);
  copy_into(x, binary_raw(BinaryOp::Add, x, expand_raw(o, x.shape(), "add_")));
}
void mul_(const Tensor& x, double s) {
  check_inplace("mul_", x);
  copy_into(x, unary_raw(x, {UnaryOp::MulScalar, s}));
}
void copy_(const Tensor& x, const Tensor& src) {
  check_inplace("copy_", x, src);
  detail::check_defined("copy_", src);
  VGG_CHECK(x.device() == src.device(), "copy_: device mismatch between ", describe(x), " and ", describe(src));
  copy_into(x, src);
}
void zero_(const Tensor& x) {
  check_inplace("zero_", x);
  fill_(x, 0.0);
}

}  // namespace vgg::ops
