// VGG-Flow (Liu et al., NeurIPS 2025; docs/methods.md): fine-tune v_θ = v_base + ṽ_θ so that
// ṽ_θ = −β·g_φ, with g_φ ≈ ∇V a learned value-gradient field trained to satisfy the gradient form
// of the HJB equation. Every piece is a named function citing its equation; tensors are in SD3
// variables (σ = 1 − t, u = −v), the comments in the paper's.
//
// Where this implementation follows the paper and where the official code differs (options):
//   * finite differences: central (eqs. 44–45) by default; --fd one-sided as the code
//     (forward differences, which also re-use g at the base point)
//   * ∂_t g in units of t (eq. 12); the code differences in timestep units τ = 1000σ, which
//     scales this term by 1/1000 (--fd-time-scale 0.001 reproduces it)
//   * eq. 45's direction sg[g_φ] is stop-gradiented (paper); the code lets φ learn through the
//     frozen base network (--base-direction-grad)
//   * g at shifted points re-evaluates the forward-looking term consistently: −η ∇r(x̂₁(x', t'))
//     with ∂x̂₁/∂x' = I (eq. 16's stop-gradient). The code mixes gradient paths there (its
//     §2.3 inconsistency); that is not reproduced.
//   * reward-gradient clipping at the 80th percentile of the current batch (paper §5.1); the
//     code resets its threshold to 1.0 every epoch, so with one update per epoch its clip is a
//     fixed norm of 1 (--clip-fixed 1 reproduces it)
//   * boundary loss (eq. 13) at (x₁, t = 1), where it reduces to ‖ν_φ(x₁, 1)‖²; the code uses
//     the last sampling step's input
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "vggflow/methods/common.h"

namespace vgg::flow::methods {

enum class Eta { Quadratic, Linear, Constant };  // η_t = t², t, 1
Eta parse_eta(const std::string& s);             // "t2", "t", "1"
// η_t per sample as [B, 1, 1, 1] from σ [B] (t = 1 − σ).
Tensor eta_weight(Eta e, const Tensor& sigma, const Tensor& like);

// The learned correction ν_φ(x, t) of eq. 16. Two architectures:
//   "small" (default, the paper's choice): a separate small MMDiT (2 blocks, width 64) whose
//           output projection starts at 1e-3 of its usual initialisation;
//   "lora"  (the official code's default): a copy of the base network with rank-8 LoRA on the
//           attention projections and a trainable output projection scaled by 1e-5.
// The network output is in velocity units and ν_φ = output / β (as the code scales it). It sees
// the prompt's conditioning, or the empty prompt's (the code's choice) with prompt_free.
class ValueNet {
 public:
  ValueNet(const std::string& kind, const FlowModel& base, double beta, bool prompt_free, uint64_t seed);
  // ν_φ(x, σ) [B, 1, H, W]
  Tensor nu(const Tensor& x, const Tensor& sigma, const Conditioning& cond, const Conditioning& uncond) const;
  std::vector<Tensor> parameters() const { return params_; }
  std::vector<std::string> parameter_names() const { return names_; }
  nn::MMDiT& net() { return *net_; }
  const std::string& kind() const { return kind_; }
  // Weights that change in training (state_dict for "small", adapters + proj_out for "lora").
  nn::NamedTensors state() const;
  void load_state(const nn::NamedTensors& sd);

 private:
  std::string kind_;
  std::shared_ptr<nn::MMDiT> net_;
  double beta_;
  bool prompt_free_;
  std::vector<Tensor> params_;
  std::vector<std::string> names_;
};

struct VGGFlowOptions {
  double beta = 1.0;        // β = 1/λ, the inverse temperature
  double alpha = 1e4;       // boundary-loss weight α (eq. 15)
  Eta eta = Eta::Quadratic; // η_t (eq. 16)
  double fd_eps = 1e-3;     // finite-difference step (t units for ∂_t, relative for directions)
  bool central = true;      // central (paper) or one-sided (code) differences
  double fd_time_scale = 1; // factor on ∂_t g (code: 1/1000)
  bool base_direction_grad = false;  // code: φ also learns through eq. 45's direction
  double clip_quantile = 0.8;        // per-sample ∇r clip at this batch quantile
  double clip_fixed = 0;             // > 0: a fixed clip norm instead (the code's effective behaviour)
  int64_t bins = 5;                  // transitions: one per bin, plus the last step
};

// A field f(x, σ) -> [B, ...] (g_φ, v_base, …) for the finite-difference helpers.
using Field = std::function<Tensor(const Tensor& x, const Tensor& sigma)>;

// Eq. 16: x̂₁ = x_t + (1 − t)·sg[v(x_t, t)], in SD3 variables x − σ·sg[u].
Tensor forward_looking_x1(const Tensor& x, const Tensor& sigma, const Tensor& u);
// Eq. 16: g_φ = −η_t·sg[∇r(x̂₁)] + ν_φ (the gradient already clipped).
Tensor value_gradient(const Tensor& reward_grad, const Tensor& nu, const Tensor& eta);
// Eq. 14: ‖ṽ_θ + β·sg[g_φ]‖² (mean over elements). In SD3 variables u_θ − u_base = −ṽ_θ, so the
// residual is u_θ − sg[u_base + β g_φ].
Tensor matching_loss(const Tensor& u_theta, const Tensor& u_base, const Tensor& g, double beta);
// Eq. 12's residual R = ∂_t g + [∇g](v_base − β g) + [∇v_base] g, each derivative by eqs. 43–45
// (directional finite differences: J·w, see docs/methods.md on J vs Jᵀ). u_base is the SD3
// base field (v_base = −u_base). Returns R [B, ...] with the graph to φ through g.
Tensor consistency_residual(const Field& g, const Field& u_base, const Tensor& x, const Tensor& sigma,
                            const VGGFlowOptions& o);
// The same, also returning g(x, σ) (with its graph) through g_at_x.
Tensor consistency_residual_with_g(const Field& g, const Field& u_base, const Tensor& x, const Tensor& sigma,
                                   const VGGFlowOptions& o, Tensor* g_at_x);
// Eq. 13 at t = 1: ‖g_φ(x₁, 1) + ∇r(x₁)‖² = ‖ν_φ(x₁, 1)‖² (η₁ = 1, x̂₁ = x₁). Mean over elements.
Tensor boundary_loss(const Tensor& nu_at_x1);

// Transition indices of one trajectory of `steps` steps: one uniform draw in each of `bins`
// contiguous bins of the step indices, plus the last step (paper §5.1, code's forced last step).
std::vector<int64_t> subsample_transitions(int64_t steps, int64_t bins, Generator& gen);

// One update's loss over a rollout (Algorithm 1, with the losses summed into one AdamW step as the
// code does): mean over the selected transitions of L_matching + L_consistency, plus α·L_boundary.
struct VGGFlowStats {
  double matching = 0, consistency = 0, boundary = 0;
  double grad_norm_mean = 0, grad_norm_max = 0, grad_norm_p80 = 0, clip_threshold = 0;
  double reward_x1hat = 0;  // mean r(x̂₁) over the transitions
};
Tensor vggflow_loss(const Policy& p, const ValueNet& value, const Reward& reward, const Rollout& r,
                    const VGGFlowOptions& o, Generator& gen, VGGFlowStats* stats);

}  // namespace vgg::flow::methods
