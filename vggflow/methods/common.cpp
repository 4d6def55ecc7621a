#include "vggflow/methods/common.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace vgg::flow::methods {

std::vector<Tensor> Policy::lora_params() const {
  std::vector<Tensor> out;
  for (auto& [name, m] : nn::lora_modules(*model.net)) out.push_back(m->lora_A), out.push_back(m->lora_B);
  return out;
}

Tensor per_sample(const Tensor& sigma, const Tensor& like) {
  Shape s(static_cast<size_t>(like.dim()), 1);
  s[0] = sigma.size(0);
  return ops::reshape(ops::to(ops::to(sigma, like.dtype()), like.device()), s);
}

Tensor Policy::velocity(const Tensor& x, const Tensor& sigma, const Conditioning& cond, const Conditioning& uncond,
                        bool sg_uncond, bool base) const {
  const int64_t B = x.size(0);
  VGG_CHECK(sigma.dim() == 1 && sigma.size(0) == B, "policy velocity: sigma ", describe(sigma), " for latents ",
            describe(x));
  if (base) nn::set_lora_enabled(*model.net, false);
  struct Restore {
    const Policy* p;
    bool on;
    ~Restore() {
      if (on) nn::set_lora_enabled(*p->model.net, true);
    }
  } restore{this, base};
  Tensor tau = ops::mul(ops::to(sigma, DType::F32), 1000.0);
  if (guidance == 1.0) return forward_on_device(*model.net, x, tau, cond.context, cond.pooled);
  Tensor out = forward_on_device(*model.net, ops::cat({x, x}, 0), ops::cat({tau, tau}, 0),
                                 ops::cat({uncond.context, cond.context}, 0), ops::cat({uncond.pooled, cond.pooled}, 0));
  Tensor uu = ops::narrow(out, 0, 0, B), uc = ops::narrow(out, 0, B, B);
  if (sg_uncond) uu = uu.detach();
  return ops::add(uu, ops::mul(ops::sub(uc, uu), guidance));
}

Field policy_field(const Policy& p, const Conditioning& cond, const Conditioning& uncond, bool sg_uncond) {
  const Policy* pp = &p;
  const Conditioning* cp = &cond;
  const Conditioning* up = &uncond;
  return [=](const Tensor& x, const Tensor& s) { return pp->velocity(x, s, *cp, *up, sg_uncond); };
}

Field base_velocity_field(const Policy& p, const Conditioning& cond, const Conditioning& uncond) {
  const Policy* pp = &p;
  const Conditioning* cp = &cond;
  const Conditioning* up = &uncond;
  return [=](const Tensor& x, const Tensor& s) { return pp->velocity(x, s, *cp, *up, /*sg_uncond=*/false, /*base=*/true); };
}

Fields policy_fields(const Policy& p, const Conditioning& cond, const Conditioning& uncond) {
  return {policy_field(p, cond, uncond, true), policy_field(p, cond, uncond, false), base_velocity_field(p, cond, uncond)};
}

Policy make_policy(FlowModel model, int64_t rank, double guidance, uint64_t seed) {
  VGG_CHECK(rank >= 1, "LoRA rank must be >= 1, got ", rank);
  model.net->requires_grad_(false);
  nn::LoRAConfig lc;
  lc.rank = rank;
  lc.alpha = static_cast<double>(rank);
  lc.seed = seed;
  // image-stream attention projections of every joint block (the context-stream add_* are not
  // targeted, as in the official VGG-Flow code)
  lc.targets = {"attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0"};
  nn::attach_lora(*model.net, lc);
  Policy p;
  p.model = std::move(model);
  p.guidance = guidance;
  return p;
}

Tensor euler_steps(const Policy& p, Tensor x, const std::vector<float>& sigmas, int64_t i0, int64_t i1,
                   const Conditioning& cond, const Conditioning& uncond) {
  const int64_t B = x.size(0);
  for (int64_t i = i0; i < i1; ++i) {
    Tensor s = full({B}, sigmas[static_cast<size_t>(i)], opts(DType::F32, x.device()));
    Tensor u = p.velocity(x, s, cond, uncond, /*sg_uncond=*/false);
    x = ops::add(x, ops::mul(u, static_cast<double>(sigmas[static_cast<size_t>(i + 1)] - sigmas[static_cast<size_t>(i)])));
  }
  return x;
}

