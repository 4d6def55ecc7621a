// LoRA (low-rank adapters) as diffusers' SD3 LoRA training script sets them up with PEFT:
//   y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ,   A [r, in], B [out, r], s = alpha / r,
//   A ~ N(0, (1/r)²) ("gaussian" init), B = 0, so the model starts equal to its base.
// A LoRALinear is a Linear (same weight/bias tensors, frozen) carrying the adapter; with the
// adapter disabled it is exactly the base layer. Adapter tensors are registered as adapter
// parameters ("lora_A.weight", "lora_B.weight"): the optimizer sees them, state_dict() does not.
#pragma once
#include <string>
#include <vector>

#include "nn/layers.h"

namespace vgg::nn {

struct LoRAConfig {
  int64_t rank = 4;
  double alpha = 4.0;  // scaling = alpha / rank
  // Module-path suffixes to wrap (PEFT rule: the path equals an entry or ends with "." + entry).
  std::vector<std::string> targets = {"attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0"};
  uint64_t seed = 0;  // A is drawn from Generator(seed, subsequence = index of the module)
};

// The 8 targets of diffusers' train_dreambooth_lora_sd3.py (attn2 of SD3.5-medium is not
// matched by suffix, as in PEFT).
std::vector<std::string> sd3_training_script_targets();

class LoRALinear : public Linear {
 public:
  // Wraps `base` (its tensors are shared, and frozen: requires_grad is turned off).
  LoRALinear(const Linear& base, int64_t rank, double alpha, Generator* gen);
  std::string type_name() const override { return "LoRALinear"; }
  Tensor forward(const Tensor& x) override;

  void set_enabled(bool on) { enabled_ = on; }
  // On a GPU the layer runs as one fused op (ops::lora_linear: no full-size intermediates, an
  // explicit backward, no double backward); set_fused(false) composes matmuls instead, which
  // double backward needs. On the CPU the layer always composes matmuls (the reference).
  void set_fused(bool on) { fused_ = on; }
  bool fused() const { return fused_; }
  bool enabled() const { return enabled_; }
  // W ← W + s·B·A (merge) and back (unmerge); forward skips the adapter path while merged.
  void merge();
  void unmerge();
  bool merged() const { return merged_; }
  int64_t rank() const { return rank_; }
  double scaling() const { return scaling_; }

  Tensor lora_A, lora_B;

 private:
  int64_t rank_;
  double scaling_;
  bool enabled_ = true;
  bool merged_ = false;
  bool fused_ = true;
};

// Replaces every Linear of `model` whose path matches a target by a LoRALinear and returns the
// wrapped paths. Throws when nothing matches or a path already carries an adapter.
std::vector<std::string> attach_lora(Module& model, const LoRAConfig& cfg);
// Enables/disables (or merges/unmerges) every adapter in the model.
void set_lora_enabled(Module& model, bool on);
void merge_lora(Module& model);
void unmerge_lora(Module& model);
std::vector<std::pair<std::string, LoRALinear*>> lora_modules(Module& model);

// Adapter weights in the diffusers/PEFT file format:
//   "<prefix><module path>.lora_A.weight" [r, in] and ".lora_B.weight" [out, r], prefix
//   "transformer." by default; metadata records rank, alpha and targets.
NamedTensors lora_state_dict(Module& model, const std::string& prefix = "transformer.");
std::map<std::string, std::string> lora_metadata(Module& model);
// Loads adapter weights into the already attached adapters (all must be present, shapes must
// match; extra keys are an error). Nothing changes unless every check passes.
void load_lora_state_dict(Module& model, const NamedTensors& sd, const std::string& prefix = "transformer.");

}  // namespace vgg::nn
