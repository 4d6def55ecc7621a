#include "autograd/gradcheck.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "autograd/forward_ad.h"
#include "autograd/ops.h"

namespace vgg {

namespace {

std::vector<Tensor> prepare(const std::vector<Tensor>& inputs) {
  std::vector<Tensor> xs;
  for (const Tensor& t : inputs) {
    if (!t.defined() || !is_floating(t.dtype())) {
      xs.push_back(t);
      continue;
    }
    Tensor x = clone_raw(cast_raw(t.detach(), DType::F64));
    x.requires_grad_(true);
    xs.push_back(x);
  }
  return xs;
}

std::vector<double> flat(const Tensor& t) { return contiguous_raw(cast_raw(t.detach(), DType::F64)).to_vector(); }

}  // namespace

GradcheckResult gradcheck(const TensorFn& f, const std::vector<Tensor>& inputs, GradcheckOptions o) {
  std::vector<Tensor> xs = prepare(inputs);
  std::vector<size_t> diff;  // indices of differentiable inputs
  for (size_t i = 0; i < xs.size(); ++i)
    if (xs[i].defined() && xs[i].requires_grad()) diff.push_back(i);
  Tensor out = f(xs);
  VGG_CHECK(out.defined(), "gradcheck: the function returned an undefined tensor");
  VGG_CHECK(out.dtype() == DType::F64, "gradcheck: the function must return f64 for f64 inputs, got ", describe(out));
  const int64_t n_out = out.numel();

  // numerical Jacobian, column by column
  std::vector<std::vector<double>> num(diff.size());
  {
    NoGradGuard ng;
    for (size_t di = 0; di < diff.size(); ++di) {
      Tensor& x = xs[diff[di]];
      double* p = x.data<double>();
      num[di].assign(static_cast<size_t>(x.numel() * n_out), 0.0);
      for (int64_t j = 0; j < x.numel(); ++j) {
        const double orig = p[j];
        p[j] = orig + o.eps;
        std::vector<double> fp = flat(f(xs));
        p[j] = orig - o.eps;
        std::vector<double> fm = flat(f(xs));
        p[j] = orig;
        for (int64_t k = 0; k < n_out; ++k) num[di][k * x.numel() + j] = (fp[k] - fm[k]) / (2 * o.eps);
      }
    }
  }

  // analytical Jacobian, row by row
  GradcheckResult r;
  std::vector<Tensor> dins;
  for (size_t i : diff) dins.push_back(xs[i]);
  for (int64_t k = 0; k < n_out; ++k) {
    std::vector<Tensor> gs;
    if (out.requires_grad() && !dins.empty()) {
      Tensor onehot = zeros(out.shape(), {DType::F64});
      onehot.data<double>()[k] = 1.0;
      gs = grad({out}, dins, {onehot}, false, true, 1);
    }
    for (size_t di = 0; di < diff.size(); ++di) {
      const int64_t n = xs[diff[di]].numel();
      std::vector<double> a = (di < gs.size() && gs[di].defined()) ? flat(gs[di]) : std::vector<double>(n, 0.0);
      for (int64_t j = 0; j < n; ++j) {
        const double nv = num[di][k * n + j], av = a[j];
        const double err = std::abs(av - nv);
        ++r.entries;
        r.max_abs_error = std::max(r.max_abs_error, std::isnan(err) ? INFINITY : err);
        if (r.ok && !(err <= o.atol + o.rtol * std::abs(nv))) {
          std::ostringstream os;
          os << "Jacobian mismatch for input " << diff[di] << ", output element " << k << ", input element " << j
             << ": analytic " << av << " vs numeric " << nv;
          r.ok = false;
          r.message = os.str();
        }
      }
    }
  }
  return r;
}

GradcheckResult gradgradcheck(const TensorFn& f, const std::vector<Tensor>& inputs, GradcheckOptions o) {
  // a fixed random cotangent v; h(x, v) = concat_i vec(d<f(x), v>/dx_i)
  std::vector<Tensor> xs = prepare(inputs);
  Tensor out = f(xs);
  Generator gen(1234);
  Tensor v = randn(out.shape(), {DType::F64}, &gen);
  std::vector<Tensor> all = inputs;
  all.push_back(v);
  const size_t nin = inputs.size();
  TensorFn h = [f, nin](const std::vector<Tensor>& args) {
    std::vector<Tensor> x(args.begin(), args.begin() + static_cast<int64_t>(nin));
    const Tensor& cot = args[nin];
    const bool outer = grad_enabled();  // off while gradcheck takes finite differences of h
    GradModeGuard on(true);
    Tensor y = f(x);
    std::vector<Tensor> dins;
    for (const Tensor& t : x)
      if (t.defined() && t.requires_grad()) dins.push_back(t);
    std::vector<Tensor> parts;
    if (!y.requires_grad()) return zeros({1}, {DType::F64});
    std::vector<Tensor> gs = grad({y}, dins, {cot}, /*create_graph=*/outer, true, 1);
    for (size_t i = 0; i < gs.size(); ++i)
      parts.push_back(gs[i].defined() ? ops::reshape(gs[i], {-1}) : zeros({dins[i].numel()}, {DType::F64}));
    return ops::cat(parts, 0);
  };
  return gradcheck(h, all, o);
}

namespace {

// The same values in a strided layout (every other element of a buffer twice as large).
Tensor strided_copy(const Tensor& t) {
  Shape big = t.shape();
  big.push_back(2);
  Tensor buf = zeros(big, {t.dtype(), t.device()});
  Strides st = contiguous_strides(t.shape());
  for (auto& s : st) s *= 2;
  Tensor v = as_strided_view(buf, t.shape(), st, 1);
  copy_into(v, t);
  return v;
}

}  // namespace

GradcheckResult jvpcheck(const TensorFn& f, const std::vector<Tensor>& inputs, JvpcheckOptions o) {
  std::vector<Tensor> xs;  // f64 copies without history
  for (const Tensor& t : inputs)
    xs.push_back(t.defined() && is_floating(t.dtype()) ? clone_raw(cast_raw(t.detach(), DType::F64)) : t);
  Generator gen(9001 + o.seed);
  std::vector<Tensor> v(xs.size());
  std::vector<size_t> diff;
  for (size_t i = 0; i < xs.size(); ++i)
    if (xs[i].defined() && is_floating(xs[i].dtype())) {
      v[i] = randn(xs[i].shape(), {DType::F64}, &gen);
      diff.push_back(i);
    }
  GradcheckResult r;
  auto fail = [&r](const std::string& m) {
    if (r.ok) r.message = m;
    r.ok = false;
  };
  Tensor y_plain;
  {
    NoGradGuard ng;
    y_plain = f(xs);
  }
  VGG_CHECK(y_plain.defined(), "jvpcheck: the function returned an undefined tensor");
  VGG_CHECK(y_plain.dtype() == DType::F64, "jvpcheck: the function must return f64 for f64 inputs, got ",
            describe(y_plain));
  auto jvp_along = [&](const std::vector<Tensor>& dir, Tensor* primal) {
    NoGradGuard ng;
    auto [ys, ts] = fwad::jvp([&f](const std::vector<Tensor>& in) { return std::vector<Tensor>{f(in)}; }, xs, dir);
    if (primal) *primal = ys[0];
    return ts[0];
  };

  if (o.central) {
    std::vector<std::pair<std::string, std::vector<Tensor>>> dirs;
    std::vector<Tensor> all(v.size());
    for (size_t i : diff) all[i] = strided_copy(v[i]);
    dirs.emplace_back("all inputs", all);
    for (size_t i : diff) {
      if (diff.size() < 2) break;
      std::vector<Tensor> one(v.size());
      one[i] = v[i];
      dirs.emplace_back("input " + std::to_string(i), one);
    }
    for (auto& [what, dir] : dirs) {
      Tensor y;
      Tensor jv = jvp_along(dir, &y);
      std::vector<double> yp = flat(y_plain), yd = flat(y), a = flat(jv);
      if (yp != yd) fail("the primal computed under forward mode differs from f(x) (tangents along " + what + ")");
      std::vector<Tensor> xp = xs, xm = xs;
      {
        NoGradGuard ng;
        for (size_t i = 0; i < xs.size(); ++i)
          if (dir[i].defined()) {
            xp[i] = ops::add(xs[i], ops::mul(dir[i], o.eps));
            xm[i] = ops::sub(xs[i], ops::mul(dir[i], o.eps));
          }
        std::vector<double> fp = flat(f(xp)), fm = flat(f(xm));
        for (size_t k = 0; k < a.size(); ++k) {
          const double nv = (fp[k] - fm[k]) / (2 * o.eps), err = std::abs(a[k] - nv);
          ++r.entries;
          r.max_abs_error = std::max(r.max_abs_error, std::isnan(err) ? INFINITY : err);
          if (!(err <= o.atol + o.rtol * std::abs(nv))) {
            std::ostringstream os;
            os << "JVP mismatch along " << what << ", output element " << k << ": forward " << a[k] << " vs numeric "
               << nv;
            fail(os.str());
          }
        }
      }
    }
  }

  if (o.adjoint && !diff.empty()) {
    Tensor jv = jvp_along(v, nullptr);
    std::vector<Tensor> leaves = xs, dins;
    for (size_t i : diff) {
      leaves[i] = clone_raw(xs[i]);
      leaves[i].requires_grad_(true);
      dins.push_back(leaves[i]);
    }
    GradModeGuard on(true);
    Tensor y = f(leaves);
    Tensor u = randn(y.shape(), {DType::F64}, &gen);
    const double lhs = ops::sum(ops::mul(u, jv.detach())).item();
    double rhs = 0;
    if (y.requires_grad()) {
      std::vector<Tensor> gs = grad({y}, dins, {u}, false, /*allow_unused=*/true);
      for (size_t j = 0; j < gs.size(); ++j)
        if (gs[j].defined()) rhs += ops::sum(ops::mul(gs[j], v[diff[j]])).item();
    }
    const double err = std::abs(lhs - rhs);
    ++r.entries;
    r.max_abs_error = std::max(r.max_abs_error, std::isnan(err) ? INFINITY : err);
    if (!(err <= o.adjoint_tol * (1 + std::abs(lhs)))) {
      std::ostringstream os;
      os << std::setprecision(17) << "adjoint identity fails: <u, J v> = " << lhs << " but <J^T u, v> = " << rhs;
      fail(os.str());
    }
  }
  return r;
}

}  // namespace vgg
