#include "vggflow/methods/vggflow.h"

#include <cmath>

#include "autograd/engine.h"
#include "autograd/forward_ad.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/layers.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace vgg::flow::methods {

Eta parse_eta(const std::string& s) {
  if (s == "t2" || s == "quad") return Eta::Quadratic;
  if (s == "t" || s == "linear") return Eta::Linear;
  if (s == "1" || s == "constant") return Eta::Constant;
  VGG_FAIL("unknown eta schedule '", s, "' (t2, t or 1)");
}

LossWeighting parse_loss_weighting(const std::string& s) {
  if (s == "paper") return LossWeighting::Paper;
  if (s == "code") return LossWeighting::Code;
  VGG_FAIL("unknown loss weighting '", s, "' (paper or code)");
}

Derivatives parse_derivatives(const std::string& s) {
  if (s == "fd") return Derivatives::FiniteDifference;
  if (s == "exact") return Derivatives::Exact;
  VGG_FAIL("unknown derivatives '", s, "' (fd or exact)");
}

Tensor eta_tangent(Eta e, const Tensor& sigma, const Tensor& dsigma, const Tensor& like) {
  // t = 1 − σ, dt = −dσ: d(t²) = 2t·dt, d(t) = dt, d(1) = 0
  Tensor dt = ops::neg(ops::to(dsigma, DType::F64));
  Tensor t = ops::sub(ones(sigma.shape(), opts(DType::F64, sigma.device())), ops::to(sigma, DType::F64));
  Tensor d = e == Eta::Quadratic ? ops::mul(ops::mul(t, dt), 2.0)
             : e == Eta::Linear  ? dt
                                 : zeros(sigma.shape(), opts(DType::F64, sigma.device()));
  return per_sample(d, like);
}

Tensor eta_weight(Eta e, const Tensor& sigma, const Tensor& like) {
  Tensor t = ops::sub(ones(sigma.shape(), opts(DType::F64, sigma.device())), ops::to(sigma, DType::F64));
  Tensor w = e == Eta::Quadratic ? ops::square(t) : e == Eta::Linear ? t : ones(sigma.shape(), opts(DType::F64, sigma.device()));
  return per_sample(w, like);
}

// ---------------------------------------------------------------------------------------------
// ν_φ

ValueNet::ValueNet(const std::string& kind, const FlowModel& base, double beta, bool prompt_free, uint64_t seed,
                   Device device)
    : kind_(kind), beta_(beta), prompt_free_(prompt_free) {
  VGG_CHECK(beta > 0, "value net: beta must be > 0, got ", beta);
  Generator g(seed, 77);
  nn::LayerOptions o{base.net->param_dtype(), device, &g};  // f32 for the shipped base
  if (kind == "small") {
    nn::MMDiTConfig c = base.cfg;
    c.num_layers = 2;
    c.num_attention_heads = 2;
    c.attention_head_dim = 32;
    c.caption_projection_dim = 64;
    c.qk_norm = false;
    c.dual_attention_layers.clear();
    net_ = std::make_shared<nn::MMDiT>(c, o);
    for (auto& [n, t] : net_->named_parameters()) {
      if (n == "proj_out.weight") {
        NoGradGuard ng;
        ops::mul_(t, 1e-3);
      }
      params_.push_back(t);
      names_.push_back(n);
    }
  } else if (kind == "lora") {
    net_ = std::make_shared<nn::MMDiT>(base.cfg, o);
    net_->load_state_dict(base.net->state_dict());
    net_->requires_grad_(false);
    nn::LoRAConfig lc;
    lc.rank = 8, lc.alpha = 8, lc.seed = seed + 1;
    nn::attach_lora(*net_, lc);
    for (auto& [n, m] : nn::lora_modules(*net_)) {
      params_.push_back(m->lora_A), names_.push_back(n + ".lora_A.weight");
      params_.push_back(m->lora_B), names_.push_back(n + ".lora_B.weight");
    }
    for (auto& [n, t] : net_->named_parameters())
      if (n == "proj_out.weight") {
        NoGradGuard ng;
        ops::mul_(t, 1e-5);
        t.requires_grad_(true);
        params_.push_back(t), names_.push_back(n);
      }
  } else {
    VGG_FAIL("unknown value net '", kind, "' (small or lora)");
  }
}

