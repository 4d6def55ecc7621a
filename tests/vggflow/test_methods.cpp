// Alignment methods: VGG-Flow's equations on the exact linear-quadratic fixture (value function
// from the Riccati ODEs, so g = ∇V zeroes the eq. 12 residual), the loss pieces, and end-to-end
// gradient routing of VGG-Flow, ReFL and DRaFT on a small model.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <set>

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
  // (Ṗ, q̇) at the state s = (P row-major, q)
  void rhs(const double* s, double* ds) const {
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
  }
  // (P, q) at time t by RK4 from t = 1 (4000 steps per unit time)
  void pq(double t, double P[D][D], double q[D]) const {
    double y[D * D + D];
    for (int i = 0; i < D; ++i) {
      q[i] = 0;
      for (int j = 0; j < D; ++j) y[i * D + j] = R[i][j], q[i] -= R[i][j] * c[j];
      y[D * D + i] = q[i];
    }
    auto f = [&](const double* s, double* ds) { rhs(s, ds); };
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
  // The same field from differentiable ops, exact in value and first derivatives at the point
  // it is evaluated at: g = (P₀ + (t − t₀)Ṗ₀)x + q₀ + (t − t₀)q̇₀, with (P₀, q₀) at t₀ = 1 − σ's
  // value and (Ṗ₀, q̇₀) the Riccati right-hand sides there; t − t₀ is zero but carries σ's tangent.
  Tensor g_dual(const Tensor& x, const Tensor& sigma) const {
    const int64_t B = x.size(0);
    std::vector<double> sv = ops::to(sigma, DType::F64).to_vector(), P0, Pd, q0, qd, t0;
    for (int64_t b = 0; b < B; ++b) {
      double P[D][D], q[D], s[D * D + D], ds[D * D + D];
      pq(1.0 - sv[static_cast<size_t>(b)], P, q);
      for (int i = 0; i < D; ++i) {
        for (int j = 0; j < D; ++j) s[i * D + j] = P[i][j];
        s[D * D + i] = q[i];
      }
      rhs(s, ds);
      for (int i = 0; i < D * D; ++i) P0.push_back(s[i]), Pd.push_back(ds[i]);
      for (int i = 0; i < D; ++i) q0.push_back(s[D * D + i]), qd.push_back(ds[D * D + i]);
      t0.push_back(1.0 - sv[static_cast<size_t>(b)]);
    }
    auto T = [&](const std::vector<double>& v, Shape sh) { return from_vector(v, sh, opts(DType::F64)); };
    Tensor t = ops::add(ops::neg(ops::to(sigma, DType::F64)), 1.0);
    Tensor dt = ops::reshape(ops::sub(t, T(t0, {B})), {B, 1, 1});
    Tensor Pt = ops::add(T(P0, {B, D, D}), ops::mul(dt, T(Pd, {B, D, D})));
    Tensor qt = ops::add(T(q0, {B, D, 1}), ops::mul(dt, T(qd, {B, D, 1})));
    return ops::reshape(ops::add(ops::matmul(Pt, ops::reshape(x, {B, D, 1})), qt), x.shape());
  }
  // −M x per sample from differentiable ops (M row-major D×D)
  static Tensor minus_linear(const double M[D][D], const Tensor& x) {
    std::vector<double> mt;
    for (int i = 0; i < D; ++i)
      for (int j = 0; j < D; ++j) mt.push_back(M[j][i]);  // Mᵀ
    Tensor y = ops::matmul(ops::reshape(x, {x.size(0), D}), from_vector(mt, {D, D}, opts(DType::F64)));
    return ops::reshape(ops::neg(y), x.shape());
  }
  Tensor u_base_dual(const Tensor& x) const { return minus_linear(A, x); }
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

TEST(VGGFlow, ExactDerivativesZeroTheResidualWhereFiniteDifferencesLeaveTheirBias) {
  LQ lq;
  Tensor x = rnd({3, 1, 2, 2}, 31);
  Tensor sigma = from_vector(std::vector<double>{0.8, 0.45, 0.1}, {3}, opts(DType::F64));
  m::Field g = [&](const Tensor& xp, const Tensor& sp) { return lq.g_dual(xp, sp); };
  m::Field ub = [&](const Tensor& xp, const Tensor&) { return lq.u_base_dual(xp); };
  m::VGGFlowOptions o;
  o.beta = lq.beta;
  ASSERT_TRUE(all_close(lq.g_dual(x, sigma), lq.g(x, sigma), 1e-13, 0));
  const double scale = max_abs(lq.g(x, sigma));
  const double central = max_abs(m::consistency_residual(g, ub, x, sigma, o));  // default ε = 1e-3
  const double exact = max_abs(m::consistency_residual_exact(g, ub, x, sigma, o));
  std::printf("LQ residual (max abs): exact %.3e, central differences %.3e, g scale %.3e\n", exact, central, scale);
  EXPECT_LT(exact, 1e-10 * scale) << "exact " << exact << " scale " << scale;
  EXPECT_LT(100 * exact, central) << "exact " << exact << " central " << central;
  EXPECT_GT(central, 0.0);
  // A is symmetric, so [∇v_base]ᵀg = [∇v_base]g
  o.base_transpose = true;
  EXPECT_LT(max_abs(m::consistency_residual_exact(g, ub, x, sigma, o)), 1e-10 * scale);
  EXPECT_TRUE(throws_error([&] { m::consistency_residual(g, ub, x, sigma, o); }, {"base_transpose needs exact"}));
  o.base_transpose = false;
  // g_at_x is g's value with its graph
  Tensor gx;
  m::consistency_residual_exact(g, ub, x, sigma, o, &gx);
  EXPECT_TRUE(all_close(gx, lq.g(x, sigma), 1e-13, 0));
  // a wrong field and the code's 1/1000 time scale leave a residual, as with differences
  m::Field wrong = [&](const Tensor& xp, const Tensor& sp) { return ops::add(lq.g_dual(xp, sp), 0.1); };
  EXPECT_GT(max_abs(m::consistency_residual_exact(wrong, ub, x, sigma, o)), 1e-3);
  o.fd_time_scale = 1e-3;
  const double scaled_exact = max_abs(m::consistency_residual_exact(g, ub, x, sigma, o));
  EXPECT_GT(scaled_exact, 1e-3);
  EXPECT_NEAR(scaled_exact, max_abs(m::consistency_residual(g, ub, x, sigma, o)), 1e-6 * scale);
  EXPECT_EQ(m::parse_derivatives("exact"), m::Derivatives::Exact);
  EXPECT_EQ(m::parse_derivatives("fd"), m::Derivatives::FiniteDifference);
  EXPECT_TRUE(throws_error([&] { m::parse_derivatives("sideways"); }, {"unknown derivatives 'sideways'"}));
}

// With a non-symmetric base Jacobian the base term is J·g (the differences' limit) or, with
// base_transpose, Jᵀg; with base_direction_grad the gradient reaches g through either.
TEST(VGGFlow, ExactBaseTermIsTheJacobianOrItsTranspose) {
  const double An[D][D] = {{0.2, 0.5, 0.0, -0.3}, {0.0, -0.1, 0.4, 0.0}, {0.7, 0.0, 0.3, 0.2}, {0.0, -0.6, 0.1, 0.5}};
  Tensor x = rnd({2, 1, 2, 2}, 7), c = rnd({2, 1, 2, 2}, 8).requires_grad_(true), k = rnd({2, 1, 2, 2}, 9);
  Tensor sigma = from_vector(std::vector<double>{0.3, 0.6}, {2}, opts(DType::F64));
  m::Field g = [&](const Tensor&, const Tensor&) { return ops::mul(c, 1.0); };  // constant in (x, t)
  m::Field ub = [&](const Tensor& xp, const Tensor&) { return LQ::minus_linear(An, xp); };
  auto apply = [&](const Tensor& v, bool transpose) {  // (An or Anᵀ)·v per sample
    std::vector<double> vv = v.to_vector(), out(vv.size(), 0.0);
    for (size_t b = 0; b < vv.size() / D; ++b)
      for (int i = 0; i < D; ++i)
        for (int j = 0; j < D; ++j) out[b * D + i] += (transpose ? An[j][i] : An[i][j]) * vv[b * D + j];
    return from_vector(out, v.shape(), opts(DType::F64));
  };
  m::VGGFlowOptions o;
  for (bool transpose : {false, true})
    for (bool through : {false, true}) {
      SCOPED_TRACE(std::string(transpose ? "transpose" : "jacobian") + (through ? ", through g" : ", sg[g]"));
      o.base_transpose = transpose, o.base_direction_grad = through;
      Tensor r = m::consistency_residual_exact(g, ub, x, sigma, o);
      EXPECT_TRUE(all_close(r, apply(c.detach(), transpose), 1e-14, 1e-12));  // v_base = An x
      if (through) {
        std::vector<Tensor> gc = grad({ops::sum(ops::mul(r, k))}, {c});
        EXPECT_TRUE(all_close(gc[0], apply(k, !transpose), 1e-14, 1e-12));
      } else {
        EXPECT_FALSE(r.requires_grad());  // sg[g]: no path to g
      }
    }
  // the differences give J·g, the exact mode's default
  o.base_transpose = false, o.base_direction_grad = false;
  EXPECT_TRUE(all_close(m::consistency_residual(g, ub, x, sigma, o), apply(c.detach(), false), 1e-9, 1e-9));
  EXPECT_FALSE(all_close(apply(c.detach(), false), apply(c.detach(), true), 1e-3, 0));
}

// 500·contrast + 200·symmetry: a gradient term of the size of ν_φ, a non-zero Hessian, and gradient
// norms that vary with x (the contrast gradient alone has a constant norm, which would leave the
// clip's derivative untested).
class MixedReward : public flow::Reward {
 public:
  std::string name() const override { return "mixed"; }
  Tensor operator()(const Tensor& x) const override {
    return ops::add(ops::mul((*contrast_)(x), 500.0), ops::mul((*symmetry_)(x), 200.0));
  }

 private:
  std::unique_ptr<flow::Reward> contrast_ = flow::make_pixel_reward("contrast");
  std::unique_ptr<flow::Reward> symmetry_ = flow::make_pixel_reward("symmetry");
};

// The small model in f64 with MixedReward, non-zero adapters (the policy differs from the base)
// and ν_φ at full output scale, at three transitions.
struct SmallConfig {
  m::Policy p;
  std::unique_ptr<m::ValueNet> v;
  std::unique_ptr<flow::Reward> reward = std::make_unique<MixedReward>();
  flow::Conditioning cond, uncond;
  Tensor x = ops::mul(rnd({3, 1, 32, 32}, 41),
                      from_vector(std::vector<double>{0.5, 0.8, 1.1}, {3, 1, 1, 1}, opts(DType::F64)));
  // dyadic σ and steps: the f32 timestep casts of the networks are exact at the shifted times
  Tensor sigma = from_vector(std::vector<double>{0.75, 0.5, 0.25}, {3}, opts(DType::F64));
  double thr = 0;
  m::VGGFlowOptions o;
  SmallConfig() {
    p = small_f64_policy();
    v = std::make_unique<m::ValueNet>("small", p.model, 2.0, false, 3);
    for (auto& [n, t] : v->net().named_parameters())
      if (n == "proj_out.weight") {
        NoGradGuard ng;
        ops::mul_(t, 1e3);
      }
    cond = p.model.prompts->encode(from_vector(std::vector<int64_t>{1, 4, 7}, {3}));
    const int64_t e = p.model.prompts->empty_id();
    uncond = p.model.prompts->encode(from_vector(std::vector<int64_t>{e, e, e}, {3}));
    // a clip threshold between the two smallest reward-gradient norms: one sample kept, two clipped
    Tensor u;
    {
      NoGradGuard ng;
      u = p.velocity(x, sigma, cond, uncond);
    }
    std::vector<double> n = m::per_sample_norms(m::reward_gradient(*reward, m::forward_looking_x1(x, sigma, u)).grad);
    std::sort(n.begin(), n.end());
    thr = 0.5 * (n[0] + n[1]);
    std::printf("reward-gradient norms %.4f %.4f %.4f, clip threshold %.4f\n", n[0], n[1], n[2], thr);
    o.beta = 2.0;
  }
  m::Field g() const { return m::value_gradient_field(p, *v, *reward, cond, uncond, o.eta, thr); }
  m::FieldJvp g_jvp() const { return m::value_gradient_jvp(p, *v, *reward, cond, uncond, o.eta, thr); }
  m::Field ub() const { return m::base_velocity_field(p, cond, uncond); }
};

TEST(VGGFlow, FiniteDifferencesConvergeToTheExactResidualOnASmallModel) {
  SmallConfig s;
  Tensor g0, ub0;
  {
    NoGradGuard ng;
    g0 = s.g()(s.x, s.sigma);
    ub0 = s.ub()(s.x, s.sigma);
  }
  ASSERT_EQ(g0.dtype(), DType::F64);
  // the pieces are not negligible: ν_φ and the reward term are of comparable size
  Tensor nu0;
  {
    NoGradGuard ng;
    nu0 = s.v->nu(s.x, s.sigma, s.cond, s.uncond);
  }
  EXPECT_GT(max_abs(nu0), 0.05 * max_abs(g0));
  EXPECT_GT(max_abs(ops::sub(g0, nu0)), 0.05 * max_abs(g0));
  Tensor gx;
  Tensor exact = m::consistency_residual_from_jvp(g0, ub0, s.g_jvp(), s.ub(), s.x, s.sigma, s.o, &gx);
  EXPECT_TRUE(all_close(gx, g0, 1e-12, 1e-10));
  const double scale = max_abs(exact);
  ASSERT_GT(scale, 0.0);
  for (bool central : {true, false}) {
    SCOPED_TRACE(central ? "central" : "one-sided");
    m::VGGFlowOptions o = s.o;
    o.central = central;
    std::vector<double> err;
    // the networks see τ = 1000σ through sinusoids of up to 1 rad per τ unit, so g varies in t
    // on a scale of 1e-3: the differences are asymptotic only for ε well below that
    for (double eps : {std::ldexp(1.0, -14), std::ldexp(1.0, -15)}) {
      o.fd_eps = eps;
      err.push_back(max_abs(ops::sub(m::consistency_residual(s.g(), s.ub(), s.x, s.sigma, o), exact)) / scale);
    }
    // central: O(ε²), halving ε divides the error by 4; one-sided: O(ε), by 2
    const double ratio = err[0] / err[1];
    std::printf("%s differences: relative error %.3e (eps 2^-14), %.3e (eps 2^-15), ratio %.2f\n",
                central ? "central" : "one-sided", err[0], err[1], ratio);
    if (central) {
      EXPECT_GT(ratio, 3.2);
      EXPECT_LT(ratio, 4.8);
      EXPECT_LT(err[1], 1e-2);
    } else {
      EXPECT_GT(ratio, 1.6);
      EXPECT_LT(ratio, 2.4);
    }
  }
  // the time-scaled variant also converges
  m::VGGFlowOptions o = s.o;
  o.fd_time_scale = 1e-3, o.fd_eps = std::ldexp(1.0, -15);
  Tensor ex2 = m::consistency_residual_from_jvp(g0, ub0, s.g_jvp(), s.ub(), s.x, s.sigma, o);
  EXPECT_LT(max_abs(ops::sub(m::consistency_residual(s.g(), s.ub(), s.x, s.sigma, o), ex2)), 1e-2 * max_abs(ex2));
  EXPECT_GT(max_abs(ops::sub(ex2, exact)), 1e-3 * scale);
}

// d/dφ of the exact consistency loss (gradients through the forward-mode tangents, and with
// base_direction_grad through the base network's tangent) against central differences in φ.
TEST(VGGFlow, ExactConsistencyLossGradientMatchesDifferencesInPhi) {
  SmallConfig s;
  Tensor g0, ub0;
  {
    NoGradGuard ng;
    g0 = s.g()(s.x, s.sigma);
    ub0 = s.ub()(s.x, s.sigma);
  }
  std::vector<Tensor> ps = s.v->parameters();
  std::vector<std::string> names = s.v->parameter_names();
  for (bool through : {false, true}) {
    SCOPED_TRACE(through ? "base_direction_grad" : "sg[g]");
    m::VGGFlowOptions o = s.o;
    o.base_direction_grad = through;
    // the directions are fixed by (g0, ub0), so the loss is a function of φ through ν_φ only
    auto loss = [&] {
      return ops::mean(ops::square(m::consistency_residual_from_jvp(g0, ub0, s.g_jvp(), s.ub(), s.x, s.sigma, o)));
    };
    std::vector<Tensor> gr = grad({loss()}, ps, {}, false, /*allow_unused=*/true);
    // the output projection and the largest-gradient parameter tensor of the blocks
    size_t out = ps.size(), blk = ps.size();
    double best = -1;
    for (size_t i = 0; i < ps.size(); ++i) {
      if (!gr[i].defined()) continue;
      if (names[i] == "proj_out.weight") out = i;
      else if (names[i].find("blocks") != std::string::npos && max_abs(gr[i]) > best) best = max_abs(gr[i]), blk = i;
    }
    ASSERT_LT(out, ps.size());
    ASSERT_LT(blk, ps.size());
    for (size_t i : {out, blk}) {
      // the entry with the largest gradient
      std::vector<double> gv = gr[i].to_vector();
      size_t k = 0;
      for (size_t j = 0; j < gv.size(); ++j)
        if (std::abs(gv[j]) > std::abs(gv[k])) k = j;
      ASSERT_TRUE(ps[i].is_contiguous());
      double* d = ps[i].data<double>() + k;
      const double orig = *d, h = 1e-5 * std::max(1.0, std::abs(orig));
      double lp, lm;
      {
        NoGradGuard ng;
        *d = orig + h;
        lp = loss().item();
        *d = orig - h;
        lm = loss().item();
        *d = orig;
      }
      const double fd = (lp - lm) / (2 * h);
      std::printf("%s %s[%zu]: autograd %.10e, central difference %.10e\n", through ? "through g" : "sg[g]",
                  names[i].c_str(), k, gv[k], fd);
      EXPECT_GT(std::abs(gv[k]), 0.0);
      EXPECT_NEAR(gv[k], fd, 1e-6 * std::abs(fd) + 1e-12) << names[i] << "[" << k << "]";
    }
  }
  // the transpose through g needs double backward through the base network's fused attention
  m::VGGFlowOptions o = s.o;
  o.base_transpose = true, o.base_direction_grad = true;
  EXPECT_TRUE(throws_error([&] { m::consistency_residual_from_jvp(g0, ub0, s.g_jvp(), s.ub(), s.x, s.sigma, o); },
                           {"double backward"}));
  o.base_direction_grad = false;  // with sg[g] the transpose is a plain vector-Jacobian product
  Tensor rt = m::consistency_residual_from_jvp(g0, ub0, s.g_jvp(), s.ub(), s.x, s.sigma, o);
  o.base_transpose = false;
  Tensor rj = m::consistency_residual_from_jvp(g0, ub0, s.g_jvp(), s.ub(), s.x, s.sigma, o);
  EXPECT_TRUE(std::isfinite(max_abs(rt)));
  EXPECT_GT(max_abs(ops::sub(rt, rj)), 1e-6 * max_abs(rj));  // a learned base is not symmetric
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
  std::set<int64_t> bin0;
  for (int rep = 0; rep < 200; ++rep) {
    std::vector<int64_t> idx = m::subsample_transitions(20, 5, gen);
    ASSERT_EQ(idx.size(), 6u);
    for (int64_t b = 0; b < 5; ++b) {
      EXPECT_GE(idx[static_cast<size_t>(b)], std::max<int64_t>(4 * b, 1));  // never t = 0
      EXPECT_LT(idx[static_cast<size_t>(b)], 4 * b + 4);
    }
    bin0.insert(idx[0]);
    EXPECT_EQ(idx[5], 19);
  }
  EXPECT_EQ(bin0, (std::set<int64_t>{1, 2, 3}));  // bin 0 is {1, 1, 2, 3}: every state but x_0 is reached
  // one step per bin: the bins are the steps, step 0 clamped to 1; a one-step schedule keeps step 0
  EXPECT_EQ(m::subsample_transitions(3, 3, gen), (std::vector<int64_t>{1, 1, 2, 2}));
  EXPECT_EQ(m::subsample_transitions(1, 1, gen), (std::vector<int64_t>{0, 0}));
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
    EXPECT_GT(grad_abs_sum(p.lora_params()), 0.0);
    EXPECT_GT(grad_abs_sum(v.parameters()), 0.0);
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
    EXPECT_EQ(grad_abs_sum(v.parameters()), 0.0);
    EXPECT_GT(grad_abs_sum(p.lora_params()), 0.0);
  }
  EXPECT_TRUE(throws_error([&] { m::ValueNet("unet", p.model, 1.0, false, 1); }, {"unknown value net 'unet'"}));
}