Rollout sample_rollout(const Policy& p, int64_t batch, int64_t steps, double shift, Generator& gen, int64_t upto) {
  if (upto < 0) upto = steps;
  VGG_CHECK(upto <= steps, "sample_rollout: cannot stop at step ", upto, " of ", steps);
  NoGradGuard ng;
  Rollout r;
  std::vector<int64_t> ids(static_cast<size_t>(batch)), empty(static_cast<size_t>(batch), p.model.prompts->empty_id());
  Tensor u = rand({batch}, opts(DType::F64), &gen);
  std::vector<double> uv = u.to_vector();
  // a uniform prompt among the n non-empty ones (the last id is the empty prompt)
  const int64_t n = p.model.prompts->num_prompts() - 1;
  VGG_CHECK(n >= 1, "sample_rollout: the model has no prompts besides the empty one");
  for (int64_t i = 0; i < batch; ++i)
    ids[static_cast<size_t>(i)] = std::min<int64_t>(n - 1, static_cast<int64_t>(uv[static_cast<size_t>(i)] * static_cast<double>(n)));
  r.ids = from_vector(ids, {batch});
  r.cond = p.model.prompts->encode(r.ids);
  r.uncond = p.model.prompts->encode(from_vector(empty, {batch}));
  // the trajectory lives where the policy network does (drawn on the host: the same numbers on
  // every device); the host sees scalars for logging
  const Device dev = p.model.net->param_device();
  for (Conditioning* c : {&r.cond, &r.uncond}) c->context = ops::to(c->context, dev), c->pooled = ops::to(c->pooled, dev);
  InferenceSchedule sched = inference_schedule(steps, shift);
  r.sigmas.assign(sched.sigmas.begin(), sched.sigmas.end());
  const int64_t hw = p.model.latent_size;
  Tensor x = ops::to(randn({batch, p.model.latent_channels, hw, hw}, {}, &gen), dev);
  r.latents.push_back(x);
  for (int64_t i = 0; i < upto; ++i) {
    x = euler_steps(p, x, r.sigmas, i, i + 1, r.cond, r.uncond);
    r.latents.push_back(x);
  }
  return r;
}

Tensor gather_slot(const std::vector<Tensor>& states, const std::vector<int64_t>& k) {
  std::vector<Tensor> rows;
  for (size_t i = 0; i < k.size(); ++i)
    rows.push_back(ops::narrow(states[static_cast<size_t>(k[i])], 0, static_cast<int64_t>(i), 1));
  return ops::cat(rows, 0).detach();
}

Tensor slot_sigmas(const std::vector<float>& sigmas, const std::vector<int64_t>& k, Device device) {
  std::vector<float> s;
  for (int64_t i : k) s.push_back(sigmas[static_cast<size_t>(i)]);
  return ops::to(from_vector(s, {static_cast<int64_t>(s.size())}, opts(DType::F32)), device);
}

RewardGrad reward_gradient(const Reward& r, const Tensor& x) {
  GradModeGuard eg(true);
  Tensor xi = x.detach().requires_grad_(true);
  Tensor v = r(xi);
  std::vector<Tensor> g = grad({ops::sum(v)}, {xi});
  return {g[0].detach(), v.detach()};
}

std::vector<double> per_sample_norms(const Tensor& g) {
  NoGradGuard ng;
  Tensor flat = ops::reshape(ops::to(g, DType::F64), {g.size(0), -1});
  return ops::sqrt(ops::sum(ops::square(flat), {1})).to_vector();
}

double quantile(std::vector<double> v, double p) {
  VGG_CHECK(!v.empty() && p >= 0 && p <= 1, "quantile: need values and p in [0, 1], got ", v.size(), " values, p = ", p);
  // a NaN (a poisoned reward gradient) makes the quantile NaN, so the loss turns NaN and the
  // update is skipped by the trainer; sorting it would break the strict weak ordering
  for (double x : v)
    if (std::isnan(x)) return x;
  std::sort(v.begin(), v.end());
  const double pos = p * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

Tensor clip_per_sample(const Tensor& g, double threshold) {
  VGG_CHECK(!(threshold < 0), "clip_per_sample: threshold must be >= 0, got ", threshold);  // NaN passes through
  std::vector<double> n = per_sample_norms(g), s(n.size());
  for (size_t i = 0; i < n.size(); ++i) s[i] = n[i] > threshold ? threshold / n[i] : 1.0;
  return ops::mul(g, per_sample(from_vector(s, {g.size(0)}, opts(DType::F64)), g));
}

Tensor nan_gradient(const Tensor& x) {
  Tensor y = ops::mul(x, 1.0);
  if (!any_requires_grad({&x})) return y;
  Tensor out = y.detach();
  auto node = record("nan_gradient", {x}, {&out});
  node->backward = [](const Grads& g, const std::vector<bool>&) -> Grads {
    return {ops::mul(g[0], std::numeric_limits<double>::quiet_NaN())};
  };
  return out;
}

}  // namespace vgg::flow::methods
