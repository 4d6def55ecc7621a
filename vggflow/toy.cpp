#include "vggflow/toy.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numbers>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/optim.h"
#include "tensor/error.h"
#include "tensor/factory.h"
#include "vggflow/methods/adjoint.h"
#include "vggflow/methods/method.h"

namespace vgg::flow::toy {

namespace m = methods;

namespace {
constexpr int kFreqs = 3;
const nn::LayerOptions kF64{DType::F64, Device::cpu(), nullptr};
nn::LayerOptions with(Generator* g) {
  nn::LayerOptions o = kF64;
  o.gen = g;
  return o;
}
}  // namespace

VelocityMLP::VelocityMLP(int64_t width, uint64_t seed, double out_scale) {
  VGG_CHECK(width >= 1, "VelocityMLP: width must be >= 1, got ", width);
  Generator g(seed);
  l0_ = std::make_shared<nn::Linear>(3 + 2 * kFreqs, width, true, with(&g));
  l1_ = std::make_shared<nn::Linear>(width, width, true, with(&g));
  l2_ = std::make_shared<nn::Linear>(width, width, true, with(&g));
  l3_ = std::make_shared<nn::Linear>(width, 2, true, with(&g));
  register_module("l0", l0_);
  register_module("l1", l1_);
  register_module("l2", l2_);
  register_module("l3", l3_);
  NoGradGuard ng;
  ops::mul_(l3_->weight, out_scale);
  ops::mul_(l3_->bias, out_scale);
}

Tensor VelocityMLP::forward(const Tensor& x, const Tensor& sigma) const {
  VGG_CHECK(x.dim() == 2 && x.size(1) == 2 && sigma.dim() == 1 && sigma.size(0) == x.size(0),
            "VelocityMLP: need x [B, 2] and sigma [B], got ", describe(x), " and ", describe(sigma));
  Tensor s = ops::unsqueeze(ops::to(sigma, DType::F64), 1);
  std::vector<Tensor> f{ops::to(x, DType::F64), s};
  for (int k = 1; k <= kFreqs; ++k) {
    Tensor a = ops::mul(s, k * std::numbers::pi);
    f.push_back(ops::sin(a));
    f.push_back(ops::cos(a));
  }
  Tensor h = ops::silu(l0_->forward(ops::cat(f, 1)));
  h = ops::silu(l1_->forward(h));
  h = ops::silu(l2_->forward(h));
  return l3_->forward(h);
}

Field nu_field(std::shared_ptr<const VelocityMLP> net, double beta) {
  return [net, beta](const Tensor& x, const Tensor& s) { return ops::mul(net->forward(x, s), 1.0 / beta); };
}

Field VelocityMLP::field() const {
  const VelocityMLP* self = this;
  return [self](const Tensor& x, const Tensor& s) { return self->forward(x, s); };
}

Tensor sample_mixture(int64_t n, Generator& gen) {
  Tensor z = randn({n, 2}, opts(DType::F64), &gen);
  std::vector<double> u = rand({n}, opts(DType::F64), &gen).to_vector(), zv = z.to_vector(), out(static_cast<size_t>(2 * n));
  for (size_t i = 0; i < u.size(); ++i) {
    const int k = std::min(3, static_cast<int>(u[i] * 4));
    out[2 * i] = (k & 1 ? 1.5 : -1.5) + 0.35 * zv[2 * i];
    out[2 * i + 1] = (k & 2 ? 1.5 : -1.5) + 0.35 * zv[2 * i + 1];
  }
  return from_vector(out, {n, 2}, opts(DType::F64));
}

std::shared_ptr<VelocityMLP> train_base(int64_t steps, int64_t batch, uint64_t seed, std::vector<double>* losses) {
  VGG_CHECK(steps >= 1 && batch >= 1, "toy train_base: need steps and batch >= 1, got ", steps, ", ", batch);
  auto net = std::make_shared<VelocityMLP>(64, seed);
  nn::ParamGroup g;
  g.name = "base", g.params = net->parameters(), g.lr = 2e-3, g.weight_decay = 0;
  nn::AdamW opt({g});
  const nn::LRSchedule sched = nn::LRSchedule::cosine(0, steps);
  for (int64_t s = 0; s < steps; ++s) {
    Generator gen(seed, 1000 + static_cast<uint64_t>(s));
    Tensor x1 = sample_mixture(batch, gen), x0 = randn({batch, 2}, opts(DType::F64), &gen);
    Tensor sig = rand({batch}, opts(DType::F64), &gen);
    Tensor sc = ops::unsqueeze(sig, 1);
    Tensor xs = ops::add(ops::mul(x0, sc), ops::mul(x1, ops::add(ops::neg(sc), 1.0)));  // σ·noise + (1−σ)·data
    Tensor loss = ops::mean(ops::square(ops::sub(net->forward(xs, sig), ops::sub(x0, x1))));  // u = noise − data
    opt.zero_grad();
    backward(loss);
    nn::apply_schedule(opt, sched, s);
    opt.step();
    if (losses) losses->push_back(loss.item());
  }
  net->requires_grad_(false);
  return net;
}

std::vector<float> toy_sigmas(int64_t steps) {
  VGG_CHECK(steps >= 1, "toy_sigmas: steps must be >= 1, got ", steps);
  std::vector<float> s;
  for (int64_t k = 0; k <= steps; ++k) s.push_back(static_cast<float>(1.0 - static_cast<double>(k) / static_cast<double>(steps)));
  return s;
}

std::vector<Tensor> euler_rollout(const Field& u, const Tensor& x0, const std::vector<float>& sigmas) {
  NoGradGuard ng;
  std::vector<Tensor> xs{x0};
  for (size_t k = 0; k + 1 < sigmas.size(); ++k) {
    Tensor uk = u(xs.back(), full({x0.size(0)}, sigmas[k], opts(DType::F64)));
    xs.push_back(ops::add(xs.back(), ops::mul(uk, static_cast<double>(sigmas[k + 1]) - sigmas[k])));
  }
  return xs;
}

namespace {
class LinearReward : public Reward {
 public:
  std::string name() const override { return "linear"; }
  Tensor operator()(const Tensor& x) const override {
    VGG_CHECK(x.dim() == 2 && x.size(1) == 2, "linear reward: need x [B, 2], got ", describe(x));
    const double c = std::sqrt(0.5);
    return ops::mul(ops::sum(x, {1}), c);
  }
};
}  // namespace

std::unique_ptr<Reward> linear_reward() { return std::make_unique<LinearReward>(); }

namespace {
class BumpReward : public Reward {
 public:
  std::string name() const override { return "bump"; }
  Tensor operator()(const Tensor& x) const override {
    VGG_CHECK(x.dim() == 2 && x.size(1) == 2, "bump reward: need x [B, 2], got ", describe(x));
    const Tensor d = ops::sub(x, full({1, 2}, 1.5, opts(x.dtype(), x.device())));
    return ops::exp(ops::mul(ops::sum(ops::square(d), {1}), -0.5));
  }
};
}  // namespace

std::unique_ptr<Reward> bump_reward() { return std::make_unique<BumpReward>(); }

std::unique_ptr<Reward> make_toy_reward(const std::string& name) {
  if (name == "linear") return linear_reward();
  if (name == "bump") return bump_reward();
  VGG_FAIL("unknown toy reward '", name, "' (linear or bump)");
}

CostateComparison compare_to_costate(const ToyResult& vggflow, const ToyResult& pmp, const VelocityMLP& base,
                                     const Reward& reward, const Tensor& noise, const ToyOptions& o) {
  VGG_CHECK(vggflow.nu_net && vggflow.theta && pmp.theta, "compare_to_costate: need a VGG-Flow run (with its nu) and a PMP run");
  const std::vector<float> sig = toy_sigmas(o.sample_steps);
  const std::vector<Tensor> xs = euler_rollout(pmp.theta->field(), noise, sig);
  const Tensor terminal = ops::neg(m::reward_gradient(reward, xs.back()).grad);
  const std::vector<Tensor> a = m::pmp_costate(pmp.theta->field(), base.field(), xs, sig, terminal, o.beta, 0);
  const Field g = m::value_gradient_field(vggflow.theta->field(), nu_field(vggflow.nu_net, o.beta), reward, o.eta, 1e300);
  CostateComparison c;
  const int64_t B = noise.size(0);
  for (size_t k = 0; k < xs.size(); ++k) {
    const Tensor gk = g(xs[k], full({B}, sig[k], opts(DType::F64))).detach();
    const std::vector<double> gv = gk.to_vector(), av = a[k].to_vector();
    double cs = 0, ratio = 0;
    for (int64_t i = 0; i < B; ++i) {
      const auto j = static_cast<size_t>(2 * i);
      const double dot = gv[j] * av[j] + gv[j + 1] * av[j + 1];
      const double ng = std::hypot(gv[j], gv[j + 1]), na = std::hypot(av[j], av[j + 1]);
      cs += dot / std::max(ng * na, 1e-300);
      ratio += ng / std::max(na, 1e-300);
    }
    c.cosine.push_back(cs / static_cast<double>(B));
    c.norm_ratio.push_back(ratio / static_cast<double>(B));
    if (k >= 1) c.mean_cosine += c.cosine.back() / static_cast<double>(xs.size() - 1);
  }
  return c;
}

Tensor importance_resample(const Tensor& pool, const Reward& r, double beta, int64_t n, Generator& gen) {
  NoGradGuard ng;
  std::vector<double> rv = r(pool).to_vector(), pv = pool.to_vector();
  const double mx = *std::max_element(rv.begin(), rv.end());
  std::vector<double> cdf(rv.size());
  double acc = 0;
  for (size_t i = 0; i < rv.size(); ++i) cdf[i] = acc += std::exp(beta * (rv[i] - mx));
  std::vector<double> u = rand({n}, opts(DType::F64), &gen).to_vector(), out;
  for (double ui : u) {
    const auto i = std::min(cdf.size() - 1, static_cast<size_t>(std::lower_bound(cdf.begin(), cdf.end(), ui * acc) - cdf.begin()));
    out.push_back(pv[2 * i]), out.push_back(pv[2 * i + 1]);
  }
  return from_vector(out, {n, 2}, opts(DType::F64));
}

double mmd(const Tensor& a, const Tensor& b) {
  std::vector<double> av = ops::to(a, DType::F64).to_vector(), bv = ops::to(b, DType::F64).to_vector();
  const size_t na = av.size() / 2, nb = bv.size() / 2;
  VGG_CHECK(na > 0 && nb > 0, "mmd: empty sample set");
  const double bw[] = {0.1, 0.3, 1.0, 3.0};
  auto kmean = [&](const std::vector<double>& p, size_t np, const std::vector<double>& q, size_t nq) {
    double s = 0;
    for (size_t i = 0; i < np; ++i)
      for (size_t j = 0; j < nq; ++j) {
        const double dx = p[2 * i] - q[2 * j], dy = p[2 * i + 1] - q[2 * j + 1], d2 = dx * dx + dy * dy;
        for (double h : bw) s += std::exp(-d2 / (2 * h * h));
      }
    return s / static_cast<double>(np * nq);
  };
  const double m2 = kmean(av, na, av, na) + kmean(bv, nb, bv, nb) - 2 * kmean(av, na, bv, nb);
  return std::sqrt(std::max(0.0, m2));
}

double sliced_w2(const Tensor& a, const Tensor& b, int64_t projections, Generator& gen) {
  std::vector<double> av = ops::to(a, DType::F64).to_vector(), bv = ops::to(b, DType::F64).to_vector();
  VGG_CHECK(av.size() == bv.size() && !av.empty(), "sliced_w2: need two non-empty sets of equal size, got ",
            av.size() / 2, " and ", bv.size() / 2);
  std::vector<double> th = rand({projections}, opts(DType::F64), &gen).to_vector();
  const size_t n = av.size() / 2;
  double s = 0;
  std::vector<double> pa(n), pb(n);
  for (double t : th) {
    const double c = std::cos(2 * std::numbers::pi * t), d = std::sin(2 * std::numbers::pi * t);
    for (size_t i = 0; i < n; ++i) pa[i] = c * av[2 * i] + d * av[2 * i + 1], pb[i] = c * bv[2 * i] + d * bv[2 * i + 1];
    std::sort(pa.begin(), pa.end());
    std::sort(pb.begin(), pb.end());
    for (size_t i = 0; i < n; ++i) s += (pa[i] - pb[i]) * (pa[i] - pb[i]);
  }
  return std::sqrt(s / static_cast<double>(n * th.size()));
}

namespace {

// The toy's methods over its MLP fields, behind the trainers' one interface (methods/method.h).
// ReFL: x̂₁ from a random step among the last quarter; DRaFT-1: the last Euler step.
class ToyMethod final : public m::Method {
 public:
  ToyMethod(const ToyOptions& o, std::shared_ptr<VelocityMLP> theta, std::shared_ptr<VelocityMLP> nu_net,
            const VelocityMLP& base, const Reward& reward)
      : o_(o), theta_(std::move(theta)), nu_net_(std::move(nu_net)), reward_(reward), sig_(toy_sigmas(o.sample_steps)) {
    const double beta = o.beta;
    nu_ = nu_field(nu_net_, beta);
    f_ = m::Fields{theta_->field(), theta_->field(), base.field()};
    vo_.beta = beta, vo_.alpha = o.alpha, vo_.eta = o.eta, vo_.bins = 2;
    vo_.derivatives = o.method == "vggflow-exact" ? m::Derivatives::Exact : m::Derivatives::FiniteDifference;
    ao_.beta = beta, ao_.bins = 2, ao_.times = 4;
  }
  std::string name() const override { return o_.method; }
  bool learns_value() const { return o_.method == "vggflow" || o_.method == "vggflow-exact"; }
  std::vector<nn::ParamGroup> extra_groups() const override {
    if (!learns_value()) return {};
    nn::ParamGroup g;
    g.name = "phi", g.params = nu_net_->parameters(), g.lr = o_.lr_value, g.weight_decay = 0, g.max_grad_norm = 1.0;
    return {g};
  }
  Tensor loss(int64_t batch, Generator& gen, nlohmann::json&) override {
    const std::string& meth = o_.method;
    const int64_t N = o_.sample_steps;
    Tensor x0 = randn({batch, 2}, opts(DType::F64), &gen);
    if (meth == "am") return m::am_loss(f_, reward_, x0, sig_, ao_, gen, nullptr);
    if (meth == "refl" || meth == "draft") {
      const double u = rand({1}, opts(DType::F64), &gen).item();
      const int64_t lo = (3 * N + 3) / 4;
      const int64_t k = meth == "draft" ? N - 1 : std::min(N - 1, lo + static_cast<int64_t>(u * static_cast<double>(N - lo)));
      const auto ku = static_cast<size_t>(k);
      std::vector<Tensor> xs = euler_rollout(theta_->field(), x0, std::vector<float>(sig_.begin(), sig_.begin() + k + 1));
      Tensor sk = full({batch}, sig_[ku], opts(DType::F64));
      const double h = meth == "draft" ? static_cast<double>(sig_[ku]) - sig_[ku + 1] : static_cast<double>(sig_[ku]);
      return ops::neg(ops::mean(reward_(ops::sub(xs.back(), ops::mul(theta_->forward(xs.back(), sk), h)))));
    }
    std::vector<Tensor> xs = euler_rollout(theta_->field(), x0, sig_);
    return meth == "pmp" ? m::pmp_loss(f_, reward_, xs, sig_, ao_, gen, nullptr)
                         : m::vggflow_loss(f_, nu_, reward_, xs, sig_, vo_, gen, nullptr);
  }

