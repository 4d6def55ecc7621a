// Optimizers on plain tensors: AdamW with per-group gradient clipping, learning-rate
// schedules and an exponential moving average of parameters, each with a state dict that
// restores a run bit for bit.
//
// AdamW follows torch.optim.AdamW (PyTorch 1.13, amsgrad off, the per-tensor path) to the
// rounding: for every parameter with a gradient, in the parameter's dtype T,
//   step += 1;  bc1 = 1 − β1^step;  bc2 = 1 − β2^step            (double, per parameter)
//   p ← p·T(1 − lr·wd)                                            (decoupled weight decay)
//   m ← fma(T(1 − β1), g, m·T(β1))                               (torch's kernels fuse these two
//   v ← fma(T(1 − β2)·g, g, v·T(β2))                              multiply-adds, and nothing else)
//   p ← p + (T(−lr/bc1)·m) / (sqrt(v)/T(sqrt(bc2)) + T(eps))
// A parameter whose gradient is undefined is skipped: no decay, no moment update, its step
// count does not advance (torch keeps one step count per parameter as well).
//
// Clipping (per group, before the update): the L2 norm of all the group's gradients taken
// together is computed in double; with max_grad_norm > 0 the gradients are scaled by
// c = max_grad_norm/(norm + 1e-6) when c < 1 (torch.nn.utils.clip_grad_norm_, which
// multiplies by min(c, 1)). The scaled gradient is used for the update only: p.grad is left
// as it was. A group whose norm is NaN or Inf (a non-finite gradient, or a sum of squares
// that overflows double) is not updated at all — parameters, moments and step counts stay —
// and StepStats reports it; torch would write NaN into the parameters.
//
// Parameters: leaf tensors that require grad, f32 or f64, contiguous, each in one group only,
// on the CPU or a GPU (a group may mix devices). bf16 parameters are refused: keep an f32 master
// copy and cast for the forward (nn::Module::set_compute_dtype). The moments of a group live in
// one flat buffer per (device, dtype) — the optimizer-state arena — and the update runs in the
// multi-tensor kernels of kernels/optim.h: on the CPU a loop per tensor (OpenMP over elements for
// large tensors; results do not depend on the thread count), on CUDA one launch for up to 24
// tensors. Both round exactly as the formulas above, so a GPU step gives the CPU's bits for the
// same gradient and clip factor (the GPU's sum of squares is blocked differently, so the clip
// factor itself may differ in the last place). The update bumps the parameter's version.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace vgg::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct ParamGroup {
  std::string name;                      // empty: the group's index ("0", "1", ...)
  std::vector<Tensor> params;
  std::vector<std::string> param_names;  // empty: the parameter's index; else one per parameter
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;
  double max_grad_norm = 0;  // 0 = no clipping
};

struct GroupStepStats {
  std::string name;
  double grad_norm = 0;    // L2 norm of the group's gradients before clipping (double)
  double clip_coef = 1;    // factor applied to the gradients (1 when not clipped)
  bool clipped = false;
  bool nonfinite = false;  // the norm was NaN/Inf: nothing in the group was updated
  int64_t updated = 0;     // parameters updated (those with a gradient)
  std::string error;       // why the group was skipped, naming the first bad parameter
};

struct StepStats {
  std::vector<GroupStepStats> groups;
  bool nonfinite = false;  // some group was skipped for a non-finite gradient
  std::string error;       // the groups' errors joined with "; " (empty when none)
};

class AdamW {
 public:
  // Validates every group (see the file comment; hyper-parameters finite, lr, eps, wd,
  // max_grad_norm >= 0, betas in [0, 1)), names unique, and allocates zero moments.
  explicit AdamW(std::vector<ParamGroup> groups);

  // One update of every group, under NoGradGuard.
  StepStats step();
  // The group's total sum of squares for clipping from its parameters' own sums (sq[k] of the
  // parameter idx[k], those with a gradient, in order); default: their sum in that order. A sharded
  // optimizer (ZeRO-1, vggflow/methods/method.h) sums every rank's parameters in the full order, so
  // its clip factor is the unsharded optimizer's to the bit.
  using SumSquaresHook = std::function<double(size_t group, const std::vector<size_t>& idx, const std::vector<double>& sq)>;
  void set_sum_squares_hook(SumSquaresHook h) { sum_squares_hook_ = std::move(h); }
  // set_to_none drops the gradients (the next backward allocates fresh ones); otherwise zeroes them.
  void zero_grad(bool set_to_none = true);

  size_t num_groups() const { return groups_.size(); }
  const ParamGroup& group(size_t g) const;
  // Hyper-parameters may be changed through this; the parameter list must not be (step() checks).
  ParamGroup& group(size_t g);
  void set_lr(size_t g, double lr);
  double lr(size_t g) const { return group(g).lr; }
  // The lr a schedule scales: the group's lr at construction unless set.
  double base_lr(size_t g) const;
  void set_base_lr(size_t g, double lr);