Tensor ValueNet::nu(const Tensor& x, const Tensor& sigma, const Conditioning& cond, const Conditioning& uncond) const {
  const Conditioning& c = prompt_free_ ? uncond : cond;
  Tensor out = forward_on_device(*net_, x, ops::mul(ops::to(sigma, DType::F32), 1000.0), c.context, c.pooled);
  return ops::mul(out, 1.0 / beta_);
}

Field ValueNet::field(const Conditioning& cond, const Conditioning& uncond) const {
  const ValueNet* vp = this;
  const Conditioning* cp = &cond;
  const Conditioning* up = &uncond;
  return [=](const Tensor& x, const Tensor& s) { return vp->nu(x, s, *cp, *up); };
}

void ValueNet::zero_output() {
  NoGradGuard ng;
  for (auto& [n, t] : net_->named_parameters())
    if (n == "proj_out.weight" || n == "proj_out.bias") ops::mul_(t, 0.0);
}

nn::NamedTensors ValueNet::state() const {
  nn::NamedTensors sd;
  if (kind_ == "small") return net_->state_dict();
  for (size_t i = 0; i < params_.size(); ++i) sd.emplace_back(names_[i], params_[i]);
  return sd;
}

void ValueNet::load_state(const nn::NamedTensors& sd) {
  if (kind_ == "small") {
    net_->load_state_dict(sd);
    return;
  }
  VGG_CHECK(sd.size() == params_.size(), "value net state: expected ", params_.size(), " tensors, got ", sd.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    VGG_CHECK(sd[i].first == names_[i] && sd[i].second.shape() == params_[i].shape(), "value net state: tensor ", i,
              " is ", sd[i].first, " ", describe(sd[i].second), ", expected ", names_[i], " ", describe(params_[i]));
    NoGradGuard ng;
    ops::copy_(params_[i], sd[i].second);
  }
}

// ---------------------------------------------------------------------------------------------
// the equations

Tensor forward_looking_x1(const Tensor& x, const Tensor& sigma, const Tensor& u) {
  return ops::sub(x, ops::mul(per_sample(sigma, x), u.detach()));
}

Tensor value_gradient(const Tensor& reward_grad, const Tensor& nu, const Tensor& eta) {
  return ops::add(ops::neg(ops::mul(ops::to(eta, nu.dtype()), ops::to(reward_grad.detach(), nu.dtype()))), nu);
}

Tensor matching_loss(const Tensor& u_theta, const Tensor& u_base, const Tensor& g, double beta) {
  Tensor target = ops::add(u_base.detach(), ops::mul(g.detach(), beta));
  return ops::mean(ops::square(ops::sub(u_theta, target)));
}

namespace {

// Per-sample step h_i = eps / max(rms(d_i), 1) as [B, 1, ..., 1]: a relative step for large
// directions, eps otherwise.
Tensor fd_step(const Tensor& d, double eps) {
  NoGradGuard ng;
  Tensor flat = ops::reshape(ops::to(d, DType::F64), {d.size(0), -1});
  Tensor rms = ops::sqrt(ops::mean(ops::square(flat), {1}));
  Tensor h = ops::div(full({d.size(0)}, eps, opts(DType::F64, d.device())), ops::maximum(rms, ones({d.size(0)}, opts(DType::F64, d.device()))));
  return per_sample(h, d);
}

}  // namespace

Tensor consistency_residual(const Field& g, const Field& u_base, const Tensor& x, const Tensor& sigma,
                            const VGGFlowOptions& o) {
  return consistency_residual_with_g(g, u_base, x, sigma, o, nullptr);
}

