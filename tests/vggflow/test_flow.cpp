// Flow matching conventions, training σ sampling and the Euler/CFG sampler.
#include <cmath>

#include "autograd/ops.h"
#include "tests/support/test_support.h"
#include "vggflow/flow.h"
#include "vggflow/schedule.h"

namespace vgg::test {
namespace {

TEST(Flow, NoisingTargetAndPredictionsAreConsistent) {
  Tensor x0 = rnd({3, 2, 4}, 1), eps = rnd({3, 2, 4}, 2);
  Tensor s = from_vector(std::vector<double>{0.0, 0.3, 1.0}, {3}, opts(DType::F64));
  Tensor xs = flow::noise_sample(x0, eps, s);
  EXPECT_TRUE(all_close(ops::narrow(xs, 0, 0, 1), ops::narrow(x0, 0, 0, 1), 0, 0));   // σ = 0: data
  EXPECT_TRUE(all_close(ops::narrow(xs, 0, 2, 1), ops::narrow(eps, 0, 2, 1), 0, 0));  // σ = 1: noise
  Tensor u = flow::velocity_target(x0, eps);
  EXPECT_TRUE(all_close(flow::predict_x0(xs, s, u), x0, 1e-14, 1e-14));
  EXPECT_TRUE(all_close(flow::predict_noise(xs, s, u), eps, 1e-14, 1e-14));
  EXPECT_TRUE(all_close(flow::paper_velocity(u), ops::neg(u), 0, 0));
  EXPECT_DOUBLE_EQ(flow::paper_time(0.25), 0.75);
  EXPECT_TRUE(throws_error([&] { flow::noise_sample(x0, eps, ops::narrow(s, 0, 0, 2)); }, {"sigma must be [B]"}));
}

TEST(Flow, TrainingSigmasFollowTheScheme) {
  Generator g(5);
  flow::TimestepSampling ts;
  Tensor s = flow::sample_training_sigmas(20000, ts, g);
  // logit-normal(0, 1): median σ 0.5, and every value is an entry of the table
  std::vector<double> v = s.to_vector();
  std::sort(v.begin(), v.end());
  EXPECT_NEAR(v[10000], 0.5, 0.02);
  EXPECT_GT(v.front(), 0.0);
  EXPECT_LE(v.back(), 1.0);
  ts.scheme = "uniform";
  ts.shift = 3.0;
  v = flow::sample_training_sigmas(20000, ts, g).to_vector();
  std::sort(v.begin(), v.end());
  EXPECT_NEAR(v[10000], flow::shift_sigma(0.5, 3.0), 0.02);  // shift moves mass towards noise
  Generator a(9), b(9);
  EXPECT_TRUE(all_close(flow::sample_training_sigmas(64, {}, a), flow::sample_training_sigmas(64, {}, b), 0, 0));
  ts.scheme = "beta";
  EXPECT_TRUE(throws_error([&] { flow::sample_training_sigmas(4, ts, g); }, {"unknown scheme 'beta'"}));
}

TEST(Sampler, ExactVelocityOfAPointMassLandsOnIt) {
  // data = δ(x*): u(x, σ) = (x − x*)/σ exactly, and an Euler step with it is exact, so every
  // schedule ends on x* (to f32 rounding).
  Tensor target = rnd({2, 1, 4, 4}, 3, DType::F32);
  flow::VelocityFn f = [&](const Tensor& x, const Tensor& t, const flow::Conditioning&) {
    Tensor sigma = ops::reshape(ops::mul(t, 1.0 / 1000.0), {2, 1, 1, 1});
    return ops::div(ops::sub(x, target), sigma);
  };
  for (int64_t steps : {1, 4, 20}) {
    Generator g(1);
    Tensor noise = randn({2, 1, 4, 4}, {}, &g);
    flow::Trajectory tr;
    Tensor out = flow::sample_euler(f, noise, {}, {}, {steps, 3.0, 1.0}, &tr);
    EXPECT_TRUE(all_close(out, target, 1e-5, 1e-5)) << steps << " steps";
    ASSERT_EQ(tr.latents.size(), static_cast<size_t>(steps + 1));
    EXPECT_TRUE(all_close(tr.latents[0], noise, 0, 0));
    EXPECT_EQ(tr.sigmas.back(), 0.0f);
    EXPECT_EQ(tr.timesteps.size(), static_cast<size_t>(steps));
  }
}

TEST(Sampler, GuidanceCombinesUncondAndCondInOneBatch) {
  // u_∅ = −1, u_c = +1 everywhere: u = −1 + w·2, so x₁ = x₀ − (−1 + 2w)
  int calls = 0;
  flow::VelocityFn f = [&](const Tensor& x, const Tensor& t, const flow::Conditioning& c) {
    ++calls;
    EXPECT_EQ(x.size(0), 6);
    EXPECT_EQ(t.size(0), 6);
    Tensor sign = ops::reshape(c.pooled, {6, 1});  // pooled holds −1 (uncond) or +1 (cond)
    return ops::mul(ones_like(x), sign);
  };
  Tensor noise = zeros({3, 5});
  flow::Conditioning cond{zeros({3, 1, 1}), full({3, 1}, 1.0)}, uncond{zeros({3, 1, 1}), full({3, 1}, -1.0)};
  Tensor out = flow::sample_euler(f, noise, cond, uncond, {7, 1.0, 4.0});
  EXPECT_EQ(calls, 7);
  EXPECT_TRUE(all_close(out, full({3, 5}, -7.0), 1e-5, 0));  // σ: 1 → 0, u = 7
  EXPECT_TRUE(throws_error([&] { flow::sample_euler(f, noise, cond, {}, {7, 1.0, 4.0}); },
                           {"needs the unconditional conditioning"}));
}

TEST(Sampler, FixedSeedGivesBitIdenticalRuns) {
  flow::VelocityFn f = [](const Tensor& x, const Tensor& t, const flow::Conditioning&) {
    return ops::tanh(ops::add(x, ops::reshape(ops::mul(t, 1e-3), {x.size(0), 1})));
  };
  auto run = [&] {
    Generator g(42);
    return flow::sample_euler(f, randn({4, 9}, {}, &g), {}, {}, {28, 3.0, 1.0});
  };
  Tensor a = run(), b = run();
  EXPECT_EQ(a.to_vector(), b.to_vector());
}

}  // namespace
}  // namespace vgg::test
