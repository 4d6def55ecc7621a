#include "vggflow/methods/adjoint.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace vgg::flow::methods {

double memoryless_sigma(double sigma) {
  VGG_CHECK(sigma >= 0 && sigma <= 1, "memoryless_sigma: sigma must be in [0, 1], got ", sigma);
  return sigma >= 1 ? std::numeric_limits<double>::infinity() : std::sqrt(2 * sigma / (1 - sigma));
}

MemorylessStep memoryless_step(double sigma, double sigma_next) {
  VGG_CHECK(sigma <= 1 && sigma_next >= 0 && sigma_next < sigma, "memoryless_step: need 1 >= sigma (", sigma,
            ") > sigma' (", sigma_next, ") >= 0");
  const double t = 1 - sigma, tn = 1 - sigma_next, r = t / tn;
  const double vs = std::max(0.0, sigma * sigma - r * r * sigma_next * sigma_next);  // ς², >= 0 for σ' < σ
  return {(vs * tn + sigma_next * sigma_next * r) / (sigma * sigma), -vs * tn / sigma, sigma_next * std::sqrt(vs) / sigma};
}

std::vector<Tensor> memoryless_rollout(const Field& u, const Tensor& x0, const std::vector<float>& sigmas,
                                       Generator& gen) {
  NoGradGuard ng;
  const int64_t B = x0.size(0);
  std::vector<Tensor> xs{x0};
  Tensor x = x0;
  for (size_t k = 0; k + 1 < sigmas.size(); ++k) {
    const MemorylessStep c = memoryless_step(sigmas[k], sigmas[k + 1]);
    Tensor uk = u(x, full({B}, sigmas[k], opts(DType::F32, x.device())));
    Tensor eps = ops::to(randn(x.shape(), {}, &gen), x.device());  // drawn on the host: the same on every device
    x = ops::add(ops::add(ops::mul(x, c.c_x), ops::mul(uk, c.c_u)), ops::mul(ops::to(eps, x.dtype()), c.noise));
    xs.push_back(x);
  }
  return xs;
}

namespace {

// ∇ₓ⟨w, f(x)⟩ = [∇f(x)]ᵀw, detached: one reverse pass.
Tensor vjp_in_x(const std::function<Tensor(const Tensor&)>& f, const Tensor& x, const Tensor& w) {
  GradModeGuard gm(true);
  Tensor xi = x.detach().requires_grad_(true);
  Tensor y = f(xi);
  return grad({y}, {xi}, {ops::to(w, y.dtype())})[0].detach();
}

void check_chain(const std::vector<Tensor>& xs, const std::vector<float>& sigmas, const Tensor& terminal, int64_t stop,
                 const char* who) {
  const auto N = static_cast<int64_t>(sigmas.size()) - 1;
  VGG_CHECK(N >= 1 && static_cast<int64_t>(xs.size()) == N + 1, who, ": need N + 1 states for N + 1 sigmas, got ",
            xs.size(), " states and ", sigmas.size(), " sigmas");
  VGG_CHECK(stop >= 0 && stop <= N, who, ": stop must be in [0, ", N, "], got ", stop);
  VGG_CHECK(terminal.shape() == xs.back().shape(), who, ": terminal ", describe(terminal), " does not match the state ",
            describe(xs.back()));
}

double mean_norm(const Tensor& t) {
  std::vector<double> n = per_sample_norms(t);
  double s = 0;
  for (double v : n) s += v;
  return s / static_cast<double>(n.size());
}

// −clip(∇r(x)) per sample and the statistics of the gradient.
Tensor clipped_reward_gradient(const Reward& reward, const Tensor& x, const AdjointOptions& o, AdjointStats* st) {
  RewardGrad rg = reward_gradient(reward, x);
  std::vector<double> norms = per_sample_norms(rg.grad);
  const double thr = o.clip_fixed > 0 ? o.clip_fixed : quantile(norms, o.clip_quantile);
  st->reward = ops::mean(rg.value).item();
  st->out_of_range = out_of_range_fraction(x);
  st->clip_threshold = thr;
  double s = 0;
  for (double v : norms) s += v;
  st->grad_norm_mean = s / static_cast<double>(norms.size());
  return clip_per_sample(rg.grad, thr);
}

}  // namespace

namespace {

// a_N = terminal; a_k = step(k, x_k, σ_k as [B], a_{k+1}) for k = N−1 down to stop (detached).
template <class Step>
std::vector<Tensor> backward_sweep(const std::vector<Tensor>& xs, const std::vector<float>& sigmas, const Tensor& terminal,
                                   int64_t stop, const char* who, Step step) {
  check_chain(xs, sigmas, terminal, stop, who);
  const auto N = static_cast<int64_t>(sigmas.size()) - 1;
  std::vector<Tensor> a(static_cast<size_t>(N + 1));
  a[static_cast<size_t>(N)] = terminal.detach();
  for (int64_t k = N - 1; k >= stop; --k) {
    const auto ku = static_cast<size_t>(k);
    a[ku] = step(ku, xs[ku], full({terminal.size(0)}, sigmas[ku], opts(DType::F32, xs[ku].device())), a[ku + 1]).detach();
  }
  return a;
}

}  // namespace

