// The one interface every alignment method implements (VGG-Flow, ReFL, DRaFT, Adjoint Matching,
// VGG-Flow-PMP), and the one update step every trainer runs (vgg_train on the MMDiT policy of a
// pipeline, vgg_toy on the 2-D toy's MLPs; vgg_pretrain's flow-matching loss goes through the same
// update step).
//
// A method owns what it trains besides the policy's adapters θ (VGG-Flow's value net φ) and turns
// a random stream into one micro-batch's loss; the trainer owns everything else: the optimizer,
// micro-batch accumulation, the non-finite skip, checkpoints, logging (tools/trainer.h).
#pragma once
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "dist/comm.h"
#include "nn/optim.h"
#include "vggflow/methods/adjoint.h"
#include "vggflow/methods/baselines.h"
#include "vggflow/methods/vggflow.h"

namespace vgg::flow::methods {

class Method {
 public:
  virtual ~Method() = default;
  virtual std::string name() const = 0;
  // Parameter groups besides θ (named, with their parameters and names; the trainer sets their
  // hyper-parameters): VGG-Flow's "phi".
  virtual std::vector<nn::ParamGroup> extra_groups() const { return {}; }
  // One micro-batch: `batch` trajectories drawn from gen, the loss with its graph to the parameters;
  // its statistics (numbers and counts) into stats. Every draw comes from gen, in a fixed order.
  virtual Tensor loss(int64_t batch, Generator& gen, nlohmann::json& stats) = 0;
  // Trainable state besides the adapters, for checkpoints (empty: none), and its file name there.
  virtual nn::NamedTensors state() const { return {}; }
  virtual void load_state(const nn::NamedTensors&) {}
  virtual std::string state_file() const { return ""; }
};

// The methods' names as the trainers' --method takes them.
const std::vector<std::string>& method_names();  // vggflow refl draft am pmp

// Everything a method may need besides the policy and the reward, with the trainer's defaults.
struct MethodOptions {
  std::string name = "vggflow";
  int64_t steps = 20;      // Euler steps of every rollout
  double shift = 1.0;      // the sampler's σ shift
  VGGFlowOptions vggflow;  // VGG-Flow
  AdjointOptions adjoint;  // AM, PMP
  bool relu = true;        // ReFL, DRaFT: maximise ReLU(r)
  int64_t draft_k = 1;     // DRaFT-K
  int64_t draft_k_max = 0; // > 0: DRaFT-K with K drawn uniformly in [1, draft_k_max] every micro-batch
  int64_t draft_lv = 0;    // > 0: DRaFT-LV with this many copies instead
  // VGG-Flow's value net ν_φ (ValueNet): architecture, prompt-free, seed, device, compute dtype,
  // activation checkpointing
  std::string value_net = "small";
  bool value_prompt_free = false;
  uint64_t value_seed = 0;
  bool value_zero = false;  // ν_φ starts at exactly zero (its output projection zeroed): with a zero
                            // learning rate the ablation without a learned value gradient
  Device device = Device::cpu();
  std::optional<DType> compute_dtype;
  bool checkpointing = false;
  // Pixel pipelines log the reward of x₁ clamped to the image range [-1, 1] (as evaluation sees
  // it) and the fraction of x₁'s pixels outside it ("x1_out_of_range"; ReFL and DRaFT: of the
  // point their reward is taken at); latent pipelines (the reward decodes) log the reward as is.
  bool clamp_logged_samples = true;
  std::shared_ptr<const Reward> gold;  // also logged ("gold") when set
};

// The method `o.name` over the policy (which must outlive it) toward `reward` (kept).
std::unique_ptr<Method> make_method(const Policy& policy, std::shared_ptr<const Reward> reward, const MethodOptions& o);

// One optimizer update of the parameter groups from `micro` micro-batches: each micro-batch's loss
// (from micro_loss(mb, part), which fills its statistics) is backpropagated scaled by 1/micro and
// the gradients accumulate; one optimizer step follows. A non-finite loss or gradient skips the
// whole update (no group moves, nothing non-finite is stored); max_skips in a row throw.
// The returned line holds the statistics (floats: the micro-batches' mean; others: the first's),
// "loss", the groups' "grad_norm_<name>" or "skipped" with the reason.
//
// Data parallel (set_communicator, vgg_train under mpirun -np N): the micro-batches are split
// across the N ranks, rank r running micro-batches [r·K/N, (r+1)·K/N) (N must divide K; each
// micro-batch draws from its own stream, so the global sample set does not depend on N), and the
// gradients are summed over all of them before the one step every rank takes alike:
//   deterministic  each micro-batch's gradient (of its loss scaled by 1/K) is packed into a flat
//                  f64 buffer, the buffers are gathered in micro-batch order (one all_gather) and
//                  every rank sums them in that order: the result, and so the run, has the same
//                  bits for every N that divides K;
//   fast           each rank accumulates its micro-batches through autograd as the serial update
//                  does, then one all-reduce (sum) per parameter group over its flat gradient
//                  buffer on the communicator's device (NCCL on GPUs): bits may depend on N.
// The statistics are gathered and combined in micro-batch order as the serial update combines
// them; the skip decision is made on the reduced values, so every rank makes the same one.
// ZeRO-1 (optimizer-state sharding, as DeepSpeed's stage 1 and llm.c): every parameter has one
// owner rank (balanced by size; every rank owns at least one parameter of every group, so a group
// needs at least N parameters) and a rank's AdamW holds the moments of its own parameters only.
// An update reduces the gradients (deterministic: as without sharding; fast: one reduce-scatter
// into the owners' segments), every rank steps its own parameters with the group's clip factor
// from the sums of squares of all ranks' parameters summed in the full order (so the step is the
// unsharded one to the bit), and one all-gather of the owners' segments brings every parameter to
// every rank. Checkpoints hold the whole optimizer state (the unsharded file, byte for byte), so a
// run resumes with any N.
struct Zero1Plan {
  int rank = 0, size = 1;
  std::vector<int> owner;                            // per parameter, groups in order
  std::vector<int64_t> offset;                       // per parameter: its first element in its owner's segment
  int64_t segment = 0;                               // elements of the largest rank's share
  std::vector<int64_t> elements;                     // per rank: the elements it owns
  std::vector<nn::ParamGroup> owned;                 // this rank's groups: its parameters only
  std::vector<std::vector<int64_t>> group_index;     // per owned group: each owned parameter's index in the full group
};
Zero1Plan plan_zero1(const std::vector<nn::ParamGroup>& groups, int rank, int size);

class Updater {
 public:
  Updater(nn::AdamW& opt, std::vector<nn::ParamGroup> groups, int64_t max_skips = 10)
      : opt_(opt), groups_(std::move(groups)), max_skips_(max_skips) {}
  using MicroLoss = std::function<Tensor(int64_t mb, nlohmann::json& part)>;
  nlohmann::json update(int64_t micro, const MicroLoss& micro_loss);
  const nn::StepStats& last_step() const { return last_; }  // of the last update that was not skipped
  bool skipped() const { return skipped_; }                 // whether the last update was skipped
  void set_communicator(std::shared_ptr<dist::Communicator> comm, bool deterministic) {
    comm_ = std::move(comm), deterministic_ = deterministic;
  }
  // ZeRO-1 over the communicator's ranks: the optimizer must have been built from plan.owned.
  void set_zero1(Zero1Plan plan);
  // The whole optimizer state (the unsharded AdamW's state_dict; with ZeRO-1 gathered from the
  // owners: a collective, every rank calls it) and its restore (each rank keeps its share).
  nn::NamedTensors optimizer_state();
  void load_optimizer_state(const nn::NamedTensors& full);

 private:
  void sync_parameters();  // ZeRO-1: the owners' parameters to every rank
  nlohmann::json update_serial(int64_t micro, const MicroLoss& micro_loss, std::string* bad);
  nlohmann::json update_parallel(int64_t micro, const MicroLoss& micro_loss, std::string* bad);
  nn::AdamW& opt_;
  std::vector<nn::ParamGroup> groups_;
  int64_t max_skips_, in_a_row_ = 0;
  nn::StepStats last_;
  bool skipped_ = false;
  std::shared_ptr<dist::Communicator> comm_;
  bool deterministic_ = true;
  std::optional<Zero1Plan> zero_;
};

// Empty when every gradient of the groups is finite, else which parameter's is not.
std::string nonfinite_gradient(const std::vector<nn::ParamGroup>& groups);

}  // namespace vgg::flow::methods