// vggflow_loss with exact derivatives (f32, the trainer's setting): the same transitions and
// matching loss as with differences, a consistency loss of the same size, gradients to θ and φ.
TEST(VGGFlow, OneUpdateWithExactDerivatives) {
  m::Policy p = m::make_policy(small_flow_model(1), 4, 2.0, 9);
  auto br = flow::make_pixel_reward("contrast");
  Generator gen(5);
  m::Rollout r = m::sample_rollout(p, 3, 4, 1.0, gen);
  m::ValueNet v("small", p.model, 2.0, false, 3);
  m::VGGFlowOptions o;
  o.beta = 2.0, o.bins = 2, o.alpha = 10;
  m::VGGFlowStats fd, ex;
  Generator g1(8), g2(8);
  {
    NoGradGuard ng;
    m::vggflow_loss(p, v, *br, r, o, g1, &fd);
  }
  o.derivatives = m::Derivatives::Exact;
  for (auto& t : p.lora_params()) t.set_grad(Tensor());
  for (auto& t : v.parameters()) t.set_grad(Tensor());
  Tensor loss = m::vggflow_loss(p, v, *br, r, o, g2, &ex);
  ASSERT_TRUE(std::isfinite(loss.item()));
  EXPECT_NEAR(ex.matching, fd.matching, 1e-6 * fd.matching);
  EXPECT_EQ(ex.clip_threshold, fd.clip_threshold);
  EXPECT_GT(ex.consistency, 0.0);
  EXPECT_NEAR(ex.consistency, fd.consistency, 0.5 * fd.consistency);
  backward(loss);
  EXPECT_GT(grad_abs_sum(p.lora_params()), 0.0);
  EXPECT_GT(grad_abs_sum(v.parameters()), 0.0);
  std::printf("consistency loss: differences %.6e, exact %.6e\n", fd.consistency, ex.consistency);
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
    EXPECT_GT(grad_abs_sum(p.lora_params()), 0.0);
    if (which == 0) {
      EXPECT_GE(st.step, 6);
      EXPECT_LT(st.step, 8);
    }
  }
  EXPECT_TRUE(throws_error([&] { m::draft_loss(p, *br, 2, 8, 1.0, 9, true, gen, &st); }, {"DRaFT-K: K must be"}));
}

}  // namespace
}  // namespace vgg::test
