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
//
// Derivatives of the consistency residual (eq. 12), --derivatives:
//   fd     directional finite differences, eqs. 43–45 (the paper and the code);
//   exact  the ε → 0 limit of the same differences (consistency_residual_exact):
//            ∂_t g and [∇g]·w together as one directional derivative of g along (w, t-step 1)
//              (times fd_time_scale on the t part): ν_φ by forward mode (a dual pass, so φ
//              learns through the tangent, reverse-over-forward); the forward-looking term
//              −η_t·clip(∇r(x̂₁)) by the chain rule
//                d x̂₁ = dx + dt·u − σ·[J_u·(dx, dσ)]      (u = u_θ^cfg, SD3 variables; J_u by
//                                                          forward mode through the policy)
//                d ∇r(x̂₁) = H_r(x̂₁)·d x̂₁                (Hessian-vector product by double
//                                                          backward: ∇⟨∇r, d x̂₁⟩)
//                d clip(q) = s·(dq − q̂⟨q̂, dq⟩) when ‖q‖ > threshold (s = threshold/‖q‖, q̂ = q/‖q‖),
//                          else dq
//                  (the threshold, the batch quantile, is a constant of the update as in the FD
//                  version, whose shifted evaluations re-clip at the same threshold; the
//                  per-sample rescaling itself is differentiated, as the differences do)
//                d η_t = η'(t)·dt;
//            [∇v_base]·g by forward mode through the frozen base network along sg[g] (or g with
//            base_direction_grad, so φ learns through the tangent).
//          The shifted evaluations of the FD version re-run the policy at the shifted point, so
//          its limit contains the policy's Jacobian in d x̂₁; eq. 16's stop-gradient only says
//          that the reward gradient is taken at x̂₁ (not through x̂₁(x)). No step size: the
//          networks embed τ = 1000σ with sinusoids of up to 1 rad per τ unit, so ∂_t by a
//          difference of step ε (in t) carries an O((1000ε)²) relative error on those components.
// Jacobian vs transpose. Eq. 12 (the gradient of the HJB) has [∇g]ᵀw and [∇v_base]ᵀg. A
// directional difference yields J·w, so FD computes J·w, and `exact` computes the same J·w
// (its ε → 0 limit). The two agree when the Jacobians are symmetric (g = ∇V: a Hessian; an ideal
// flow-matching velocity: a combination of scores). base_transpose (exact only) uses
// [∇v_base]ᵀg instead: a vector-Jacobian product of the base network by reverse mode, built
// with create_graph when base_direction_grad so that φ learns through it (that needs double
// backward through the base network, which its fused attention kernel does not provide, so
// base_transpose with base_direction_grad works for fields without it only). [∇g]ᵀw is not
// offered.
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
// the prompt's conditioning, or the empty prompt's (the code's choice) with prompt_free. Its
// parameters take the base network's dtype.
class ValueNet {
 public:
  // Built on `device` (the base network must be there too for kind "lora"); the same seed gives
  // the same initial weights on every device.
  ValueNet(const std::string& kind, const FlowModel& base, double beta, bool prompt_free, uint64_t seed,
           Device device = Device::cpu());
  // ν_φ(x, σ) [B, 1, H, W]
  Tensor nu(const Tensor& x, const Tensor& sigma, const Conditioning& cond, const Conditioning& uncond) const;
  // ν_φ as a field for one batch's conditioning (the references must outlive it)
  Field field(const Conditioning& cond, const Conditioning& uncond) const;
  std::vector<Tensor> parameters() const { return params_; }
  std::vector<std::string> parameter_names() const { return names_; }
  nn::MMDiT& net() { return *net_; }
  // Zeroes the output projection (weight and bias): ν_φ ≡ 0 until φ moves.
  void zero_output();
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

// How the three losses are weighted into one update's loss (S transitions per trajectory):
//   paper  eq. 15 as written: mean_S(L_matching + L_consistency) + α·L_boundary, with
//          L_consistency = mean(R²) and L_boundary = mean(ν_φ²);
//   code   the official code's scaling: the residual divided by β and the boundary term on the
//          network output β·ν_φ, every term normalised by the transitions (the code divides the
//          per-transition sum by accumulation × transitions):
//            mean_S(L_matching + L_consistency/β²) + α·β²·L_boundary/S.
//          Against the paper, φ's two terms move by 1/β² and β²/S: their ratio by ~β⁴.
// The logged loss_consistency and loss_boundary are the unweighted means either way.
enum class LossWeighting { Paper, Code };
LossWeighting parse_loss_weighting(const std::string& s);  // "paper", "code"

// How the consistency residual's derivatives are computed (see the top of this file).
enum class Derivatives { FiniteDifference, Exact };
Derivatives parse_derivatives(const std::string& s);  // "fd", "exact"

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
  Derivatives derivatives = Derivatives::FiniteDifference;  // eq. 12's derivatives (see the top)
  bool base_transpose = false;       // exact only: [∇v_base]ᵀg (eq. 12 as written) for [∇v_base]·g
  LossWeighting weighting = LossWeighting::Paper;
};


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
// A field with its directional derivative: f(x, σ) and D f(x, σ)·(dx, dσ), dσ per sample [B]
// (an undefined dx or dσ is zero).
struct FieldTangent {
  Tensor value, tangent;
};
using FieldJvp = std::function<FieldTangent(const Tensor& x, const Tensor& sigma, const Tensor& dx, const Tensor& dsigma)>;
// The directional derivative of a field built from differentiable ops, by forward mode (the value
// keeps its reverse graph and the tangent gets one: reverse-over-forward). A field that takes a
// gradient inside (a reward gradient) loses that part's tangent: see value_gradient_jvp.
FieldJvp forward_mode_jvp(const Field& f);

