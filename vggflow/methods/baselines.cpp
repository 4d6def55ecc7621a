#include "vggflow/methods/baselines.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace vgg::flow::methods {

namespace {

// The prompts, the schedule and x at step `upto` of an on-policy rollout without a graph.
struct Partial {
  Rollout r;
  Tensor x;
};

Partial rollout_to(const Policy& p, int64_t batch, int64_t steps, double shift, int64_t upto, Generator& gen) {
  Partial out;
  out.r = sample_rollout(p, batch, steps, shift, gen, upto);
  out.x = out.r.latents.back();
  return out;
}

Tensor objective(const Reward& reward, const Tensor& x, bool relu, double* mean_reward, double* out_of_range) {
  Tensor r = reward(x);
  *mean_reward = ops::mean(r.detach()).item();
  *out_of_range = out_of_range_fraction(x);
  return ops::neg(ops::mean(relu ? ops::relu(r) : r));
}

int64_t uniform_int(int64_t lo, int64_t hi, Generator& gen) {  // [lo, hi)
  const double u = rand({1}, opts(DType::F64), &gen).item();
  return std::min(hi - 1, lo + static_cast<int64_t>(u * static_cast<double>(hi - lo)));
}

}  // namespace

Tensor refl_loss(const Policy& p, const Reward& reward, int64_t batch, int64_t steps, double shift, bool relu,
                 Generator& gen, BaselineStats* stats) {
  const int64_t lo = static_cast<int64_t>(std::ceil(0.75 * static_cast<double>(steps)));
  const int64_t k = uniform_int(std::min(lo, steps - 1), steps, gen);
  Partial s = rollout_to(p, batch, steps, shift, k, gen);
  Tensor sigma = full({batch}, s.r.sigmas[static_cast<size_t>(k)], opts(DType::F32, s.x.device()));
  Tensor u = p.velocity(s.x, sigma, s.r.cond, s.r.uncond, /*sg_uncond=*/true);
  Tensor x1 = ops::sub(s.x, ops::mul(per_sample(sigma, s.x), u));  // x̂₁ with the graph through u
  BaselineStats st;
  st.step = k;
  Tensor loss = objective(PromptBoundReward(reward, s.r.ids), x1, relu, &st.reward, &st.out_of_range);
  if (stats) *stats = st;
  return loss;
}

Tensor draft_loss(const Policy& p, const Reward& reward, int64_t batch, int64_t steps, double shift, int64_t k,
                  bool relu, Generator& gen, BaselineStats* stats) {
  VGG_CHECK(k >= 1 && k <= steps, "DRaFT-K: K must be in [1, steps = ", steps, "], got ", k);
  Partial s = rollout_to(p, batch, steps, shift, steps - k, gen);
  Tensor x1 = euler_steps(p, s.x, s.r.sigmas, steps - k, steps, s.r.cond, s.r.uncond);
  BaselineStats st;
  st.step = steps - k;
  Tensor loss = objective(PromptBoundReward(reward, s.r.ids), x1, relu, &st.reward, &st.out_of_range);
  if (stats) *stats = st;
  return loss;
}

int64_t draw_draft_k(int64_t k_max, Generator& gen) {
  VGG_CHECK(k_max >= 1, "DRaFT-K: K_max must be >= 1, got ", k_max);
  return uniform_int(1, k_max + 1, gen);
}

Tensor draft_lv_loss(const Policy& p, const Reward& reward, int64_t batch, int64_t steps, double shift, int64_t n,
                     bool relu, Generator& gen, BaselineStats* stats) {
  VGG_CHECK(n >= 1, "DRaFT-LV: need n >= 1 re-noised copies, got ", n);
  Partial s = rollout_to(p, batch, steps, shift, steps, gen);
  const float sig = s.r.sigmas[static_cast<size_t>(steps - 1)];
  Tensor sigma = full({batch}, sig, opts(DType::F32, s.x.device()));
  Tensor loss;
  BaselineStats st;
  st.step = steps - 1;
  for (int64_t i = 0; i < n; ++i) {
    Tensor eps = ops::to(randn(s.x.shape(), {}, &gen), s.x.device());  // host draw: the same on every device
    Tensor xs = ops::add(ops::mul(s.x, 1.0 - sig), ops::mul(eps, static_cast<double>(sig)));  // back to σ_{N−1}
    Tensor u = p.velocity(xs, sigma, s.r.cond, s.r.uncond, /*sg_uncond=*/true);
    double m = 0, out = 0;
    Tensor l = objective(PromptBoundReward(reward, s.r.ids), ops::sub(xs, ops::mul(u, static_cast<double>(sig))), relu, &m, &out);
    st.reward += m / static_cast<double>(n);
    st.out_of_range += out / static_cast<double>(n);
    loss = loss.defined() ? ops::add(loss, l) : l;
  }
  if (stats) *stats = st;
  return loss;
}

}  // namespace vgg::flow::methods