 private:
  ToyOptions o_;
  std::shared_ptr<VelocityMLP> theta_, nu_net_;
  const Reward& reward_;
  std::vector<float> sig_;
  Field nu_;
  m::Fields f_;
  m::VGGFlowOptions vo_;
  m::AdjointOptions ao_;
};

}  // namespace

ToyResult run_method(const VelocityMLP& base, const Reward& reward, const Tensor& target, const Tensor& eval_noise,
                     const ToyOptions& o) {
  const std::string& meth = o.method;
  const bool vgg = meth == "vggflow" || meth == "vggflow-exact";
  VGG_CHECK(vgg || meth == "am" || meth == "pmp" || meth == "refl" || meth == "draft",
            "toy: unknown method '", meth, "' (vggflow, vggflow-exact, am, pmp, refl, draft)");
  VGG_CHECK(o.updates >= 0 && o.batch >= 1 && o.sample_steps >= 2 && o.beta > 0, "toy: bad options for ", meth);
  const auto t0 = std::chrono::steady_clock::now();
  auto theta = std::make_shared<VelocityMLP>(64, 1);
  theta->load_state_dict(base.state_dict());
  theta->requires_grad_(true);
  auto nu_net = std::make_shared<VelocityMLP>(64, o.seed + 77, 1e-3);
  const double beta = o.beta;
  ToyMethod method(o, theta, nu_net, base, reward);
  std::vector<nn::ParamGroup> groups(1);
  groups[0].name = "theta", groups[0].params = theta->parameters(), groups[0].lr = o.lr;
  groups[0].weight_decay = 0, groups[0].max_grad_norm = 1.0;
  for (auto& g : method.extra_groups()) groups.push_back(g);
  nn::AdamW opt(groups);
  m::Updater updater(opt, groups);
  const std::vector<float> sig = toy_sigmas(o.sample_steps);
  const int64_t N = o.sample_steps;

  ToyResult res;
  res.method = meth;
  Generator eg(o.seed, 99);
  auto evaluate = [&](int64_t at) {
    std::vector<Tensor> xs = euler_rollout(theta->field(), eval_noise, sig);
    NoGradGuard ng;
    double cost = 0;  // E Σ_k h_k/(2β)·‖u_θ − u_base‖²(x_k): the control cost of the W2-regularised objective
    for (int64_t k = 0; k < N; ++k) {
      const auto ku = static_cast<size_t>(k);
      Tensor sk = full({eval_noise.size(0)}, sig[ku], opts(DType::F64));
      const double h = static_cast<double>(sig[ku]) - sig[ku + 1];
      cost += h / (2 * beta) * ops::mean(ops::sum(ops::square(ops::sub(theta->forward(xs[ku], sk), base.forward(xs[ku], sk))), {1})).item();
    }
    const Tensor& x = xs.back();
    const double rw = ops::mean(reward(x)).item();
    res.curve.push_back({at, mmd(x, target), sliced_w2(x, target, 256, eg), rw, cost - rw});
    res.samples = x;
  };
  evaluate(0);
  for (int64_t step = 0; step < o.updates; ++step) {
    Generator gen(o.seed, 5000 + static_cast<uint64_t>(step));
    updater.update(1, [&](int64_t, nlohmann::json& part) { return method.loss(o.batch, gen, part); });
    if ((o.eval_every > 0 && (step + 1) % o.eval_every == 0) || step + 1 == o.updates) evaluate(step + 1);
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.theta = theta;
  if (vgg) res.nu_net = nu_net;
  return res;
}

}  // namespace vgg::flow::toy
