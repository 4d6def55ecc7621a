// Adjoint methods on the same flow model (docs/methods.md; Part B §B.3–B.4 of the method reference):
//
//   Adjoint Matching (Domingo-Enrich et al., ICLR 2025), "am": trajectories of the current model
//     on the memoryless SDE (the noise schedule σ_m(t) = √(2(1−t)/t) that makes X₀ and X₁
//     independent, so the tilted path measure has the marginal p_base·e^{β r}); the lean adjoint
//     solved backward from ã₁ = −β∇r(X₁) with one vector-Jacobian product of the frozen base per
//     step; the loss ‖(2/σ_m)(v_θ − v_base) + σ_m·ã‖² at a few random times per trajectory.
//   VGG-Flow-PMP (Liu et al., App. A.1, eqs. 20–22), "pmp": deterministic ODE trajectories of the
//     current model, the full (non-lean) co-state solved backward from a₁ = −∇r(x₁) with
//     ȧ = −∇ₓ[(1/2β)‖v_θ − v_base‖² + aᵀv_θ], and the loss ‖ṽ_θ + β·a‖² (eq. 22 times β²), the same
//     regression as VGG-Flow's matching loss with the co-state in place of g_φ.
//
// Discretisation (the spec leaves it open; these are the choices, each exact for its chain):
//   * The memoryless SDE is sampled with its ancestral (DDPM-posterior) step, the flow-matching
//     form of the DDIM-η=1 sampler the official AM code uses: from (x, t) to t' the model's
//     one-step prediction x̂₁ = x + (1−t)v fixes the Gaussian posterior of the reference process
//     whose forward noising makes X₀ ⊥ X₁, so
//       X' = c_x·x + c_u·u(x, σ) + s·ε       (memoryless_step; SD3 variables, u = −v)
//     Unlike Euler–Maruyama it is finite at t = 0 (where σ_m = ∞: the first step draws fresh
//     noise around the prediction, which is what memoryless means) and adds no noise on the
//     last step (σ' = 0 gives X' = x̂₁), so the reward sees clean images.
//   * The lean adjoint is the exact discrete adjoint of the base's mean map m_base:
//       ã_k = [∂m_base/∂x (X_k)]ᵀ ã_{k+1} = c_x·ã_{k+1} + c_u·[∇u_base(X_k)]ᵀ ã_{k+1}
//     (the official code's "gradient of ⟨one noiseless base step, ã⟩", Jacobian at (X_k, t_k)); so
//     ã_k = ∂(−β r(X_N))/∂X_k along the base chain with the noise held fixed (a test checks it).
//   * The PMP co-state is the exact discrete adjoint of the Euler chain x_{k+1} = x_k + h·v_θ with
//     the running cost h·(1/2β)‖ṽ_θ‖²: a_k = a_{k+1} + ∇ₓ[h(1/2β)‖ṽ_θ‖² + h⟨a_{k+1}, v_θ⟩](x_k),
//     i.e. a_k = ∂J/∂x_k for J = Σ_j h(1/2β)‖ṽ_θ(x_j)‖² − r(x_N) (a test checks it).
//   * Velocities are the CFG-combined ones every method here uses (guidance in the control and in
//     the adjoint; the AM paper's SD1.5 runs keep CFG for sampling only). θ learns through the
//     conditional branch (the unconditional one is stop-gradiented, as in VGG-Flow's matching
//     loss); the adjoints differentiate both branches in x.
//   * The terminal reward gradient is clipped per sample at the batch quantile (clip_quantile,
//     0.8), as for VGG-Flow (the SD3 AM runs drop samples with too large gradients instead).
//   * AM's loss times: `times` per trajectory, stratified as the official code (half in the first
//     60% of the steps, half in the rest; distinct within a stratum), never the t = 0 step where
//     σ_m is infinite. PMP's: VGG-Flow's transitions (one per bin plus the last step).
#pragma once
#include <vector>

#include "vggflow/methods/common.h"
#include "vggflow/methods/vggflow.h"

