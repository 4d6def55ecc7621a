// The 2-D toy (vggflow/toy.h): its distances, the importance-sampled tilted target, the base flow,
// and VGG-Flow / Adjoint Matching moving samples toward p_base·e^{βr}.
#include <cmath>

#include "autograd/engine.h"
#include "tests/support/test_support.h"
#include "vggflow/methods/common.h"
#include "vggflow/toy.h"

namespace vgg::test {
namespace {

namespace toy = flow::toy;

TEST(Toy, DistancesAndImportanceResampling) {
  Generator g(1);
  Tensor a = toy::sample_mixture(800, g), b = toy::sample_mixture(800, g);
  EXPECT_EQ(toy::mmd(a, a), 0.0);
  const double same = toy::mmd(a, b), shifted = toy::mmd(a, ops::add(b, 0.5));
  EXPECT_GT(shifted, 3 * same);
  // a rigid shift by d = (0.3, 0.4): every projection moves by ⟨d, θ⟩, mean square |d|²/2
  EXPECT_NEAR(toy::sliced_w2(a, ops::add(a, from_vector(std::vector<double>{0.3, 0.4}, {1, 2}, opts(DType::F64))), 2000, g),
              0.5 / std::sqrt(2.0), 0.02);
  auto r = toy::linear_reward();
  // β = 0: the pool itself; large β: the pool's best point
  const double pool_r = ops::mean((*r)(a)).item();
  EXPECT_NEAR(ops::mean((*r)(toy::importance_resample(a, *r, 0.0, 4000, g))).item(), pool_r, 0.1);
  std::vector<double> rv = (*r)(a).to_vector();
  const double best = *std::max_element(rv.begin(), rv.end());
  EXPECT_NEAR(ops::mean((*r)(toy::importance_resample(a, *r, 1e3, 50, g))).item(), best, 1e-12);
  // the mixture's tilt by e^{0.5 r}: component weights ∝ e^{0.5·cᵀμ_k}, cᵀμ = ±2.12 or 0
  Tensor big = toy::sample_mixture(40000, g);
  Tensor t = toy::importance_resample(big, *r, 0.5, 20000, g);
  std::vector<double> tv = t.to_vector();
  double top = 0;
  for (size_t i = 0; i < tv.size(); i += 2) top += (tv[i] > 0 && tv[i + 1] > 0) ? 1.0 : 0.0;
  const double e = std::exp(0.5 * 1.5 * std::sqrt(2.0));
  EXPECT_NEAR(top / 20000, e / (e + 2 + 1 / e), 0.02);
  EXPECT_TRUE(throws_error([&] { toy::sliced_w2(a, toy::sample_mixture(5, g), 4, g); }, {"equal size"}));
}

// The base flow learns the mixture; with β = 0.5, VGG-Flow and Adjoint Matching move its samples
// toward the importance-sampled tilt (MMD to the target falls, the mean reward rises toward the
// target's), and Adjoint Matching, whose memoryless objective has the tilt as its exact optimum,
// gets within 2.5× the target-vs-target noise floor.
TEST(Toy, VggFlowAndAdjointMatchingMoveTowardTheTiltedTarget) {
  auto base = toy::train_base(1500, 512, 7);
  auto r = toy::linear_reward();
  Generator g(2024);
  const std::vector<float> sig = toy::toy_sigmas(20);
  Tensor pool = toy::euler_rollout(base->field(), randn({20000, 2}, opts(DType::F64), &g), sig).back();
  Tensor data = toy::sample_mixture(1000, g);
  Tensor noise = randn({1000, 2}, opts(DType::F64), &g);
  Tensor base_x = toy::euler_rollout(base->field(), noise, sig).back();
  EXPECT_LT(toy::mmd(base_x, data), 0.15);  // noise floor at 1000 samples ≈ 0.07
  Tensor target = toy::importance_resample(pool, *r, 0.5, 1000, g), target2 = toy::importance_resample(pool, *r, 0.5, 1000, g);
  const double floor = toy::mmd(target, target2), base_d = toy::mmd(base_x, target);
  const double target_r = ops::mean((*r)(target)).item(), base_r = ops::mean((*r)(base_x)).item();
  EXPECT_GT(base_d, 4 * floor);
  toy::ToyOptions o;
  o.updates = 100, o.eval_every = 0, o.eval_samples = 1000;
  for (const char* m : {"vggflow", "am"}) {
    SCOPED_TRACE(m);
    o.method = m;
    toy::ToyResult res = toy::run_method(*base, *r, target, noise, o);
    ASSERT_EQ(res.curve.size(), 2u);
    EXPECT_EQ(res.curve[0].mmd, base_d);
    const double d = res.curve.back().mmd, rew = res.curve.back().reward;
    std::printf("%s: MMD to the target %.4f (base %.4f, floor %.4f), reward %.3f (base %.3f, target %.3f)\n", m, d,
                base_d, floor, rew, base_r, target_r);
    EXPECT_LT(d, 0.85 * base_d);
    EXPECT_GT(rew, base_r + 0.3 * (target_r - base_r));
    EXPECT_LT(rew, target_r + 0.3 * (target_r - base_r));
    if (std::string(m) == "am") EXPECT_LT(d, 2.5 * floor);
  }
  o.method = "sgd";
  EXPECT_TRUE(throws_error([&] { toy::run_method(*base, *r, target, noise, o); }, {"unknown method 'sgd'"}));
}

// The bump reward, and compare_to_costate on a case known in closed form: the policy is the base
// (no control cost), ν ≡ 0 and η = 1. At the last state g(x_N, 0) = −∇r(x_N) = a_N (cosine and norm
// ratio 1); one step before, x̂₁ = x_N (the prediction is the last Euler step), so g = −∇r(x_N),
// while the co-state a_{N−1} = a_N − h·J_uᵀa_N carries the policy's Jacobian (h = σ_{N−1}).
TEST(Toy, BumpRewardAndTheCostateComparison) {
  auto r = toy::make_toy_reward("bump");
  Tensor x = from_vector(std::vector<double>{1.5, 1.5, 2.5, 1.5, -0.5, 0.5}, {3, 2}, opts(DType::F64));
  const std::vector<double> rv = (*r)(x).to_vector();
  EXPECT_DOUBLE_EQ(rv[0], 1.0);
  EXPECT_NEAR(rv[1], std::exp(-0.5), 1e-15);
  EXPECT_NEAR(rv[2], std::exp(-2.5), 1e-15);
  EXPECT_TRUE(throws_error([&] { toy::make_toy_reward("cubic"); }, {"unknown toy reward 'cubic'"}));

  auto base = toy::train_base(200, 256, 7);
  toy::ToyOptions o;
  o.sample_steps = 6, o.beta = 2, o.eta = flow::methods::Eta::Constant;
  toy::ToyResult v, p;
  v.theta = std::make_shared<toy::VelocityMLP>(64, 1);
  v.theta->load_state_dict(base->state_dict());
  v.nu_net = std::make_shared<toy::VelocityMLP>(64, 3, 0.0);  // ν ≡ 0
  p.theta = v.theta;
  Generator g(5);
  Tensor noise = randn({64, 2}, opts(DType::F64), &g);
  const toy::CostateComparison c = toy::compare_to_costate(v, p, *base, *r, noise, o);
  ASSERT_EQ(c.cosine.size(), 7u);
  EXPECT_NEAR(c.cosine[6], 1.0, 1e-12);
  EXPECT_NEAR(c.norm_ratio[6], 1.0, 1e-12);
  // step N − 1 by hand
  const std::vector<float> sig = toy::toy_sigmas(6);
  const std::vector<Tensor> xs = toy::euler_rollout(base->field(), noise, sig);
  const Tensor aN = ops::neg(flow::methods::reward_gradient(*r, xs[6]).grad);
  Tensor xi = xs[5].detach().requires_grad_(true);
  const Tensor vjp = grad({ops::sum(ops::mul(base->forward(xi, full({64}, sig[5], opts(DType::F64))), aN))}, {xi})[0];
  const std::vector<double> a5 = ops::sub(aN, ops::mul(vjp, static_cast<double>(sig[5]))).to_vector(), gN = aN.to_vector();
  double cs = 0;
  for (size_t i = 0; i < 64; ++i) {
    const double dot = a5[2 * i] * gN[2 * i] + a5[2 * i + 1] * gN[2 * i + 1];
    cs += dot / (std::hypot(a5[2 * i], a5[2 * i + 1]) * std::hypot(gN[2 * i], gN[2 * i + 1])) / 64;
  }
  EXPECT_NEAR(c.cosine[5], cs, 1e-9);
  EXPECT_LT(c.cosine[5], 1.0 - 1e-6);  // the Jacobian term is there
  double mean = 0;
  for (size_t k = 1; k < 7; ++k) mean += c.cosine[k] / 6;
  EXPECT_NEAR(c.mean_cosine, mean, 1e-12);
  toy::ToyResult none;
  EXPECT_TRUE(throws_error([&] { toy::compare_to_costate(none, p, *base, *r, noise, o); }, {"need a VGG-Flow run"}));
}

}  // namespace
}  // namespace vgg::test