  // Per-parameter state (index i within group g).
  const Tensor& exp_avg(size_t g, size_t i) const;
  const Tensor& exp_avg_sq(size_t g, size_t i) const;
  int64_t step_count(size_t g, size_t i) const;

  // A snapshot (CPU copies, whatever the parameters' device): per group, f64 0-dim scalars "<group>.lr", ".base_lr", ".beta1",
  // ".beta2", ".eps", ".weight_decay", ".max_grad_norm", then per parameter
  // "<group>.<param>.exp_avg", ".exp_avg_sq" (the parameter's dtype and shape) and ".step"
  // (i64 0-dim).
  NamedTensors state_dict() const;
  // Restores a state_dict() of an optimizer over the same groups and parameter names: every
  // key must be present, none may be unknown, shapes and dtypes must match (a step may be any
  // 1-element integer tensor, a scalar any 1-element floating tensor). Group hyper-parameters
  // are restored too. Nothing changes unless every check passes.
  void load_state_dict(const NamedTensors& sd);

 private:
  struct ParamState {
    Tensor exp_avg, exp_avg_sq;
    int64_t step = 0;
  };
  const ParamState& state(size_t g, size_t i) const;

  std::vector<ParamGroup> groups_;
  std::vector<double> base_lr_;
  std::vector<std::vector<ParamState>> state_;
  SumSquaresHook sum_squares_hook_;
};

// Learning-rate factor by step (lr = base_lr · factor(step)), where step is the number of
// optimizer steps already taken (the first step uses factor(0)), as torch's LambdaLR with
// scheduler.step() after optimizer.step(). With W = warmup_steps, T = total_steps:
//   Constant:      1
//   LinearWarmup:  step/max(1, W) for step < W, then 1     (diffusers get_constant_schedule_with_warmup)
//   Cosine:        step/max(1, W) for step < W, then
//                  progress = min(1, (step − W)/max(1, T − W)),
//                  factor = min_factor + (1 − min_factor)·max(0, ½(1 + cos(π·progress)))
// With min_factor = 0 and step <= T, Cosine equals diffusers get_cosine_schedule_with_warmup
// (num_cycles = 0.5) to the bit; past T it stays at min_factor (diffusers would rise again).
struct LRSchedule {
  enum Kind { Constant, LinearWarmup, Cosine };
  Kind kind = Constant;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;  // Cosine: T >= W
  double min_factor = 0;    // Cosine: in [0, 1]

  static LRSchedule constant() { return {}; }
  static LRSchedule linear_warmup(int64_t warmup) { return {LinearWarmup, warmup, 0, 0}; }
  static LRSchedule cosine(int64_t warmup, int64_t total, double min_factor = 0) {
    return {Cosine, warmup, total, min_factor};
  }
  // Throws for step < 0 or invalid settings.
  double factor(int64_t step) const;
};

// Sets every group's lr to base_lr(g) · schedule.factor(step).
void apply_schedule(AdamW& opt, const LRSchedule& schedule, int64_t step);

// Exponential moving average of parameters. update() does, for each tensor, in the shadow's
// dtype T (as diffusers' EMAModel.step):
//   d = decay                                   without warm-up
//   d = min(decay, (1 + t)/(10 + t))            with warm-up, t = number of earlier updates
//   shadow ← shadow − T(1 − d)·(shadow − param)
// (diffusers uses the warm-up formula with t = n − 1 for the n-th update too, but gives the
// very first update d = 0; here it gets 1/10.) Shadows start as copies of the parameters:
// f32/f64 parameters keep their dtype, bf16 ones get an f32 shadow.
class EMA {
 public:
  // params: floating CPU tensors (views allowed); names as for a ParamGroup (empty: indices).
  EMA(std::vector<Tensor> params, double decay, bool warmup = false, std::vector<std::string> names = {});

  void update();
  // The decay the next update() will use.
  double current_decay() const;
  // Copies the shadows into `targets` (same shapes as the parameters; any floating dtype),
  // bumping their versions. Typically the parameters themselves, for evaluation.
  void copy_to(const std::vector<Tensor>& targets) const;

  std::vector<Tensor>& shadow() { return shadow_; }
  const std::vector<Tensor>& shadow() const { return shadow_; }
  double decay() const { return decay_; }
  int64_t num_updates() const { return num_updates_; }

  // A snapshot: "shadow.<name>" per tensor, "decay" (f64 0-dim), "num_updates" (i64 0-dim).
  NamedTensors state_dict() const;
  // Validates as AdamW::load_state_dict does; restores shadows, decay and the update count.
  void load_state_dict(const NamedTensors& sd);

 private:
  std::vector<Tensor> params_, shadow_;
  std::vector<std::string> names_;
  double decay_;
  bool warmup_;
  int64_t num_updates_ = 0;
};

}  // namespace vgg::nn