Tensor consistency_residual_with_g(const Field& g, const Field& u_base, const Tensor& x, const Tensor& sigma,
                                   const VGGFlowOptions& o, Tensor* g_at_x) {
  VGG_CHECK(o.fd_eps > 0, "consistency: the finite-difference step must be > 0, got ", o.fd_eps);
  VGG_CHECK(!o.base_transpose, "consistency: base_transpose needs exact derivatives (a finite difference gives J·g)");
  const double eps = o.fd_eps;
  Tensor g0 = g(x, sigma);
  if (g_at_x) *g_at_x = g0;
  Tensor sig64 = ops::to(sigma, DType::F64);
  auto shifted_sigma = [&](double dt) { return ops::to(ops::add(sig64, -dt), sigma.dtype()); };  // t + dt
  // (43) ∂_t g, t = 1 − σ
  Tensor dg_dt = o.central ? ops::mul(ops::sub(g(x, shifted_sigma(eps)), g(x, shifted_sigma(-eps))), 1.0 / (2 * eps))
                           : ops::mul(ops::sub(g(x, shifted_sigma(eps)), g0), 1.0 / eps);
  if (o.fd_time_scale != 1.0) dg_dt = ops::mul(dg_dt, o.fd_time_scale);
  // (44) [∇g]·w with w = sg[v_base − β g] = sg[−u_base − β g]
  Tensor ub0;
  {
    NoGradGuard ng;
    ub0 = u_base(x, sigma);
  }
  Tensor w = ops::sub(ops::neg(ub0), ops::mul(g0.detach(), o.beta)).detach();
  Tensor h = fd_step(w, eps);
  Tensor hw = ops::mul(ops::to(h, w.dtype()), w);
  Tensor jg_w = o.central ? ops::div(ops::sub(g(ops::add(x, hw), sigma), g(ops::sub(x, hw), sigma)), ops::mul(ops::to(h, x.dtype()), 2.0))
                          : ops::div(ops::sub(g(ops::add(x, hw), sigma), g0), ops::to(h, x.dtype()));
  // (45) [∇v_base]·g along sg[g] (paper) or g (code), v_base = −u_base
  Tensor dir = o.base_direction_grad ? g0 : g0.detach();
  Tensor h2 = ops::to(fd_step(g0.detach(), eps), x.dtype());
  Tensor jv_g;
  {
    GradModeGuard gm(o.base_direction_grad && grad_enabled());
    Tensor hd = ops::mul(h2, dir);
    Tensor plus = u_base(ops::add(x, hd), sigma);
    Tensor minus = o.central ? u_base(ops::sub(x, hd), sigma) : ub0;
    jv_g = ops::neg(ops::div(ops::sub(plus, minus), o.central ? ops::mul(h2, 2.0) : h2));
  }
  return ops::add(ops::add(dg_dt, jg_w), jv_g);
}

// ---------------------------------------------------------------------------------------------
// exact derivatives (the ε → 0 limit of the differences above)

namespace {

// The tangent of y at the open level, zeros when y does not depend on the dual inputs.
Tensor tangent_or_zeros(const Tensor& y) {
  Tensor t = fwad::tangent(y);
  return t.defined() ? t : zeros_like(y);
}

Tensor dual(const Tensor& t, const Tensor& dt) { return dt.defined() ? fwad::make_dual(t, dt) : t; }

}  // namespace

FieldJvp forward_mode_jvp(const Field& f) {
  return [f](const Tensor& x, const Tensor& sigma, const Tensor& dx, const Tensor& dsigma) {
    auto [ys, ts] = fwad::jvp([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{f(in[0], in[1])}; },
                              {x, sigma}, {dx, dsigma});
    return FieldTangent{ys[0], ts[0]};
  };
}

Tensor consistency_residual_exact(const Field& g, const Field& u_base, const Tensor& x, const Tensor& sigma,
                                  const VGGFlowOptions& o, Tensor* g_at_x) {
  Tensor g0, ub0;
  {
    NoGradGuard ng;
    g0 = g(x, sigma);
    ub0 = u_base(x, sigma);
  }
  return consistency_residual_from_jvp(g0, ub0, forward_mode_jvp(g), u_base, x, sigma, o, g_at_x);
}

Tensor consistency_residual_from_jvp(const Tensor& g0, const Tensor& ub0, const FieldJvp& g_jvp, const Field& u_base,
                                     const Tensor& x, const Tensor& sigma, const VGGFlowOptions& o, Tensor* g_at_x) {
  VGG_CHECK(!fwad::level_open(), "consistency (exact): a forward-AD level is already open (levels do not nest)");
  const bool outer_grad = grad_enabled();
  // (43) + (44): fd_time_scale·∂_t g + [∇g]·w in one directional derivative along (w, dt = ts),
  // i.e. dσ = −ts; w = sg[v_base − β g] = sg[−u_base − β g] (the FD version's direction)
  Tensor w = ops::sub(ops::neg(ub0.detach()), ops::mul(g0.detach(), o.beta)).detach();
  Tensor dsigma = full({sigma.size(0)}, -o.fd_time_scale, opts(sigma.dtype(), sigma.device()));
  FieldTangent gt = g_jvp(x, sigma, ops::to(w, x.dtype()), dsigma);
  if (g_at_x) *g_at_x = gt.value;
  // (45) [∇v_base]·g (or its transpose), v_base = −u_base, along sg[g] (paper) or g (code)
  Tensor dir = o.base_direction_grad ? gt.value : g0.detach();
  dir = ops::to(dir, x.dtype());
  const bool through_dir = o.base_direction_grad && outer_grad;
  Tensor ju;
  if (!o.base_transpose) {
    GradModeGuard gm(through_dir);
    fwad::DualLevel level;
    ju = tangent_or_zeros(u_base(fwad::make_dual(x, dir), sigma));
  } else {
    GradModeGuard gm(true);
    Tensor xi = x.detach().requires_grad_(true);
    Tensor y = u_base(xi, sigma);
    if (y.requires_grad()) {
      // create_graph keeps [∇u_base]ᵀ·dir differentiable in dir (its only path to φ)
      ju = grad({y}, {xi}, {ops::to(through_dir ? dir : dir.detach(), y.dtype())}, /*create_graph=*/through_dir,
                /*allow_unused=*/true)[0];
    }
    if (!ju.defined()) ju = zeros_like(x);
    if (!through_dir) ju = ju.detach();
  }
  return ops::sub(gt.tangent, ops::to(ju, gt.tangent.dtype()));
}

