// Pieces shared by every alignment method (docs/methods.md): the fine-tuned policy (the base MMDiT
// with LoRA adapters), classifier-free-guided velocities, on-policy Euler trajectories, reward
// gradients and their per-sample clipping.
//
// Conventions: tensors live in SD3 variables (σ = 1 noise … 0 data, network output u = dx/dσ);
// the paper's t = 1 − σ and v = −u. Each method's comment names the paper equation it implements.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "nn/lora.h"
#include "vggflow/model.h"
#include "vggflow/rewards.h"
#include "vggflow/schedule.h"

namespace vgg::flow::methods {

// The fine-tuned model v_θ: the base network with LoRA adapters (θ = the adapters). With the
// adapters disabled the same network is v_base, so the base costs no extra memory.
struct Policy {
  FlowModel model;       // net carries the adapters
  double guidance = 4;   // CFG scale w of every velocity the methods use
  std::vector<Tensor> lora_params() const;

  // u^cfg = u(x, ∅) + w·(u(x, c) − u(x, ∅)) at σ [B], one batched forward [uncond ; cond].
  // sg_uncond: the unconditional branch is stop-gradiented (θ learns through the conditional
  // branch only, as the official VGG-Flow code does). base: adapters off (v_base).
  Tensor velocity(const Tensor& x, const Tensor& sigma, const Conditioning& cond, const Conditioning& uncond,
                  bool sg_uncond = true, bool base = false) const;
};

// A field f(x, σ) -> [B, ...] in SD3 variables (a velocity u, g_φ, ν_φ, …). Every method is written
// over fields, so the same code trains the MMDiT policy and the 2-D toy's MLP (vggflow/toy.h).
using Field = std::function<Tensor(const Tensor& x, const Tensor& sigma)>;

// The velocities a method differentiates:
//   theta    u_θ(x, σ) with the graph to θ (through the conditional CFG branch only: the
//            unconditional one is stop-gradiented, as the official VGG-Flow code does);
//   theta_x  u_θ(x, σ) differentiable in x through every branch (adjoints, JVPs);
//   base     u_base(x, σ), differentiable in x, no θ.
struct Fields {
  Field theta, theta_x, base;
};

// Attaches rank-r LoRA (alpha = r, Gaussian A, B = 0) to the image-stream attention projections
// to_q, to_k, to_v, to_out.0 and freezes everything else; returns the policy.
Policy make_policy(FlowModel model, int64_t rank, double guidance, uint64_t seed);

// The policy's fields for one batch's conditioning (cond and uncond must outlive them):
//   policy_field          Policy::velocity with the given sg_uncond;
//   base_velocity_field   adapters off, both branches differentiable;
//   policy_fields         {policy_field(sg), policy_field(no sg), base_velocity_field}.
Field policy_field(const Policy& p, const Conditioning& cond, const Conditioning& uncond, bool sg_uncond);
Field base_velocity_field(const Policy& p, const Conditioning& cond, const Conditioning& uncond);
Fields policy_fields(const Policy& p, const Conditioning& cond, const Conditioning& uncond);

// One batch of on-policy trajectories from the current policy (no graph): latents x_0 … x_N
// ([B, C, S, S] each with the model's latent_channels and latent_size, x_0 the noise), σ_0 … σ_N,
// the prompt ids (uniform over the model's prompts) and their conditioning.
struct Rollout {
  std::vector<Tensor> latents;
  std::vector<float> sigmas;
  Tensor ids;
  Conditioning cond, uncond;
};
// upto < steps stops early (the latents then end at x_upto); the draws are the same either way.
Rollout sample_rollout(const Policy& p, int64_t batch, int64_t steps, double shift, Generator& gen, int64_t upto = -1);

// One trajectory time per sample: row i of states[k[i]] (detached), and σ_{k[i]} as [B] f32.
Tensor gather_slot(const std::vector<Tensor>& states, const std::vector<int64_t>& k);
Tensor slot_sigmas(const std::vector<float>& sigmas, const std::vector<int64_t>& k, Device device = Device::cpu());

// Euler steps i0 … i1−1 of the schedule from x (graph kept when grad mode is on).
Tensor euler_steps(const Policy& p, Tensor x, const std::vector<float>& sigmas, int64_t i0, int64_t i1,
                   const Conditioning& cond, const Conditioning& uncond);

// ∇ₓ r(x) per sample (detached, same shape as x) and r(x) [B].
struct RewardGrad {
  Tensor grad, value;
};
RewardGrad reward_gradient(const Reward& r, const Tensor& x);

// Per-sample L2 norms of a [B, ...] tensor (f64 values).
std::vector<double> per_sample_norms(const Tensor& g);
// The p-quantile (0..1, linear interpolation, as numpy's default) of values; NaN when one is NaN.
double quantile(std::vector<double> values, double p);
// Rescales each sample to norm min(‖g_i‖, threshold) (paper §5.1: clipped at the batch's 80th
// percentile of norms).
Tensor clip_per_sample(const Tensor& g, double threshold);

// Test hook: the identity whose backward returns NaN (vgg_train --inject-nan-grad poisons the
// reward gradient of one update with it to exercise the skip path).
Tensor nan_gradient(const Tensor& x);

// σ per sample as a [B, 1, 1, 1] tensor for broadcasting.
Tensor per_sample(const Tensor& sigma, const Tensor& like);

}  // namespace vgg::flow::methods
