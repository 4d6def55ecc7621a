// Flow matching with the SD3 conventions (docs/flow.md), used everywhere inside vggflow/:
//   x_σ = (1 − σ)·x₀ + σ·ε          σ ∈ [0, 1], σ = 1 is pure noise     (noise_sample)
//   u   = ε − x₀                    the network's target ("velocity" dx_σ/dσ) (velocity_target)
//   τ   = 1000·σ                    the model's timestep input, real-valued, f32 or wider
//   Euler: x ← x + (σ_next − σ)·u   from σ = 1 down to σ = 0              (sample_euler)
// The VGG-Flow paper writes t = 1 − σ (t = 0 noise, t = 1 data) and v = −u; the helpers at the
// bottom convert, and every method cites the paper's equations in the paper's variables.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace vgg::flow {

// x_σ = (1 − σ)·x0 + σ·eps with σ [B] broadcast over the other dims of x0 [B, ...].
Tensor noise_sample(const Tensor& x0, const Tensor& eps, const Tensor& sigma);
// u = eps − x0.
Tensor velocity_target(const Tensor& x0, const Tensor& eps);
// x̂₀ = x_σ − σ·u (the one-step data prediction) and ε̂ = x_σ + (1 − σ)·u.
Tensor predict_x0(const Tensor& x, const Tensor& sigma, const Tensor& u);
Tensor predict_noise(const Tensor& x, const Tensor& sigma, const Tensor& u);

// Training σ: "logit_normal" (σ = sigmoid(m + s·n), n ~ N(0, 1), then looked up in the shifted
// training table as diffusers' scripts do: index ⌊u·1000⌋), "uniform" (u ~ U[0, 1) through the
// same table), or "mode" (SD3's mode sampling with scale 1.29). Returns σ [B] in f32.
struct TimestepSampling {
  std::string scheme = "logit_normal";
  double logit_mean = 0.0, logit_std = 1.0, mode_scale = 1.29;
  double shift = 1.0;  // shift of the training table (SD3: 3.0)
};
Tensor sample_training_sigmas(int64_t batch, const TimestepSampling& ts, Generator& gen);

// Conditioning of one batch: text tokens [B, N_t, J] and pooled vector [B, P].
struct Conditioning {
  Tensor context, pooled;
};
// The model: u = f(x [B, ...], τ [B] = 1000·σ, conditioning).
using VelocityFn = std::function<Tensor(const Tensor& x, const Tensor& timesteps, const Conditioning& c)>;

struct SampleOptions {
  int64_t steps = 20;
  double shift = 1.0;      // σ schedule shift (SD3: 3.0), the diffusers inference schedule
  double guidance = 1.0;   // classifier-free guidance w; 1 = conditional only (no second pass)
};
// Every latent x_0 … x_n (x_0 the initial noise), the σ values (n + 1, last 0) and the model
// timesteps (n).
struct Trajectory {
  std::vector<Tensor> latents;
  std::vector<float> sigmas, timesteps;
};
// Euler from x = noise at σ = 1 to σ = 0. With guidance ≠ 1 the model runs once per step on the
// batch [uncond ; cond] (diffusers' order) and u = u_∅ + w·(u_c − u_∅). The update is computed
// in f32 (or the latent dtype when wider). Records into *traj when given. Differentiable when
// grad mode is on (DRaFT backpropagates through the last steps).
Tensor sample_euler(const VelocityFn& f, const Tensor& noise, const Conditioning& cond, const Conditioning& uncond,
                    const SampleOptions& o, Trajectory* traj = nullptr);

// Paper conventions: t = 1 − σ, v = −u.
inline double paper_time(double sigma) { return 1.0 - sigma; }
Tensor paper_velocity(const Tensor& u);

}  // namespace vgg::flow
