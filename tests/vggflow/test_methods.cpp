// Alignment methods: VGG-Flow's equations on the exact linear-quadratic fixture (value function
// from the Riccati ODEs, so g = ∇V zeroes the eq. 12 residual), the loss pieces, and end-to-end
// gradient routing of VGG-Flow, ReFL and DRaFT on a small model.
#include <cmath>

#include "autograd/engine.h"
#include "tests/support/test_support.h"
#include "tests/vggflow/small_model.h"
#include "vggflow/methods/baselines.h"
#include "vggflow/methods/vggflow.h"

namespace vgg::test {
namespace {

namespace m = flow::methods;
constexpr int D = 4;  // x is [B, 1, 2, 2]

// The linear-quadratic problem: v_base = A x (A symmetric), r(x) = −½(x − c)ᵀR(x − c), β = 1/λ.
// V(x, t) = ½xᵀP x + qᵀx + const with Ṗ = βP² − (PA + AP), q̇ = βPq − Aq, P(1) = R, q(1) = −Rc.
struct LQ {
  double A[D][D], R[D][D], c[D], beta = 0.7;
  LQ() {
    const double a[D][D] = {{-0.3, 0.1, 0.0, 0.2}, {0.1, 0.4, -0.2, 0.0}, {0.0, -0.2, -0.1, 0.1}, {0.2, 0.0, 0.1, 0.3}};
    const double r[D][D] = {{1.0, 0.2, 0.0, 0.1}, {0.2, 0.8, 0.1, 0.0}, {0.0, 0.1, 1.2, -0.3}, {0.1, 0.0, -0.3, 0.9}};
    for (int i = 0; i < D; ++i)
      for (int j = 0; j < D; ++j) A[i][j] = a[i][j], R[i][j] = r[i][j];
    const double cc[D] = {0.5, -0.25, 0.1, 0.3};
    for (int i = 0; i < D; ++i) c[i] = cc[i];
  }
  // (P, q) at time t by RK4 from t = 1 (4000 steps per unit time)
  void pq(double t, double P[D][D], double q[D]) const {
    double y[D * D + D];
    for (int i = 0; i < D; ++i) {
      q[i] = 0;
      for (int j = 0; j < D; ++j) y[i * D + j] = R[i][j], q[i] -= R[i][j] * c[j];
      y[D * D + i] = q[i];
    }
    auto f = [&](const double* s, double* ds) {
      for (int i = 0; i < D; ++i)
        for (int j = 0; j < D; ++j) {
          double pp = 0, pa = 0, ap = 0;
          for (int k = 0; k < D; ++k) pp += s[i * D + k] * s[k * D + j], pa += s[i * D + k] * A[k][j], ap += A[i][k] * s[k * D + j];
          ds[i * D + j] = beta * pp - pa - ap;
        }
      for (int i = 0; i < D; ++i) {
        double pq = 0, aq = 0;
        for (int k = 0; k < D; ++k) pq += s[i * D + k] * s[D * D + k], aq += A[i][k] * s[D * D + k];
        ds[D * D + i] = beta * pq - aq;
      }
    };
    const int n = std::max(1, static_cast<int>(std::ceil((1.0 - t) * 4000)));
    const double h = -(1.0 - t) / n;
    constexpr int S = D * D + D;
    double k1[S], k2[S], k3[S], k4[S], tmp[S];
    for (int s = 0; s < n; ++s) {
      f(y, k1);
      for (int i = 0; i < S; ++i) tmp[i] = y[i] + 0.5 * h * k1[i];
      f(tmp, k2);
      for (int i = 0; i < S; ++i) tmp[i] = y[i] + 0.5 * h * k2[i];
      f(tmp, k3);
      for (int i = 0; i < S; ++i) tmp[i] = y[i] + h * k3[i];
      f(tmp, k4);
      for (int i = 0; i < S; ++i) y[i] += h / 6 * (k1[i] + 2 * k2[i] + 2 * k3[i] + k4[i]);
    }
    for (int i = 0; i < D; ++i) {
      for (int j = 0; j < D; ++j) P[i][j] = y[i * D + j];
      q[i] = y[D * D + i];
    }
  }
  // g(x, σ) = P(t)x + q(t), t = 1 − σ, per sample; x [B, 1, 2, 2] f64
  Tensor g(const Tensor& x, const Tensor& sigma, double bias = 0) const {
    std::vector<double> xv = x.to_vector(), sv = ops::to(sigma, DType::F64).to_vector(), out(xv.size());
    for (size_t b = 0; b < sv.size(); ++b) {
      double P[D][D], q[D];
      pq(1.0 - sv[b], P, q);
      for (int i = 0; i < D; ++i) {
        out[b * D + i] = q[i] + bias;
        for (int j = 0; j < D; ++j) out[b * D + i] += P[i][j] * xv[b * D + j];
      }
    }
    return from_vector(out, x.shape(), opts(DType::F64));
  }
  Tensor u_base(const Tensor& x) const {  // SD3 sign: u = −v = −A x
    std::vector<double> xv = x.to_vector(), out(xv.size());
    for (size_t b = 0; b < xv.size() / D; ++b)
      for (int i = 0; i < D; ++i) {
        out[b * D + i] = 0;
        for (int j = 0; j < D; ++j) out[b * D + i] -= A[i][j] * xv[b * D + j];
      }
    return from_vector(out, x.shape(), opts(DType::F64));
  }
};

double max_abs(const Tensor& t) { return ops::amax(ops::abs(t)).item(); }

TEST(VGGFlow, ExactValueGradientZeroesTheConsistencyResidual) {
  LQ lq;
  Tensor x = rnd({3, 1, 2, 2}, 31);
  Tensor sigma = from_vector(std::vector<double>{0.8, 0.45, 0.1}, {3}, opts(DType::F64));
  m::Field g = [&](const Tensor& xp, const Tensor& sp) { return lq.g(xp, sp); };
  m::Field ub = [&](const Tensor& xp, const Tensor&) { return lq.u_base(xp); };
  m::VGGFlowOptions o;
  o.beta = lq.beta;
  o.fd_eps = 1e-3;
  const double scale = max_abs(lq.g(x, sigma));
  const double central = max_abs(m::consistency_residual(g, ub, x, sigma, o));
  o.central = false;
  const double onesided = max_abs(m::consistency_residual(g, ub, x, sigma, o));
  // central differences: O(ε²) truncation; one-sided: O(ε)
  EXPECT_LT(central, 1e-6 * scale) << "central residual " << central << " scale " << scale;
  EXPECT_GT(onesided, 30 * central);
  EXPECT_LT(onesided, 1e-2 * scale);
  // a wrong field (∇V + constant) leaves a residual of the size of the error's effect
  o.central = true;
  m::Field wrong = [&](const Tensor& xp, const Tensor& sp) { return lq.g(xp, sp, 0.1); };
  EXPECT_GT(max_abs(m::consistency_residual(wrong, ub, x, sigma, o)), 1e-3);
  // the code's 1/1000 time scaling breaks exactness
  o.fd_time_scale = 1e-3;
  EXPECT_GT(max_abs(m::consistency_residual(g, ub, x, sigma, o)), 1e-3);
}

TEST(VGGFlow, LossPiecesFollowTheirEquations) {
  Tensor x = rnd({2, 1, 2, 2}, 1), u = rnd({2, 1, 2, 2}, 2);
  Tensor sigma = from_vector(std::vector<double>{0.25, 1.0}, {2}, opts(DType::F64));
  // x̂₁ = x − σ u
  Tensor x1 = m::forward_looking_x1(x, sigma, u);
  std::vector<double> xv = x.to_vector(), uv = u.to_vector(), x1v = x1.to_vector();
  for (size_t i = 0; i < 8; ++i) EXPECT_NEAR(x1v[i], xv[i] - (i < 4 ? 0.25 : 1.0) * uv[i], 1e-15);
  // η_t at σ = 0.25 (t = 0.75)
  EXPECT_NEAR(m::eta_weight(m::Eta::Quadratic, sigma, x).to_vector()[0], 0.5625, 1e-15);
  EXPECT_NEAR(m::eta_weight(m::Eta::Linear, sigma, x).to_vector()[0], 0.75, 1e-15);
  EXPECT_NEAR(m::eta_weight(m::Eta::Constant, sigma, x).to_vector()[1], 1.0, 1e-15);
  // g = −η∇r + ν ; the matching loss is zero at u_θ = u_base + βg and sees no gradient in g
  Tensor gr = rnd({2, 1, 2, 2}, 3), nu = rnd({2, 1, 2, 2}, 4).requires_grad_(true);
  Tensor g = m::value_gradient(gr, nu, m::eta_weight(m::Eta::Linear, sigma, x));
  EXPECT_TRUE(all_close(g, ops::add(ops::neg(ops::mul(m::eta_weight(m::Eta::Linear, sigma, x), gr)), nu), 1e-15, 0));
  Tensor ub = rnd({2, 1, 2, 2}, 5);
  Tensor ut = ops::add(ub, ops::mul(g.detach(), 3.0)).requires_grad_(true);
  EXPECT_NEAR(m::matching_loss(ut, ub, g, 3.0).item(), 0.0, 1e-24);
  Tensor ut2 = rnd({2, 1, 2, 2}, 6).requires_grad_(true);
  Tensor lm = m::matching_loss(ut2, ub, g, 3.0);
  auto grads = grad({lm}, {ut2, nu}, {}, false, /*allow_unused=*/true);
  EXPECT_GT(max_abs(grads[0]), 0.0);
  EXPECT_FALSE(grads[1].defined() && max_abs(grads[1]) > 0);
  EXPECT_NEAR(m::boundary_loss(from_vector(std::vector<double>{1, -2, 2, 0}, {1, 1, 2, 2}, opts(DType::F64))).item(),
              9.0 / 4, 1e-15);
}

TEST(VGGFlow, SubsamplingClippingAndQuantiles) {
  Generator gen(3);
  for (int rep = 0; rep < 20; ++rep) {
    std::vector<int64_t> idx = m::subsample_transitions(20, 5, gen);
    ASSERT_EQ(idx.size(), 6u);
    for (int64_t b = 0; b < 5; ++b) {
      EXPECT_GE(idx[static_cast<size_t>(b)], 4 * b);
      EXPECT_LT(idx[static_cast<size_t>(b)], 4 * b + 4);
    }
    EXPECT_EQ(idx[5], 19);
  }
  EXPECT_TRUE(throws_error([&] { m::subsample_transitions(4, 5, gen); }, {"bins (5)"}));
  EXPECT_DOUBLE_EQ(m::quantile({1, 2, 3, 4, 5}, 0.8), 4.2);  // numpy: 4.2
  EXPECT_DOUBLE_EQ(m::quantile({7}, 0.8), 7.0);
  Tensor g = from_vector(std::vector<double>{3, 4, 0, 0, 0.3, 0.4, 0, 0}, {2, 1, 2, 2}, opts(DType::F64));
  std::vector<double> n = m::per_sample_norms(m::clip_per_sample(g, 1.0));
  EXPECT_NEAR(n[0], 1.0, 1e-15);
  EXPECT_NEAR(n[1], 0.5, 1e-15);  // under the threshold: untouched
  // ∇ brightness = 1/(2·HW) everywhere
  auto br = flow::make_pixel_reward("brightness");
  m::RewardGrad rg = m::reward_gradient(*br, rnd({2, 1, 2, 2}, 8));
  EXPECT_TRUE(all_close(rg.grad, full({2, 1, 2, 2}, 0.125, opts(DType::F64)), 1e-15, 0));
}


double grad_sum(const std::vector<Tensor>& ps) {
  double s = 0;
  for (auto& p : ps)
    if (p.grad().defined()) s += ops::sum(ops::abs(p.grad())).item();
  return s;
}

TEST(VGGFlow, OneUpdateRoutesMatchingToThetaAndConsistencyToPhi) {
  m::Policy p = m::make_policy(small_flow_model(1), 4, 2.0, 9);
  auto br = flow::make_pixel_reward("contrast");
  Generator gen(5);
  m::Rollout r = m::sample_rollout(p, 3, 4, 1.0, gen);
  ASSERT_EQ(r.latents.size(), 5u);
  // fresh adapters: the policy equals the base
  Tensor s = full({3}, 0.5f, opts(DType::F32));
  {
    NoGradGuard ng;
    EXPECT_TRUE(all_close(p.velocity(r.latents[2], s, r.cond, r.uncond), p.velocity(r.latents[2], s, r.cond, r.uncond, true, true), 0, 0));
  }
  for (const char* kind : {"small", "lora"}) {
    SCOPED_TRACE(kind);
    m::ValueNet v(kind, p.model, 2.0, false, 3);
    m::VGGFlowOptions o;
    o.beta = 2.0, o.bins = 2, o.alpha = 10;
    m::VGGFlowStats st;
    for (auto& t : p.lora_params()) t.set_grad(Tensor());
    for (auto& t : v.parameters()) t.set_grad(Tensor());
    Tensor loss = m::vggflow_loss(p, v, *br, r, o, gen, &st);
    ASSERT_TRUE(std::isfinite(loss.item()));
    backward(loss);
    EXPECT_GT(grad_sum(p.lora_params()), 0.0);
    EXPECT_GT(grad_sum(v.parameters()), 0.0);
    EXPECT_GT(st.matching, 0.0);
    EXPECT_GT(st.consistency, 0.0);
    EXPECT_GT(st.clip_threshold, 0.0);
    EXPECT_LE(st.clip_threshold, st.grad_norm_max + 1e-12);
    // the matching loss alone sends nothing to φ
    for (auto& t : v.parameters()) t.set_grad(Tensor());
    for (auto& t : p.lora_params()) t.set_grad(Tensor());
    Tensor x = r.latents[1];
    Tensor ut = p.velocity(x, s, r.cond, r.uncond);
    Tensor g = v.nu(x, s, r.cond, r.uncond);
    backward(m::matching_loss(ut, p.velocity(x, s, r.cond, r.uncond, true, true).detach(), g, 2.0));
    EXPECT_EQ(grad_sum(v.parameters()), 0.0);
    EXPECT_GT(grad_sum(p.lora_params()), 0.0);
  }
  EXPECT_TRUE(throws_error([&] { m::ValueNet("unet", p.model, 1.0, false, 1); }, {"unknown value net 'unet'"}));
}

TEST(Baselines, ReflAndDraftReachTheAdapters) {
  m::Policy p = m::make_policy(small_flow_model(2), 4, 2.0, 9);
  auto br = flow::make_pixel_reward("brightness");
  Generator gen(6);
  m::BaselineStats st;
  for (int which = 0; which < 3; ++which) {
    SCOPED_TRACE(which);
    for (auto& t : p.lora_params()) t.set_grad(Tensor());
    Tensor loss = which == 0   ? m::refl_loss(p, *br, 2, 8, 1.0, true, gen, &st)
                  : which == 1 ? m::draft_loss(p, *br, 2, 8, 1.0, 2, true, gen, &st)
                               : m::draft_lv_loss(p, *br, 2, 8, 1.0, 2, true, gen, &st);
    ASSERT_TRUE(std::isfinite(loss.item()));
    EXPECT_NEAR(loss.item(), which == 2 ? -2 * st.reward : -st.reward, 0.05);  // brightness > 0: ReLU is identity
    backward(loss);
    EXPECT_GT(grad_sum(p.lora_params()), 0.0);
    if (which == 0) {
      EXPECT_GE(st.step, 6);
      EXPECT_LT(st.step, 8);
    }
  }
  EXPECT_TRUE(throws_error([&] { m::draft_loss(p, *br, 2, 8, 1.0, 9, true, gen, &st); }, {"DRaFT-K: K must be"}));
}

}  // namespace
}  // namespace vgg::test