Field value_gradient_field(const Field& policy, const Field& nu, const Reward& reward, Eta eta, double clip_threshold) {
  const Reward* rp = &reward;
  return [=](const Tensor& xp, const Tensor& sp) {
    Tensor u;
    {
      NoGradGuard ng;
      u = policy(xp, sp);
    }
    RewardGrad rg = reward_gradient(*rp, forward_looking_x1(xp, sp, u));
    return value_gradient(clip_per_sample(rg.grad, clip_threshold), nu(xp, sp), eta_weight(eta, sp, xp));
  };
}

Field value_gradient_field(const Policy& p, const ValueNet& value, const Reward& reward, const Conditioning& cond,
                           const Conditioning& uncond, Eta eta, double clip_threshold) {
  return value_gradient_field(policy_field(p, cond, uncond, true), value.field(cond, uncond), reward, eta, clip_threshold);
}

FieldJvp value_gradient_jvp(const Policy& p, const ValueNet& value, const Reward& reward, const Conditioning& cond,
                            const Conditioning& uncond, Eta eta, double clip_threshold) {
  return value_gradient_jvp(policy_field(p, cond, uncond, false), value.field(cond, uncond), reward, eta, clip_threshold);
}

FieldJvp value_gradient_jvp(const Field& policy_x, const Field& nu_field, const Reward& reward, Eta eta,
                            double clip_threshold) {
  const Reward* rp = &reward;
  return [=](const Tensor& x, const Tensor& sigma, const Tensor& dx0, const Tensor& ds0) {
    VGG_CHECK(!fwad::level_open(), "value_gradient_jvp: a forward-AD level is already open (levels do not nest)");
    const Tensor dx = dx0.defined() ? dx0 : zeros_like(x);
    const Tensor ds = ds0.defined() ? ds0 : zeros_like(sigma);
    // the policy velocity u and its JVP, no graph (as the FD version's no-graph pass); both CFG
    // branches carry the tangent (the stop-gradient on the unconditional branch is for θ only)
    Tensor u, du;
    {
      NoGradGuard ng;
      fwad::DualLevel level;
      Tensor y = policy_x(dual(x, dx), dual(sigma, ds));
      du = tangent_or_zeros(y).detach();
      u = y.detach();
    }
    // x̂₁ = x − σ u, d x̂₁ = dx − dσ·u − σ·du
    Tensor x1 = forward_looking_x1(x, sigma, u);
    Tensor dx1 = ops::sub(ops::sub(dx, ops::mul(per_sample(ds, x), u)), ops::mul(per_sample(sigma, x), du)).detach();
    // ∇r(x̂₁) and H_r(x̂₁)·d x̂₁ by double backward
    Tensor q, hq;
    {
      GradModeGuard gm(true);
      Tensor xi = x1.detach().requires_grad_(true);
      Tensor rv = (*rp)(xi);
      Tensor gq = grad({ops::sum(rv)}, {xi}, {}, /*create_graph=*/true)[0];
      if (gq.requires_grad())
        hq = grad({ops::sum(ops::mul(gq, ops::to(dx1, gq.dtype())))}, {xi}, {}, false, /*allow_unused=*/true)[0];
      q = gq.detach();
    }
    if (!hq.defined()) hq = zeros_like(q);
    hq = hq.detach();
    // per-sample clip s·q with s = threshold/‖q‖ when ‖q‖ > threshold:
    //   d(s q) = s·(dq − q̂⟨q̂, dq⟩), q̂ = q/‖q‖ (the threshold is a constant of the update)
    Tensor qc = clip_per_sample(q, clip_threshold), dqc;
    {
      NoGradGuard ng;
      const int64_t B = q.size(0);
      std::vector<double> n = per_sample_norms(q);
      Tensor q64 = ops::reshape(ops::to(q, DType::F64), {B, -1}), hq64 = ops::reshape(ops::to(hq, DType::F64), {B, -1});
      std::vector<double> dots = ops::sum(ops::mul(q64, hq64), {1}).to_vector();
      std::vector<double> a(static_cast<size_t>(B)), b(static_cast<size_t>(B));
      for (size_t i = 0; i < n.size(); ++i) {
        const bool clipped = n[i] > clip_threshold;
        const double s = clipped ? clip_threshold / n[i] : 1.0;
        a[i] = s;
        b[i] = clipped ? s * dots[i] / (n[i] * n[i]) : 0.0;
      }
      dqc = ops::sub(ops::mul(hq, per_sample(from_vector(a, {B}, opts(DType::F64)), hq)),
                     ops::mul(q, per_sample(from_vector(b, {B}, opts(DType::F64)), q)));
    }
    // ν_φ and its tangent, with the graph to φ (reverse-over-forward)
    Tensor nu, dnu;
    {
      fwad::DualLevel level;
      nu = nu_field(dual(x, dx), dual(sigma, ds));
      dnu = tangent_or_zeros(nu);
    }
    // g = −η·clip(q) + ν, dg = −(dη·clip(q) + η·d clip(q)) + dν
    Tensor eta_w = eta_weight(eta, sigma, x), deta = eta_tangent(eta, sigma, ds, x);
    Tensor g = value_gradient(qc, nu, eta_w);
    Tensor dterm = ops::add(ops::mul(ops::to(deta, nu.dtype()), ops::to(qc, nu.dtype())),
                            ops::mul(ops::to(eta_w, nu.dtype()), ops::to(dqc, nu.dtype())));
    return FieldTangent{g, ops::sub(dnu, dterm)};
  };
}

