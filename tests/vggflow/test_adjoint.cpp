// Adjoint Matching and VGG-Flow-PMP (vggflow/methods/adjoint.h): the memoryless ancestral step on
// a point mass (exact marginals, no memory of X₀), the lean adjoint and the PMP co-state as the
// exact gradients of their chains (reverse mode through the whole unrolled chain in f64), the
// stratified loss times, and one update of each reaching the adapters.
#include <cmath>
#include <set>

#include "autograd/engine.h"
#include "tests/support/test_support.h"
#include "tests/vggflow/small_model.h"
#include "vggflow/methods/adjoint.h"

namespace vgg::test {
namespace {

namespace m = flow::methods;

double max_abs(const Tensor& t) { return ops::amax(ops::abs(ops::to(t, DType::F64))).item(); }

TEST(Adjoint, MemorylessStepEndpointsAndSchedule) {
  // from t = 0: X' = t'(x − u) + σ'ε, fresh noise around the prediction
  m::MemorylessStep a = m::memoryless_step(1.0, 0.75);
  EXPECT_NEAR(a.c_x, 0.25, 1e-15);
  EXPECT_NEAR(a.c_u, -0.25, 1e-15);
  EXPECT_NEAR(a.noise, 0.75, 1e-15);
  // onto t = 1: X' = x̂₁ = x − σu, no noise
  m::MemorylessStep b = m::memoryless_step(0.3, 0.0);
  EXPECT_NEAR(b.c_x, 1.0, 1e-15);
  EXPECT_NEAR(b.c_u, -0.3, 1e-15);
  EXPECT_EQ(b.noise, 0.0);
  EXPECT_NEAR(m::memoryless_sigma(0.5), std::sqrt(2.0), 1e-15);  // σ_m(t = ½) = √2
  EXPECT_TRUE(std::isinf(m::memoryless_sigma(1.0)));
  EXPECT_TRUE(throws_error([] { m::memoryless_step(0.5, 0.5); }, {"memoryless_step", "sigma'"}));
}

// Data = a point mass at c: the exact velocity is u(x, σ) = (x − c)/σ and every marginal is
// N((1−σ)c, σ²). The ancestral memoryless chain reproduces them at every step (mean and std
// within sampling error), and after its first step it has forgotten X₀ (zero correlation), while
// the ODE keeps X_k = σ_k X₀ + (1−σ_k)c (correlation one).
TEST(Adjoint, MemorylessChainHasTheFlowMarginalsAndForgetsTheNoise) {
  const int64_t B = 4096;
  const double c = 0.7;
  m::Field u = [&](const Tensor& x, const Tensor& s) {
    return ops::div(ops::add(x, -c), m::per_sample(ops::to(s, DType::F64), x));
  };
  std::vector<float> sig = {1.0f, 0.875f, 0.625f, 0.375f, 0.125f, 0.0f};
  Generator gen(3);
  Tensor x0 = rnd({B, 1}, 17);
  std::vector<Tensor> xs = m::memoryless_rollout(u, x0, sig, gen);
  ASSERT_EQ(xs.size(), sig.size());
  std::vector<double> v0 = x0.to_vector();
  for (size_t k = 1; k < xs.size(); ++k) {
    SCOPED_TRACE(k);
    std::vector<double> v = xs[k].to_vector();
    double mean = 0, m2 = 0, cov = 0;
    for (int64_t i = 0; i < B; ++i) mean += v[static_cast<size_t>(i)] / B;
    for (int64_t i = 0; i < B; ++i) {
      const double d = v[static_cast<size_t>(i)] - mean;
      m2 += d * d / B, cov += d * v0[static_cast<size_t>(i)] / B;
    }
    const double sd = std::sqrt(m2), s = sig[k];
    EXPECT_NEAR(mean, (1 - s) * c, 4 * s / std::sqrt(B) + 1e-12);
    EXPECT_NEAR(sd, s, 4 * s / std::sqrt(2.0 * B) + 1e-12);
    if (s > 0) EXPECT_LT(std::abs(cov / sd), 4 / std::sqrt(B));  // corr(X_k, X₀), X₀ has unit variance
  }
  EXPECT_LT(max_abs(ops::add(xs.back(), -c)), 1e-12);  // the last step lands on x̂₁ = c
}

// The small model in f64 with non-zero adapters (the policy differs from the base).
struct F64Policy {
  m::Policy p;
  flow::Conditioning cond, uncond;
  F64Policy() {
    p = small_f64_policy();
    cond = p.model.prompts->encode(from_vector(std::vector<int64_t>{1, 6}, {2}));
    const int64_t e = p.model.prompts->empty_id();
    uncond = p.model.prompts->encode(from_vector(std::vector<int64_t>{e, e}, {2}));
  }
};

const std::vector<float> kSigmas = {1.0f, 0.75f, 0.5f, 0.25f, 0.0f};  // dyadic: exact in f32 timesteps

// ã_k = [∂X_N/∂X_k]ᵀ ã_N along the base chain X_{j+1} = c_x X_j + c_u u_base(X_j) + n_j with the
// noise n_j held fixed, by reverse mode through the unrolled chain.
TEST(Adjoint, LeanAdjointIsTheGradientThroughTheBaseChain) {
  F64Policy s;
  m::Field ub = m::base_velocity_field(s.p, s.cond, s.uncond);
  Generator gen(4);
  std::vector<Tensor> xs = m::memoryless_rollout(ub, rnd({2, 1, 32, 32}, 5), kSigmas, gen);
  const size_t N = kSigmas.size() - 1;
  std::vector<Tensor> noise;
  {
    NoGradGuard ng;
    for (size_t k = 0; k < N; ++k) {
      m::MemorylessStep c = m::memoryless_step(kSigmas[k], kSigmas[k + 1]);
      Tensor uk = ub(xs[k], full({2}, kSigmas[k], opts(DType::F32)));
      noise.push_back(ops::sub(xs[k + 1], ops::add(ops::mul(xs[k], c.c_x), ops::mul(uk, c.c_u))));
    }
    EXPECT_GT(max_abs(noise[1]), 0.1);  // the chain is stochastic
  }
  Tensor terminal = rnd({2, 1, 32, 32}, 6);
  std::vector<Tensor> a = m::lean_adjoint(ub, xs, kSigmas, terminal, 1);
  EXPECT_FALSE(a[0].defined());
  for (size_t k0 : {1u, 2u, 3u}) {
    SCOPED_TRACE(k0);
    Tensor x = xs[k0].detach().requires_grad_(true), y = x;
    for (size_t k = k0; k < N; ++k) {
      m::MemorylessStep c = m::memoryless_step(kSigmas[k], kSigmas[k + 1]);
      y = ops::add(ops::add(ops::mul(y, c.c_x), ops::mul(ub(y, full({2}, kSigmas[k], opts(DType::F32))), c.c_u)), noise[k]);
    }
    EXPECT_LT(max_abs(ops::sub(y, xs[N])), 1e-12);  // the rebuilt chain is the rollout
    Tensor ref = grad({ops::sum(ops::mul(y, terminal))}, {x})[0];
    EXPECT_TRUE(all_close(a[k0], ref, 1e-10 * max_abs(ref), 1e-9));
    EXPECT_GT(max_abs(ops::sub(a[k0], terminal)), 0.01 * max_abs(terminal));  // not the identity
  }
}

// a_k = ∂J/∂x_k for J = Σ_{j≥k} h_j/(2β)‖u_θ − u_base‖²(x_j) + ⟨a_N, x_N⟩ along the Euler chain
// x_{j+1} = x_j − h_j u_θ(x_j), by reverse mode through the unrolled chain.
TEST(Adjoint, PmpCostateIsTheGradientOfTheControlObjective) {
  F64Policy s;
  const double beta = 0.5;
  m::Field ut = m::policy_field(s.p, s.cond, s.uncond, /*sg_uncond=*/false);
  m::Field ub = m::base_velocity_field(s.p, s.cond, s.uncond);
  const size_t N = kSigmas.size() - 1;
  std::vector<Tensor> xs{rnd({2, 1, 32, 32}, 7)};
  {
    NoGradGuard ng;
    for (size_t k = 0; k < N; ++k)
      xs.push_back(ops::sub(xs[k], ops::mul(ut(xs[k], full({2}, kSigmas[k], opts(DType::F32))),
                                            static_cast<double>(kSigmas[k] - kSigmas[k + 1]))));
  }
  Tensor terminal = ops::mul(rnd({2, 1, 32, 32}, 8), 0.1);
  std::vector<Tensor> a = m::pmp_costate(ut, ub, xs, kSigmas, terminal, beta, 0);
  for (size_t k0 : {0u, 2u}) {
    SCOPED_TRACE(k0);
    Tensor x = xs[k0].detach().requires_grad_(true), y = x, J = zeros({}, opts(DType::F64));
    for (size_t k = k0; k < N; ++k) {
      const double h = static_cast<double>(kSigmas[k] - kSigmas[k + 1]);
      Tensor sk = full({2}, kSigmas[k], opts(DType::F32));
      Tensor u = ut(y, sk);
      J = ops::add(J, ops::mul(ops::sum(ops::square(ops::sub(u, ub(y, sk)))), h / (2 * beta)));
      y = ops::sub(y, ops::mul(u, h));
    }
    J = ops::add(J, ops::sum(ops::mul(y, terminal)));
    Tensor ref = grad({J}, {x})[0];
    EXPECT_TRUE(all_close(a[k0], ref, 1e-10 * max_abs(ref), 1e-9));
  }
  // the running cost matters: without it (β → ∞) the co-state differs
  std::vector<Tensor> lean = m::pmp_costate(ut, ub, xs, kSigmas, terminal, 1e12, 0);
  EXPECT_GT(max_abs(ops::sub(lean[0], a[0])), 1e-3 * max_abs(a[0]));
  EXPECT_TRUE(throws_error([&] { m::pmp_costate(ut, ub, xs, kSigmas, terminal, 0.0, 0); }, {"beta must be positive"}));
  EXPECT_TRUE(throws_error([&] { m::pmp_costate(ut, ub, xs, kSigmas, rnd({1, 1, 32, 32}, 9), beta, 0); },
                           {"terminal", "does not match"}));
}

TEST(Adjoint, StratifiedTimes) {
  Generator gen(11);
  std::set<int64_t> seen;
  for (int rep = 0; rep < 200; ++rep) {
    std::vector<int64_t> t = m::stratified_times(20, 4, gen);
    ASSERT_EQ(t.size(), 4u);
    for (int j = 0; j < 4; ++j) {
      EXPECT_GE(t[j], j < 2 ? 1 : 12);
      EXPECT_LT(t[j], j < 2 ? 12 : 20);
    }
    EXPECT_NE(t[0], t[1]);
    EXPECT_NE(t[2], t[3]);
    seen.insert(t.begin(), t.end());
  }
  EXPECT_EQ(seen.size(), 19u);  // every step but t = 0 is drawn
  std::vector<int64_t> tiny = m::stratified_times(2, 3, gen);  // more times than steps: repeats
  EXPECT_EQ(tiny, (std::vector<int64_t>{1, 1, 1}));
  EXPECT_TRUE(throws_error([&] { m::stratified_times(1, 2, gen); }, {"stratified_times"}));
}

TEST(Adjoint, AdjointMatchingLossFollowsItsEquation) {
  Tensor ut = rnd({2, 1, 2, 2}, 1), ub = rnd({2, 1, 2, 2}, 2), a = rnd({2, 1, 2, 2}, 3);
  Tensor sigma = from_vector(std::vector<double>{0.5, 0.2}, {2}, opts(DType::F64));
  const double l = m::adjoint_matching_loss(ut, ub, a, sigma).item();
  std::vector<double> u1 = ut.to_vector(), u0 = ub.to_vector(), av = a.to_vector();
  double ref = 0;
  for (size_t i = 0; i < 8; ++i) {
    const double s = i < 4 ? 0.5 : 0.2, sm = std::sqrt(2 * s / (1 - s));
    const double r = (2 / sm) * (u1[i] - u0[i]) - sm * av[i];
    ref += r * r / 8;
  }
  EXPECT_NEAR(l, ref, 1e-12 * ref);
  EXPECT_TRUE(throws_error([&] { m::adjoint_matching_loss(ut, ub, a, full({2}, 1.0, opts(DType::F64))); },
                           {"sigma must be in (0, 1)"}));
}


TEST(Adjoint, OneUpdateOfEachReachesTheAdapters) {
  m::Policy p = m::make_policy(small_flow_model(2), 4, 2.0, 9);
  auto br = flow::make_pixel_reward("contrast");
  m::AdjointOptions o;
  o.beta = 3.0, o.times = 2, o.bins = 2;
  for (const char* method : {"am", "pmp"}) {
    SCOPED_TRACE(method);
    Generator gen(6);
    for (auto& t : p.lora_params()) t.set_grad(Tensor());
    m::AdjointStats st;
    Tensor loss;
    if (std::string(method) == "am") {
      loss = m::am_loss(p, *br, 3, 6, 1.0, o, gen, &st);
    } else {
      m::Rollout r = m::sample_rollout(p, 3, 6, 1.0, gen);
      loss = m::pmp_loss(p, *br, r, o, gen, &st);
    }
    ASSERT_TRUE(std::isfinite(loss.item()));
    EXPECT_GT(loss.item(), 0.0);
    EXPECT_EQ(loss.item(), st.loss);
    EXPECT_GT(st.grad_norm_mean, 0.0);
    EXPECT_GT(st.clip_threshold, 0.0);
    EXPECT_GT(st.adjoint_norm, 0.0);
    backward(loss);
    EXPECT_GT(grad_abs_sum(p.lora_params()), 0.0);
  }
}

}  // namespace
}  // namespace vgg::test