// Eq. 12's residual with exact derivatives (the ε → 0 limit of consistency_residual, with the
// same inputs and output): R = fd_time_scale·∂_t g + [∇g]·w + [∇v_base]·g (or [∇v_base]ᵀg with
// base_transpose), w = sg[v_base − β g], each derivative by forward mode through the fields
// (which must be built from differentiable ops). Returns R with its graph to φ.
Tensor consistency_residual_exact(const Field& g, const Field& u_base, const Tensor& x, const Tensor& sigma,
                                  const VGGFlowOptions& o, Tensor* g_at_x = nullptr);
// The same from g's directional derivative: g0 = g(x, σ) and ub0 = u_base(x, σ) are the values
// (graph not needed) that fix the direction w = sg[−ub0 − β g0] and, unless base_direction_grad,
// the direction sg[g0] of the base term; g_jvp's value (with its graph) is returned in g_at_x and
// is the base term's direction with base_direction_grad.
Tensor consistency_residual_from_jvp(const Tensor& g0, const Tensor& ub0, const FieldJvp& g_jvp, const Field& u_base,
                                     const Tensor& x, const Tensor& sigma, const VGGFlowOptions& o,
                                     Tensor* g_at_x = nullptr);

// The fields of eq. 16 that vggflow_loss differentiates (the references must outlive them):
//   value_gradient_field  g_φ(x, σ) = −η_t·clip(∇r(x̂₁)) + ν_φ, with x̂₁ from a no-graph pass of
//                         the policy field at (x, σ) and the reward gradient clipped per sample at
//                         the fixed clip_threshold (the field the finite differences evaluate);
//   value_gradient_jvp    the same with its exact directional derivative (chain rule above: the
//                         policy's JVP by forward mode through policy_x, which must be
//                         differentiable in x, H_r·d x̂₁ by double backward, ν_φ by forward mode
//                         with its graph to φ).
// The Policy overloads use the policy's fields and the value net's for one batch's conditioning.
Field value_gradient_field(const Field& policy, const Field& nu, const Reward& reward, Eta eta, double clip_threshold);
FieldJvp value_gradient_jvp(const Field& policy_x, const Field& nu, const Reward& reward, Eta eta, double clip_threshold);
Field value_gradient_field(const Policy& p, const ValueNet& value, const Reward& reward, const Conditioning& cond,
                           const Conditioning& uncond, Eta eta, double clip_threshold);
FieldJvp value_gradient_jvp(const Policy& p, const ValueNet& value, const Reward& reward, const Conditioning& cond,
                            const Conditioning& uncond, Eta eta, double clip_threshold);
// η'(t)·dt per sample as [B, 1, 1, 1] (dt = −dσ), the derivative of eta_weight.
Tensor eta_tangent(Eta e, const Tensor& sigma, const Tensor& dsigma, const Tensor& like);

// Eq. 13 at t = 1: ‖g_φ(x₁, 1) + ∇r(x₁)‖² = ‖ν_φ(x₁, 1)‖² (η₁ = 1, x̂₁ = x₁). Mean over elements.
Tensor boundary_loss(const Tensor& nu_at_x1);

// Transition indices of one trajectory of `steps` steps: one uniform draw in each of `bins`
// contiguous bins of the step indices, plus the last step (paper §5.1, code's forced last step);
// never step 0 (t = 0) when there are two steps or more: a draw of 0 becomes 1, as in the code.
std::vector<int64_t> subsample_transitions(int64_t steps, int64_t bins, Generator& gen);

// One update's loss over a rollout (Algorithm 1, with the losses summed into one AdamW step as the
// code does): mean over the selected transitions of L_matching + L_consistency, plus α·L_boundary.
struct VGGFlowStats {
  double matching = 0, consistency = 0, boundary = 0;
  double grad_norm_mean = 0, grad_norm_max = 0, grad_norm_p80 = 0, clip_threshold = 0;
  double reward_x1hat = 0;  // mean r(x̂₁) over the transitions
  // Per transition slot j (the time bins, then the last step), means over the batch: σ, the two
  // parts of β·g = β·ν_φ − β·η·clip ∇r as velocity norms (the learned correction against the
  // reward's guidance, docs/methods.md), and the consistency residual's mean square.
  std::vector<double> bin_sigma, bin_nu_norm, bin_guide_norm, bin_consistency;
};
Tensor vggflow_loss(const Policy& p, const ValueNet& value, const Reward& reward, const Rollout& r,
                    const VGGFlowOptions& o, Generator& gen, VGGFlowStats* stats);
// The same over fields and trajectories xs[0..N] at sigmas (the 2-D toy uses it with MLPs).
Tensor vggflow_loss(const Fields& f, const Field& nu, const Reward& reward, const std::vector<Tensor>& xs,
                    const std::vector<float>& sigmas, const VGGFlowOptions& o, Generator& gen, VGGFlowStats* stats);

}  // namespace vgg::flow::methods
