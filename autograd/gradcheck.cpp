#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

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

}  // namespace vgg
