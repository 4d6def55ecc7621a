// CPU elementwise kernels: unary, binary, where, copy/cast, fill.
#include <cmath>
#include <cstring>

#include "kernels/cpu/loops.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/elementwise.h"
#include "tensor/dispatch.h"
#include "tensor/error.h"

namespace vgg::kernels {

const char* unary_name(UnaryOp op) {
  static const char* names[] = {"neg",  "abs",     "exp",  "log",  "sqrt",     "rsqrt",     "square", "sin",
                                "cos",  "tanh",    "sigmoid", "silu", "relu", "gelu",      "gelu_tanh", "erf",
                                "sign", "reciprocal", "pow", "clamp", "add_scalar", "mul_scalar", "step", "in_range",
                                "gelu_tanh_grad"};
  return names[static_cast<int>(op)];
}
const char* binary_name(BinaryOp op) {
  static const char* names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum", "gelu_tanh_bwd",
                                "eq",  "ne",  "lt",  "le",  "gt",  "ge"};
  return names[static_cast<int>(op)];
}

namespace cpu {
namespace {

template <typename T>
using C = std::conditional_t<std::is_integral_v<T>, double, typename compute_type<T>::type>;

template <typename T, typename F>
void unary_loop(const Layout& xl, const void* xp, void* yp, F f) {
  Layout yl;
  yl.ndim = xl.ndim;
  int64_t acc = 1;
  for (int d = xl.ndim - 1; d >= 0; --d) {
    yl.shape[d] = xl.shape[d];
    yl.stride[d] = acc;
    acc *= xl.shape[d];
  }
  const Layout* ops[2] = {&yl, &xl};
  auto it = make_iter<2>(xl, ops);
  T* y = static_cast<T*>(yp);
  const T* x = static_cast<const T*>(xp);
  for_each_row<2>(it, [&](const int64_t* off, int64_t n, const int64_t* s) {
    T* yr = y + off[0];
    const T* xr = x + off[1];
    if (s[0] == 1 && s[1] == 1) {
      for (int64_t i = 0; i < n; ++i) yr[i] = store<T>(f(static_cast<C<T>>(load(xr[i]))));
    } else {
      for (int64_t i = 0; i < n; ++i) yr[i * s[0]] = store<T>(f(static_cast<C<T>>(load(xr[i * s[1]]))));
    }
  });
}

template <typename T>
void unary_kernel(const UnaryParams& p, const Layout& xl, const void* xp, void* yp) {
  using V = C<T>;
  const V a = static_cast<V>(p.a), b = static_cast<V>(p.b);
  const V half = V(0.5), one = V(1);
  switch (p.op) {
    case UnaryOp::Neg: return unary_loop<T>(xl, xp, yp, [](V x) { return -x; });
    case UnaryOp::Abs: return unary_loop<T>(xl, xp, yp, [](V x) { return std::abs(x); });
    case UnaryOp::Exp: return unary_loop<T>(xl, xp, yp, [](V x) { return std::exp(x); });
    case UnaryOp::Log: return unary_loop<T>(xl, xp, yp, [](V x) { return std::log(x); });
    case UnaryOp::Sqrt: return unary_loop<T>(xl, xp, yp, [](V x) { return std::sqrt(x); });
    case UnaryOp::Rsqrt: return unary_loop<T>(xl, xp, yp, [one](V x) { return one / std::sqrt(x); });
    case UnaryOp::Square: return unary_loop<T>(xl, xp, yp, [](V x) { return x * x; });
    case UnaryOp::Sin: return unary_loop<T>(xl, xp, yp, [](V x) { return std::sin(x); });
    case UnaryOp::Cos: return unary_loop<T>(xl, xp, yp, [](V x) { return std::cos(x); });
    case UnaryOp::Tanh: return unary_loop<T>(xl, xp, yp, [](V x) { return std::tanh(x); });
    case UnaryOp::Sigmoid: return unary_loop<T>(xl, xp, yp, [one](V x) { return one / (one + std::exp(-x)); });
    case UnaryOp::Silu: return unary_loop<T>(xl, xp, yp, [one](V x) { return x / (one + std::exp(-x)); });
    case UnaryOp::Relu: return unary_loop<T>(xl, xp, yp, [](V x) { return x > V(0) ? x : V(0); });
    case UnaryOp::GeluErf:
      return unary_loop<T>(xl, xp, yp, [=](V x) { return half * x * (one + std::erf(x * V(M_SQRT1_2))); });
    case UnaryOp::GeluTanh: {
      // ½x(1 + tanh u) = x·σ(2u), u = k(x + c x³): one (vectorisable) exp, no cancellation
      const V k2 = V(2 * 0.7978845608028654), c = V(0.044715);  // 2·sqrt(2/pi)
      return unary_loop<T>(xl, xp, yp, [=](V x) { return x / (one + vexp(-k2 * (x + c * x * x * x))); });
    }
    case UnaryOp::GeluTanhGrad: {
      // d/dx x·σ(2u) = s + x·s(1 − s)·2u',  s = σ(2u), 2u' = 2k(1 + 3c x²)
      const V k2 = V(2 * 0.7978845608028654), c = V(0.044715), c3 = V(3 * 0.044715);
      return unary_loop<T>(xl, xp, yp, [=](V x) {
        const V s = one / (one + vexp(-k2 * (x + c * x * x * x)));
        return s + x * s * (one - s) * k2 * (one + c3 * x * x);
      });
    }
    case UnaryOp::Erf: return unary_loop<T>(xl, xp, yp, [](V x) { return std::erf(x); });
    case UnaryOp::Sign: return unary_loop<T>(xl, xp, yp, [](V x) { return V((x > V(0)) - (x < V(0))); });
    case UnaryOp::Reciprocal: return unary_loop<T>(xl, xp, yp, [one](V x) { return one / x; });
    case UnaryOp::PowScalar:
      if (p.a == 2.0) return unary_loop<T>(xl, xp, yp, [](V x) { return x * x; });
      return unary_loop<T>(xl, xp, yp, [a](V x) { return std::pow(x, a); });
    case UnaryOp::Clamp:
      return unary_loop<T>(xl, xp, yp, [a, b](V x) { return x < a ? a : (x > b ? b : x); });
    case UnaryOp::AddScalar: return unary_loop<T>(xl, xp, yp, [a](V x) { return x + a; });
    case UnaryOp::MulScalar: return unary_loop<T>(xl, xp, yp, [a](V x) { return x * a; });
    case UnaryOp::Step: return unary_loop<T>(xl, xp, yp, [](V x) { return x > V(0) ? V(1) : V(0); });
    case UnaryOp::InRange: return unary_loop<T>(xl, xp, yp, [a, b](V x) { return (x >= a && x <= b) ? V(1) : V(0); });
  }
}

template <typename T, typename O, typename F>
void binary_loop(const Layout& al, const void* ap, const Layout& bl, const void* bp, void* outp, F f) {
  Layout ol;
  ol.ndim = al.ndim;
  int64_t acc = 1;
  for (int d = al.ndim - 1; d >= 0; --d) {
    ol.shape[d] = al.shape[d];
    ol.stride[d] = acc;
    acc *= al.shape[d];
  }
  const Layout* ops[3] = {&ol, &al, &bl};
  auto it = make_iter<3>(al, ops);
  O* o = static_cast<O*>(outp);
  const T* a = static_cast<const T*>(ap);
  const T* b = static_cast<const T*>(bp);
  for_each_row<3>(it, [&](const int64_t* off, int64_t n, const int64_t* s) {
    O* orow = o + off[0];
    const T* ar = a + off[1];
    const T* br = b + off[2];
    if (s[0] == 1 && s[1] == 1 && s[2] == 1) {
      for (int64_t i = 0; i < n; ++i) orow[i] = store<O>(f(static_cast<C<T>>(load(ar[i])), static_cast<C<T>>(load(br[i]))));
    } else if (s[0] == 1 && s[1] == 1 && s[2] == 0) {
      const C<T> bv = static_cast<C<T>>(load(br[0]));
      for (int64_t i = 0; i < n; ++i) orow[i] = store<O>(f(static_cast<C<T>>(load(ar[i])), bv));
    } else {
      for (int64_t i = 0; i < n; ++i)
        orow[i * s[0]] = store<O>(f(static_cast<C<T>>(load(ar[i * s[1]])), static_cast<C<T>>(load(br[i * s[2]]))));
    }
  });
}

template <typename T>
void binary_kernel(BinaryOp op, const Layout& al, const void* ap, const Layout& bl, const void* bp, void* out) {
  using V = C<T>;
  switch (op) {
    case BinaryOp::Add: return binary_loop<T, T>(al, ap, bl, bp, out, [](V x, V y) { return x + y; });
    case BinaryOp::Sub: return binary_loop<T, T>(al, ap, bl, bp, out, [](V x, V y) { return x - y; });
    case BinaryOp::Mul: return binary_loop<T, T>(al, ap, bl, bp, out, [](V x, V y) { return x * y; });
    case BinaryOp::Div: return binary_loop<T, T>(al, ap, bl, bp, out, [](V x, V y) { return x / y; });
    case BinaryOp::Pow: return binary_loop<T, T>(al, ap, bl, bp, out, [](V x, V y) { return std::pow(x, y); });
    case BinaryOp::Maximum:
      return binary_loop<T, T>(al, ap, bl, bp, out, [](V x, V y) { return (x != x || x > y) ? x : y; });
    case BinaryOp::Minimum:
      return binary_loop<T, T>(al, ap, bl, bp, out, [](V x, V y) { return (x != x || x < y) ? x : y; });
    case BinaryOp::GeluTanhBwd:
      return binary_loop<T, T>(al, ap, bl, bp, out, [](V g, V x) {
        const V one = V(1), k2 = V(2 * 0.7978845608028654), c = V(0.044715), c3 = V(3 * 0.044715);
        const V s = one / (one + std::exp(-k2 * (x + c * x * x * x)));
        return g * (s + x * s * (one - s) * k2 * (one + c3 * x * x));
      });
    case BinaryOp::Eq: return binary_loop<T, bool>(al, ap, bl, bp, out, [](V x, V y) { return x == y; });
    case BinaryOp::Ne: return binary_loop<T, bool>(al, ap, bl, bp, out, [](V x, V y) { return x != y; });
    case BinaryOp::Lt: return binary_loop<T, bool>(al, ap, bl, bp, out, [](V x, V y) { return x < y; });
    case BinaryOp::Le: return binary_loop<T, bool>(al, ap, bl, bp, out, [](V x, V y) { return x <= y; });
    case BinaryOp::Gt: return binary_loop<T, bool>(al, ap, bl, bp, out, [](V x, V y) { return x > y; });
    case BinaryOp::Ge: return binary_loop<T, bool>(al, ap, bl, bp, out, [](V x, V y) { return x >= y; });
  }
}

template <typename T>
void where_kernel(const Layout& cl, const bool* cp, const Layout& al, const void* ap, const Layout& bl, const void* bp,
                  void* outp) {
  Layout ol;
  ol.ndim = al.ndim;
  int64_t acc = 1;
  for (int d = al.ndim - 1; d >= 0; --d) {
    ol.shape[d] = al.shape[d];
    ol.stride[d] = acc;
    acc *= al.shape[d];
  }
  const Layout* ops[4] = {&ol, &cl, &al, &bl};
  auto it = make_iter<4>(al, ops);
  T* o = static_cast<T*>(outp);
  const T* a = static_cast<const T*>(ap);
  const T* b = static_cast<const T*>(bp);
  for_each_row<4>(it, [&](const int64_t* off, int64_t n, const int64_t* s) {
    for (int64_t i = 0; i < n; ++i)
      o[off[0] + i * s[0]] = cp[off[1] + i * s[1]] ? a[off[2] + i * s[2]] : b[off[3] + i * s[3]];
  });
}

template <typename D, typename S>
void copy_typed(const Layout& dl, void* dp, const Layout& sl, const void* sp) {
  const Layout* ops[2] = {&dl, &sl};
  auto it = make_iter<2>(dl, ops);
  D* d = static_cast<D*>(dp);
  const S* s = static_cast<const S*>(sp);
  for_each_row<2>(it, [&](const int64_t* off, int64_t n, const int64_t* st) {
    D* dr = d + off[0];
    const S* sr = s + off[1];
    if constexpr (std::is_same_v<D, S>) {
      if (st[0] == 1 && st[1] == 1) {
        std::memcpy(dr, sr, n * sizeof(D));
        return;
      }
      for (int64_t i = 0; i < n; ++i) dr[i * st[0]] = sr[i * st[1]];
    } else {
      for (int64_t i = 0; i < n; ++i) {
        auto v = load(sr[i * st[1]]);
        if constexpr (std::is_same_v<D, bool>)
          dr[i * st[0]] = v != decltype(v)(0);
        else
          dr[i * st[0]] = store<D>(v);
      }
    }
  });
}

template <typename D>
void copy_kernel(const Layout& dl, void* dp, const Layout& sl, const void* sp, DType st) {
  switch (st) {
    case DType::F32: return copy_typed<D, float>(dl, dp, sl, sp);
    case DType::F64: return copy_typed<D, double>(dl, dp, sl, sp);
    case DType::BF16: return copy_typed<D, bf16>(dl, dp, sl, sp);
    case DType::I32: return copy_typed<D, int32_t>(dl, dp, sl, sp);
    case DType::I64: return copy_typed<D, int64_t>(dl, dp, sl, sp);
    case DType::Bool: return copy_typed<D, bool>(dl, dp, sl, sp);
  }
}

template <typename T>
void fill_kernel(int64_t n, void* out, double v) {
  T* o = static_cast<T*>(out);
  T val;
  if constexpr (std::is_same_v<T, bool>)
    val = v != 0;
  else
    val = store<T>(static_cast<typename compute_type<T>::type>(v));
  parallel_for(n, 1, [&](int64_t i) { o[i] = val; });
}

}  // namespace

VGG_REGISTER_KERNEL(UnaryKernel, CPU, F32, (&unary_kernel<float>));
VGG_REGISTER_KERNEL(UnaryKernel, CPU, F64, (&unary_kernel<double>));
VGG_REGISTER_KERNEL(UnaryKernel, CPU, BF16, (&unary_kernel<bf16>));
VGG_REGISTER_KERNEL(UnaryKernel, CPU, I32, (&unary_kernel<int32_t>));
VGG_REGISTER_KERNEL(UnaryKernel, CPU, I64, (&unary_kernel<int64_t>));
VGG_REGISTER_KERNEL(BinaryKernel, CPU, F32, (&binary_kernel<float>));
VGG_REGISTER_KERNEL(BinaryKernel, CPU, F64, (&binary_kernel<double>));
VGG_REGISTER_KERNEL(BinaryKernel, CPU, BF16, (&binary_kernel<bf16>));
VGG_REGISTER_KERNEL(BinaryKernel, CPU, I32, (&binary_kernel<int32_t>));
VGG_REGISTER_KERNEL(BinaryKernel, CPU, I64, (&binary_kernel<int64_t>));
VGG_REGISTER_KERNEL(WhereKernel, CPU, F32, (&where_kernel<float>));
VGG_REGISTER_KERNEL(WhereKernel, CPU, F64, (&where_kernel<double>));
VGG_REGISTER_KERNEL(WhereKernel, CPU, BF16, (&where_kernel<bf16>));
VGG_REGISTER_KERNEL(WhereKernel, CPU, I32, (&where_kernel<int32_t>));
VGG_REGISTER_KERNEL(WhereKernel, CPU, I64, (&where_kernel<int64_t>));
VGG_REGISTER_KERNEL(WhereKernel, CPU, Bool, (&where_kernel<bool>));
VGG_REGISTER_KERNEL(CopyKernel, CPU, F32, (&copy_kernel<float>));
VGG_REGISTER_KERNEL(CopyKernel, CPU, F64, (&copy_kernel<double>));
VGG_REGISTER_KERNEL(CopyKernel, CPU, BF16, (&copy_kernel<bf16>));
VGG_REGISTER_KERNEL(CopyKernel, CPU, I32, (&copy_kernel<int32_t>));
VGG_REGISTER_KERNEL(CopyKernel, CPU, I64, (&copy_kernel<int64_t>));
VGG_REGISTER_KERNEL(CopyKernel, CPU, Bool, (&copy_kernel<bool>));
VGG_REGISTER_KERNEL(FillKernel, CPU, F32, (&fill_kernel<float>));
VGG_REGISTER_KERNEL(FillKernel, CPU, F64, (&fill_kernel<double>));
VGG_REGISTER_KERNEL(FillKernel, CPU, BF16, (&fill_kernel<bf16>));
VGG_REGISTER_KERNEL(FillKernel, CPU, I32, (&fill_kernel<int32_t>));
VGG_REGISTER_KERNEL(FillKernel, CPU, I64, (&fill_kernel<int64_t>));
VGG_REGISTER_KERNEL(FillKernel, CPU, Bool, (&fill_kernel<bool>));

}  // namespace cpu
}  // namespace vgg::kernels