Tensor boundary_loss(const Tensor& nu_at_x1) { return ops::mean(ops::square(nu_at_x1)); }

std::vector<int64_t> subsample_transitions(int64_t steps, int64_t bins, Generator& gen) {
  VGG_CHECK(steps >= 1 && bins >= 1 && bins <= steps, "transition subsampling: need 1 <= bins (", bins,
            ") <= steps (", steps, ")");
  std::vector<double> u = rand({bins}, opts(DType::F64), &gen).to_vector();
  // never the pure-noise state x_0 at t = 0 (σ = 1), where eq. 43's central difference would
  // evaluate σ > 1: a draw of step 0 moves to step 1, as the official code clamps (bin 0 of 20
  // steps in 5 bins becomes {1, 1, 2, 3}); a one-step schedule has only step 0
  const int64_t first = std::min<int64_t>(1, steps - 1);
  std::vector<int64_t> idx;
  for (int64_t b = 0; b < bins; ++b) {
    const int64_t lo = b * steps / bins, hi = (b + 1) * steps / bins;  // [lo, hi)
    const int64_t k = std::min(hi - 1, lo + static_cast<int64_t>(u[static_cast<size_t>(b)] * static_cast<double>(hi - lo)));
    idx.push_back(std::max(k, first));
  }
  idx.push_back(steps - 1);
  return idx;
}

