// The 2-D toy of the method study (docs/results.md, "2-D toy"): every alignment method on a flow
// small enough to measure against its exact target.
//
//   data     a mixture of four Gaussians at (±1.5, ±1.5), standard deviation 0.35, equal weights
//   base     an MLP velocity u(x, σ) (SD3 variables: σ = 1 noise … 0 data, u = dx/dσ) trained by
//            rectified flow matching on the mixture
//   reward   linear, r(x) = cᵀx with c = (1, 1)/√2: the tilt p_base·e^{βr} of a Gaussian mixture is
//            again one (weights ∝ w_k·e^{β cᵀμ_k}, means shifted by β·s²·c)
//   target   p_base·e^{βr} with p_base the trained flow's own distribution: importance resampling
//            of its Euler samples with weights e^{βr}
//   methods  VGG-Flow (fd or exact derivatives), Adjoint Matching, VGG-Flow-PMP through the same
//            field-generic losses the image model uses (vggflow/methods), ReFL and DRaFT-1 (as
//            baselines.h, on fields); θ = a full copy of the base MLP, ν_φ = a second MLP with a
//            1e-3-scaled output layer divided by β (as ValueNet)
//   metrics  MMD (Gaussian kernels of bandwidths 0.1, 0.3, 1, 3; biased V-statistic, square root)
//            and sliced W2 (256 random directions) between the method's samples and the target
//            samples, next to the base's distance and the target-vs-target noise floor.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "vggflow/methods/common.h"
#include "vggflow/methods/vggflow.h"

namespace vgg::flow::toy {

using methods::Field;

// u(x, σ): [x, σ, sin(kπσ), cos(kπσ) for k = 1..3] -> width -> width -> width -> 2, SiLU; f64.
class VelocityMLP : public nn::Module {
 public:
  VelocityMLP(int64_t width, uint64_t seed, double out_scale = 1.0);
  std::string type_name() const override { return "VelocityMLP"; }
  Tensor forward(const Tensor& x, const Tensor& sigma) const;  // x [B, 2], σ [B] -> [B, 2]
  Field field() const;  // this module as a field (the module must outlive it)

 private:
  std::shared_ptr<nn::Linear> l0_, l1_, l2_, l3_;
};

// ν_φ = net(x, σ)/β as a field (the value net's output is in velocity units, as ValueNet's).
Field nu_field(std::shared_ptr<const VelocityMLP> net, double beta);

// n samples of the mixture [n, 2] (f64).
Tensor sample_mixture(int64_t n, Generator& gen);

// The base flow: `steps` Adam steps of rectified flow matching (batch, lr 2e-3 cosine to 0, σ
// uniform); the loss of each step in `losses` when given.
std::shared_ptr<VelocityMLP> train_base(int64_t steps, int64_t batch, uint64_t seed, std::vector<double>* losses = nullptr);

// Uniform schedule σ_k = 1 − k/N.
std::vector<float> toy_sigmas(int64_t steps);
// Euler trajectory x_0 … x_N of the field (no graph).
std::vector<Tensor> euler_rollout(const Field& u, const Tensor& x0, const std::vector<float>& sigmas);

// r(x) = cᵀx, c = (1, 1)/√2, for x [B, 2].
std::unique_ptr<Reward> linear_reward();
// r(x) = exp(−‖x − m‖²/2), m = (1.5, 1.5): bounded (in (0, 1]) and nonlinear, its gradient points
// to m, so the forward-looking term −η·∇r(x̂₁) changes direction along a trajectory and ν_φ must
// carry what x̂₁ does not predict.
std::unique_ptr<Reward> bump_reward();
// "linear" or "bump"
std::unique_ptr<Reward> make_toy_reward(const std::string& name);

// n draws (with replacement) from pool [M, 2] with probabilities ∝ e^{β r(x)}.
Tensor importance_resample(const Tensor& pool, const Reward& r, double beta, int64_t n, Generator& gen);
// MMD between sample sets (see the top), and sliced W2 over `projections` random unit directions
// (equal sizes; the sorted projections are matched).
double mmd(const Tensor& a, const Tensor& b);
double sliced_w2(const Tensor& a, const Tensor& b, int64_t projections, Generator& gen);

struct ToyOptions {
  std::string method = "vggflow";  // vggflow | vggflow-exact | am | pmp | refl | draft
  double beta = 0.5;               // the tilt's inverse temperature (ReFL/DRaFT ignore it)
  int64_t updates = 300, batch = 256, sample_steps = 20;
  double lr = 1e-3, lr_value = 1e-2;  // ν_φ learns slowly at 1e-3 (docs/results.md, 2-D toy)
  double alpha = 100;              // VGG-Flow boundary weight
  methods::Eta eta = methods::Eta::Quadratic;
  int64_t eval_every = 50, eval_samples = 2000;
  uint64_t seed = 0;
};

struct ToyEval {
  int64_t update;
  double mmd, sliced_w2, reward;
  double objective;  // E[Σ_k h_k/(2β)‖u_θ − u_base‖²(x_k) − r(x_N)]: the deterministic control
                     // objective VGG-Flow and PMP minimise (AM's memoryless one differs)
};
struct ToyResult {
  std::string method;
  std::vector<ToyEval> curve;  // update 0 (the base) … updates
  Tensor samples;              // the final samples [eval_samples, 2]
  double seconds = 0;
  std::shared_ptr<VelocityMLP> theta;   // the fine-tuned velocity u_θ
  std::shared_ptr<VelocityMLP> nu_net;  // VGG-Flow only: ν_φ's network (ν_φ = output / β), else null
};

// Fine-tunes a copy of the base with the method and evaluates it against the target samples
// (ODE samples from the fixed noise eval_noise [eval_samples, 2]) every eval_every updates.
ToyResult run_method(const VelocityMLP& base, const Reward& reward, const Tensor& target, const Tensor& eval_noise,
                     const ToyOptions& o);

// VGG-Flow's learned value gradient against PMP's co-state, the exact ∇ of the cost-to-go of the
// control objective both minimise: along PMP's ODE trajectories from `noise` (x_0 … x_N), the
// co-state a_k of its converged policy (methods::pmp_costate from a_N = −∇r(x_N), unclipped) and
// VGG-Flow's g_φ(x_k, σ_k) = −η_t·∇r(x̂₁) + ν_φ (x̂₁ from VGG-Flow's policy; unclipped). cosine[k]
// is the mean over the samples of cos(g, a) at step k (k = 0 … N), mean_cosine their mean over
// k ≥ 1 (x_0 is the noise, where both are smallest), norm_ratio[k] the mean ‖g‖/‖a‖.
struct CostateComparison {
  std::vector<double> cosine, norm_ratio;
  double mean_cosine = 0;
};
CostateComparison compare_to_costate(const ToyResult& vggflow, const ToyResult& pmp, const VelocityMLP& base,
                                     const Reward& reward, const Tensor& noise, const ToyOptions& o);

}  // namespace vgg::flow::toy