namespace vgg::flow::methods {

struct AdjointOptions {
  double beta = 1.0;          // β: AM's reward multiplier λ, PMP's 1/λ (the same tilt p_base·e^{β r})
  double clip_quantile = 0.8; // per-sample clip of ∇r(X₁) at this batch quantile
  double clip_fixed = 0;      // > 0: a fixed clip norm instead
  int64_t times = 4;          // AM: loss times per trajectory (even split over the two strata)
  int64_t bins = 2;           // PMP: transitions, one per bin plus the last step
};

// σ_m(t) = √(2(1−t)/t) of the memoryless schedule at SD3 σ = 1 − t: √(2σ/(1−σ)) (∞ at σ = 1).
double memoryless_sigma(double sigma);

// One ancestral step of the memoryless SDE from σ to σ' < σ: X' = c_x·x + c_u·u(x, σ) + noise·ε,
// ε ~ N(0, I). With t = 1−σ: r = t/t', ς² = σ² − r²σ'², c_x = (ς²t' + σ'²r)/σ², c_u = −ς²t'/σ,
// noise = σ'ς/σ (the Gaussian posterior of x_{t'} given x_t and x̂₁ under the memoryless process).
struct MemorylessStep {
  double c_x, c_u, noise;
};
MemorylessStep memoryless_step(double sigma, double sigma_next);

// Latents X₀ … X_N of the memoryless SDE with SD3 velocity field u from x0, no graph. The noise
// is drawn from gen, one randn per step.
std::vector<Tensor> memoryless_rollout(const Field& u, const Tensor& x0, const std::vector<float>& sigmas,
                                       Generator& gen);

// The lean adjoint along X (size N + 1): ã_N = terminal; ã_k = c_x·ã_{k+1} + c_u·[∇u_base(X_k, σ_k)]ᵀã_{k+1}
// for k = N−1 down to `stop` (entries below `stop` are left undefined). Detached, terminal's dtype.
std::vector<Tensor> lean_adjoint(const Field& u_base, const std::vector<Tensor>& xs, const std::vector<float>& sigmas,
                                 const Tensor& terminal, int64_t stop);

// The AM loss at one time per sample: mean ‖(2/σ_m)(u_θ − u_base) − σ_m·ã‖² (SD3 signs:
// v_θ − v_base = −(u_θ − u_base)), σ_m per sample from sigma [B] (each σ < 1). Graph to θ via u_theta.
Tensor adjoint_matching_loss(const Tensor& u_theta, const Tensor& u_base, const Tensor& adjoint, const Tensor& sigma);

// The full co-state of VGG-Flow-PMP along the Euler trajectory xs (size N + 1): a_N = terminal,
// a_k = a_{k+1} + ∇ₓ[h_k/(2β)‖u_θ − u_base‖² − h_k⟨a_{k+1}, u_θ⟩](x_k, σ_k), h_k = σ_k − σ_{k+1},
// for k = N−1 down to `stop`. u_theta must be differentiable in x (both CFG branches). Detached.
std::vector<Tensor> pmp_costate(const Field& u_theta, const Field& u_base, const std::vector<Tensor>& xs,
                                const std::vector<float>& sigmas, const Tensor& terminal, double beta, int64_t stop);

// AM's loss times of one trajectory of `steps` steps: `times` indices in [1, steps), half drawn
// (distinct) from the first 60% of the steps and half from the rest.
std::vector<int64_t> stratified_times(int64_t steps, int64_t times, Generator& gen);

struct AdjointStats {
  double reward = 0;          // mean r(X₁) of the training trajectories
  double out_of_range = 0;    // the fraction of X₁'s elements outside [−1, 1]
  double grad_norm_mean = 0;  // mean ‖∇r(X₁)‖
  double clip_threshold = 0;
  double adjoint_norm = 0;    // mean per-sample ‖ã‖ (or ‖a‖) at the earliest loss time
  double loss = 0;
};

// One update's AM loss: memoryless rollout of the current policy (batch trajectories with random
// class prompts, as sample_rollout), lean adjoint from −β·clip(∇r(X_N)), the mean of
// adjoint_matching_loss over the stratified times.
Tensor am_loss(const Policy& p, const Reward& reward, int64_t batch, int64_t steps, double shift,
               const AdjointOptions& o, Generator& gen, AdjointStats* stats);
// One update's PMP loss over an on-policy ODE rollout: co-state from −clip(∇r(x_N)), the mean of
// matching_loss(u_θ, u_base, a, β) over the transitions.
Tensor pmp_loss(const Policy& p, const Reward& reward, const Rollout& r, const AdjointOptions& o, Generator& gen,
                AdjointStats* stats);
// The same over fields (the 2-D toy uses them): AM from the noise x0 on the schedule sigmas, PMP
// over the given ODE trajectory xs.
Tensor am_loss(const Fields& f, const Reward& reward, const Tensor& x0, const std::vector<float>& sigmas,
               const AdjointOptions& o, Generator& gen, AdjointStats* stats);
Tensor pmp_loss(const Fields& f, const Reward& reward, const std::vector<Tensor>& xs, const std::vector<float>& sigmas,
                const AdjointOptions& o, Generator& gen, AdjointStats* stats);

}  // namespace vgg::flow::methods