Tensor vggflow_loss(const Fields& f, const Field& nu, const Reward& reward, const std::vector<Tensor>& xs,
                    const std::vector<float>& sigmas, const VGGFlowOptions& o, Generator& gen, VGGFlowStats* stats) {
  VGG_CHECK(xs.size() == sigmas.size() && xs.size() >= 2, "vggflow_loss: need N + 1 >= 2 states for N + 1 sigmas, got ",
            xs.size(), " and ", sigmas.size());
  const int64_t B = xs[0].size(0), N = static_cast<int64_t>(sigmas.size()) - 1;
  std::vector<std::vector<int64_t>> idx;
  for (int64_t i = 0; i < B; ++i) idx.push_back(subsample_transitions(N, o.bins, gen));
  const size_t slots = idx[0].size();
  const bool code = o.weighting == LossWeighting::Code;
  VGGFlowStats st;
  std::vector<double> all_norms;
  Tensor total;
  for (size_t j = 0; j < slots; ++j) {
    std::vector<int64_t> k;
    for (const auto& v : idx) k.push_back(v[j]);
    Tensor x = gather_slot(xs, k), sigma = slot_sigmas(sigmas, k, x.device());
    // the policy at the transition, with the graph to θ (matching loss)
    Tensor u_theta = f.theta(x, sigma);
    RewardGrad rg0 = reward_gradient(reward, forward_looking_x1(x, sigma, u_theta));
    std::vector<double> norms = per_sample_norms(rg0.grad);
    all_norms.insert(all_norms.end(), norms.begin(), norms.end());
    const double thr = o.clip_fixed > 0 ? o.clip_fixed : quantile(norms, o.clip_quantile);
    st.clip_threshold += thr / static_cast<double>(slots);
    st.reward_x1hat += ops::mean(rg0.value).item() / static_cast<double>(slots);
    // g_φ of eq. 16 (value_gradient_field / value_gradient_jvp) and the base velocity
    Tensor g0, res, ub;
    if (o.derivatives == Derivatives::Exact) {
      // g at (x, σ) from this transition's reward gradient (the same x̂₁), no graph: it fixes
      // the directions; the JVP pass returns g again with its graph
      Tensor gv;
      {
        NoGradGuard ng;
        ub = f.base(x, sigma);
        gv = value_gradient(clip_per_sample(rg0.grad, thr), nu(x, sigma), eta_weight(o.eta, sigma, x));
      }
      res = consistency_residual_from_jvp(gv, ub, value_gradient_jvp(f.theta_x, nu, reward, o.eta, thr), f.base, x,
                                          sigma, o, &g0);
    } else {
      res = consistency_residual_with_g(value_gradient_field(f.theta, nu, reward, o.eta, thr), f.base, x, sigma, o, &g0);
      NoGradGuard ng;
      ub = f.base(x, sigma);
    }
    Tensor lm = matching_loss(u_theta, ub, g0, o.beta), lc = ops::mean(ops::square(res));
    st.matching += lm.item() / static_cast<double>(slots);
    st.consistency += lc.item() / static_cast<double>(slots);
    {  // the slot's diagnostics: ν = g + η·clip ∇r, both scaled by β (velocity units); no graph
      NoGradGuard ng;
      const Tensor guide = ops::mul(ops::to(eta_weight(o.eta, sigma, x), DType::F64),
                                    ops::to(clip_per_sample(rg0.grad, thr), DType::F64));
      const Tensor nu_x = ops::add(ops::to(g0.detach(), DType::F64), guide);
      auto mean_norm = [&](const Tensor& t) {
        double m = 0;
        for (double v : per_sample_norms(t)) m += v;
        return o.beta * m / static_cast<double>(B);
      };
      st.bin_sigma.push_back(ops::mean(ops::to(sigma, DType::F64)).item());
      st.bin_nu_norm.push_back(mean_norm(nu_x));
      st.bin_guide_norm.push_back(mean_norm(guide));
      st.bin_consistency.push_back(lc.item());
    }
    Tensor l = ops::add(lm, code ? ops::mul(lc, 1.0 / (o.beta * o.beta)) : lc);
    total = total.defined() ? ops::add(total, l) : l;
  }
  total = ops::mul(total, 1.0 / static_cast<double>(slots));
  // eq. 13 at the trajectory's end x₁ (σ = 0)
  Tensor lb = boundary_loss(nu(xs.back(), zeros({B}, opts(DType::F32, xs.back().device()))));
  st.boundary = lb.item();
  total = ops::add(total, ops::mul(lb, code ? o.alpha * o.beta * o.beta / static_cast<double>(slots) : o.alpha));
  double s = 0;
  st.grad_norm_max = 0;
  for (double n : all_norms) s += n, st.grad_norm_max = std::max(st.grad_norm_max, n);
  st.grad_norm_mean = s / static_cast<double>(all_norms.size());
  st.grad_norm_p80 = quantile(all_norms, 0.8);
  if (stats) *stats = st;
  return total;
}

Tensor vggflow_loss(const Policy& p, const ValueNet& value, const Reward& reward, const Rollout& r,
                    const VGGFlowOptions& o, Generator& gen, VGGFlowStats* stats) {
  const PromptBoundReward bound(reward, r.ids);
  return vggflow_loss(policy_fields(p, r.cond, r.uncond), value.field(r.cond, r.uncond), bound, r.latents, r.sigmas, o,
                      gen, stats);
}

}  // namespace vgg::flow::methods