std::vector<Tensor> lean_adjoint(const Field& u_base, const std::vector<Tensor>& xs, const std::vector<float>& sigmas,
                                 const Tensor& terminal, int64_t stop) {
  return backward_sweep(xs, sigmas, terminal, stop, "lean_adjoint",
                        [&](size_t k, const Tensor& x, const Tensor& sk, const Tensor& an) {
                          const MemorylessStep c = memoryless_step(sigmas[k], sigmas[k + 1]);
                          Tensor ja = vjp_in_x([&](const Tensor& xi) { return u_base(xi, sk); }, x, an);
                          return ops::add(ops::mul(an, c.c_x), ops::mul(ops::to(ja, an.dtype()), c.c_u));
                        });
}

Tensor adjoint_matching_loss(const Tensor& u_theta, const Tensor& u_base, const Tensor& adjoint, const Tensor& sigma) {
  VGG_CHECK(u_theta.shape() == u_base.shape() && u_theta.shape() == adjoint.shape(), "adjoint_matching_loss: u_theta ",
            describe(u_theta), ", u_base ", describe(u_base), " and adjoint ", describe(adjoint), " must match");
  std::vector<double> sv = ops::to(sigma, DType::F64).to_vector(), w1, w2;
  VGG_CHECK(static_cast<int64_t>(sv.size()) == u_theta.size(0), "adjoint_matching_loss: sigma ", describe(sigma),
            " for a batch of ", u_theta.size(0));
  for (double s : sv) {
    VGG_CHECK(s > 0 && s < 1, "adjoint_matching_loss: sigma must be in (0, 1) (σ_m is infinite at 1, zero at 0), got ", s);
    const double sm = memoryless_sigma(s);
    w1.push_back(2 / sm);
    w2.push_back(sm);
  }
  const int64_t B = u_theta.size(0);
  Tensor c1 = per_sample(from_vector(w1, {B}, opts(DType::F64)), u_theta);
  Tensor c2 = per_sample(from_vector(w2, {B}, opts(DType::F64)), u_theta);
  Tensor diff = ops::sub(u_theta, u_base.detach());
  Tensor res = ops::sub(ops::mul(diff, c1), ops::mul(ops::to(adjoint.detach(), u_theta.dtype()), c2));
  return ops::mean(ops::square(res));
}

std::vector<Tensor> pmp_costate(const Field& u_theta, const Field& u_base, const std::vector<Tensor>& xs,
                                const std::vector<float>& sigmas, const Tensor& terminal, double beta, int64_t stop) {
  VGG_CHECK(beta > 0, "pmp_costate: beta must be positive, got ", beta);
  return backward_sweep(xs, sigmas, terminal, stop, "pmp_costate",
                        [&](size_t k, const Tensor& x, const Tensor& sk, const Tensor& an) {
                          const double h = static_cast<double>(sigmas[k]) - static_cast<double>(sigmas[k + 1]);
                          GradModeGuard gm(true);
                          Tensor xi = x.detach().requires_grad_(true);
                          Tensor ut = u_theta(xi, sk), ub = u_base(xi, sk);
                          // h/(2β)·‖u_θ − u_base‖² − h·⟨a_{k+1}, u_θ⟩ summed over the batch (samples are independent)
                          Tensor run = ops::mul(ops::sum(ops::square(ops::sub(ut, ub))), h / (2 * beta));
                          Tensor lin = ops::mul(ops::sum(ops::mul(ut, ops::to(an, ut.dtype()))), h);
                          Tensor gx = grad({ops::sub(run, lin)}, {xi})[0].detach();
                          return ops::add(an, ops::to(gx, an.dtype()));
                        });
}

std::vector<int64_t> stratified_times(int64_t steps, int64_t times, Generator& gen) {
  VGG_CHECK(steps >= 2 && times >= 1, "stratified_times: need steps >= 2 and times >= 1, got steps ", steps,
            ", times ", times);
  const int64_t split = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(0.6 * static_cast<double>(steps))), 2,
                                            steps - 1);
  const int64_t n_first = (times + 1) / 2, n_second = times / 2;
  std::vector<double> u = rand({times}, opts(DType::F64), &gen).to_vector();
  std::vector<int64_t> out;
  size_t ui = 0;
  auto draw = [&](int64_t lo, int64_t hi, int64_t n) {  // n indices from [lo, hi), distinct while they last
    if (hi <= lo) lo = 1, hi = steps;                       // an empty stratum: the whole range
    std::vector<int64_t> pool;
    for (int64_t i = lo; i < hi; ++i) pool.push_back(i);
    for (int64_t j = 0; j < n; ++j) {
      if (pool.empty())
        for (int64_t i = lo; i < hi; ++i) pool.push_back(i);
      const auto pick = std::min(pool.size() - 1, static_cast<size_t>(u[ui++] * static_cast<double>(pool.size())));
      out.push_back(pool[pick]);
      pool.erase(pool.begin() + static_cast<std::ptrdiff_t>(pick));
    }
  };
  draw(1, split, n_first);
  draw(split, steps, n_second);
  return out;
}

namespace {

// The shared second half of AM and PMP: per-sample loss times, the adjoint down to the earliest,
// and the mean over slots of the per-time loss.
template <class Adjoint, class Loss>
Tensor adjoint_regression(const std::vector<Tensor>& xs, const std::vector<float>& sigmas,
                          const std::vector<std::vector<int64_t>>& idx, Adjoint adjoint, Loss loss, AdjointStats* st) {
  int64_t stop = static_cast<int64_t>(sigmas.size()) - 1;
  for (const auto& v : idx)
    for (int64_t k : v) stop = std::min(stop, k);
  std::vector<Tensor> a = adjoint(stop);
  const size_t slots = idx[0].size();
  std::vector<int64_t> earliest;
  for (const auto& v : idx) earliest.push_back(*std::min_element(v.begin(), v.end()));
  st->adjoint_norm = mean_norm(gather_slot(a, earliest));
  Tensor total;
  for (size_t j = 0; j < slots; ++j) {
    std::vector<int64_t> k;
    for (const auto& v : idx) k.push_back(v[j]);
    Tensor l = loss(gather_slot(xs, k), slot_sigmas(sigmas, k), gather_slot(a, k));
    total = total.defined() ? ops::add(total, l) : l;
  }
  total = ops::mul(total, 1.0 / static_cast<double>(slots));
  st->loss = total.item();
  return total;
}

}  // namespace

Tensor am_loss(const Fields& f, const Reward& reward, const Tensor& x0, const std::vector<float>& sigmas,
               const AdjointOptions& o, Generator& gen, AdjointStats* stats) {
  VGG_CHECK(o.beta > 0 && o.times >= 1, "am_loss: need beta > 0 and times >= 1, got ", o.beta, ", ", o.times);
  const int64_t B = x0.size(0), N = static_cast<int64_t>(sigmas.size()) - 1;
  std::vector<Tensor> xs = memoryless_rollout(f.theta, x0, sigmas, gen);
  AdjointStats st;
  Tensor terminal = ops::mul(clipped_reward_gradient(reward, xs.back(), o, &st), -o.beta);
  std::vector<std::vector<int64_t>> idx;
  for (int64_t i = 0; i < B; ++i) idx.push_back(stratified_times(N, o.times, gen));
  Tensor total = adjoint_regression(
      xs, sigmas, idx, [&](int64_t stop) { return lean_adjoint(f.base, xs, sigmas, terminal, stop); },
      [&](const Tensor& x, const Tensor& sigma, const Tensor& a) {
        Tensor ub;
        {
          NoGradGuard ng;
          ub = f.base(x, sigma);
        }
        return adjoint_matching_loss(f.theta(x, sigma), ub, a, sigma);
      },
      &st);
  if (stats) *stats = st;
  return total;
}

Tensor pmp_loss(const Fields& f, const Reward& reward, const std::vector<Tensor>& xs, const std::vector<float>& sigmas,
                const AdjointOptions& o, Generator& gen, AdjointStats* stats) {
  VGG_CHECK(o.beta > 0, "pmp_loss: beta must be positive, got ", o.beta);
  const int64_t B = xs[0].size(0), N = static_cast<int64_t>(sigmas.size()) - 1;
  AdjointStats st;
  Tensor terminal = ops::neg(clipped_reward_gradient(reward, xs.back(), o, &st));
  std::vector<std::vector<int64_t>> idx;
  for (int64_t i = 0; i < B; ++i) idx.push_back(subsample_transitions(N, o.bins, gen));
  Tensor total = adjoint_regression(
      xs, sigmas, idx,
      [&](int64_t stop) { return pmp_costate(f.theta_x, f.base, xs, sigmas, terminal, o.beta, stop); },
      [&](const Tensor& x, const Tensor& sigma, const Tensor& a) {
        Tensor ub;
        {
          NoGradGuard ng;
          ub = f.base(x, sigma);
        }
        return matching_loss(f.theta(x, sigma), ub, a, o.beta);
      },
      &st);
  if (stats) *stats = st;
  return total;
}

Tensor am_loss(const Policy& p, const Reward& reward, int64_t batch, int64_t steps, double shift,
               const AdjointOptions& o, Generator& gen, AdjointStats* stats) {
  Rollout r = sample_rollout(p, batch, steps, shift, gen, /*upto=*/0);  // prompts, schedule, X₀
  return am_loss(policy_fields(p, r.cond, r.uncond), PromptBoundReward(reward, r.ids), r.latents[0], r.sigmas, o, gen,
                 stats);
}

Tensor pmp_loss(const Policy& p, const Reward& reward, const Rollout& r, const AdjointOptions& o, Generator& gen,
                AdjointStats* stats) {
  return pmp_loss(policy_fields(p, r.cond, r.uncond), PromptBoundReward(reward, r.ids), r.latents, r.sigmas, o, gen,
                  stats);
}

}  // namespace vgg::flow::methods
