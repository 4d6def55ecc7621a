// nn::Module — a tree of named parameters, buffers and sub-modules, named as diffusers names
// them ("transformer_blocks.3.attn.to_q.weight").
//
// A module owns its tensors as ordinary members and registers them by reference, so a layer
// reads `weight` directly in forward(). Modules are neither copyable nor movable (the
// registry holds references into them); build them with std::make_shared.
//
// Parameters come in two kinds: regular ones (the model's weights, in state_dict()) and
// adapter ones (LoRA A/B: seen by parameters() and the optimizer, saved apart with
// adapter_state_dict()), so a base checkpoint loads strictly into a model carrying adapters.
#pragma once
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace vgg::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Short name of the module type for messages ("Linear", "JointTransformerBlock").
  virtual std::string type_name() const = 0;

  // Parameters of this module and its children, depth first in registration order.
  // trainable_only keeps those with requires_grad.
  NamedTensors named_parameters(bool trainable_only = false) const;
  std::vector<Tensor> parameters(bool trainable_only = false) const;
  NamedTensors named_buffers() const;
  // Activation checkpointing of one segment (autograd/checkpoint.h): f(x), whose intermediates
  // are recomputed in backward instead of kept when `on`; gradients reach this module's
  // trainable parameters (f must read no other trainable tensor).
  Tensor checkpointed(bool on, const std::function<Tensor(const Tensor&)>& f, const Tensor& x) const;
  int64_t num_parameters(bool trainable_only = false) const;  // elements, adapters included

  // Regular parameters plus persistent buffers (no adapters).
  NamedTensors state_dict() const;
  // Copies values into the registered tensors (casting dtype, keeping device and
  // requires_grad). strict: every key must be present and no key may be unknown. Shape
  // mismatches always throw. Nothing is modified unless every check passes.
  void load_state_dict(const NamedTensors& sd, bool strict = true);
  void load_state_dict(const std::map<std::string, Tensor>& sd, bool strict = true);

  // Adapter parameters only (LoRA A/B), named like parameters.
  NamedTensors adapter_parameters() const;

  // Every module in the tree with its dotted path ("" for this one), depth first.
  std::vector<std::pair<std::string, Module*>> named_modules();
  Module* find_module(const std::string& path);  // nullptr when absent
  // Replaces the child at `path` (dotted); the new module must fit the slot's type.
  void replace_module(const std::string& path, std::shared_ptr<Module> m);

  // requires_grad on every regular parameter (adapters untouched).
  void requires_grad_(bool on);
  // Converts every parameter and floating buffer to dtype (parameters stay leaves with their
  // requires_grad flag). Sub-modules with cached state are told through on_dtype_change().
  void to(DType dtype);
  void to(Device device);
  DType param_dtype() const;  // dtype of the first parameter (F32 when there are none)
  Device param_device() const;  // device of the first parameter (the CPU when there are none)
  // Mixed precision: with a compute dtype set (on this module and every sub-module), layers cast
  // their parameters to it in forward() through the differentiable cast, so gradients reach the
  // parameters (the f32 master weights) in their own dtype and the optimizer updates those.
  // Models (nn::MMDiT) cast their inputs on entry and return their output in the parameters'
  // dtype. std::nullopt (the default) computes in the parameters' dtype.
  void set_compute_dtype(std::optional<DType> dtype);
  std::optional<DType> compute_dtype() const { return compute_dtype_; }
  // t cast to the compute dtype (t itself when none is set or it already has it).
  Tensor compute(const Tensor& t) const;
  // The dtype forward() computes in given a parameter: the compute dtype, else the parameter's.
  DType forward_dtype(const Tensor& param) const { return compute_dtype_.value_or(param.dtype()); }

  // Deferred construction: a module built with LayerOptions::deferred holds zero-stride
  // placeholders (right shapes, no memory) so that even an 8-billion-parameter model can be
  // built and counted anywhere. materialize() allocates every placeholder in `dtype` on
  // `device` and runs each module's reset_parameters().
  void materialize(DType dtype, Device device = Device::cpu(), Generator* gen = nullptr);
  bool materialized() const;
  // Default initialisation of this module's own tensors (not its children's).
  virtual void reset_parameters(Generator* /*gen*/) {}

  // Optional: training flag, for modules that behave differently (none of ours do yet).
  bool training() const { return training_; }
  void train(bool on = true);

 protected:
  void register_parameter(const std::string& name, Tensor& slot, bool adapter = false);
  void register_buffer(const std::string& name, Tensor& slot, bool persistent = true);
  template <typename M>
  void register_module(const std::string& name, std::shared_ptr<M>& slot) {
    ChildSlot c;
    c.name = name;
    c.get = [&slot]() -> Module* { return slot.get(); };
    c.set = [&slot, name](std::shared_ptr<Module> m) {
      auto typed = std::dynamic_pointer_cast<M>(m);
      if (!typed) throw_bad_replacement(name, m ? m->type_name() : "null");
      slot = std::move(typed);
    };
    add_child(std::move(c));
  }

 private:
  struct ParamSlot {
    std::string name;
    Tensor* t;
    bool adapter;
  };
  struct BufferSlot {
    std::string name;
    Tensor* t;
    bool persistent;
  };
  struct ChildSlot {
    std::string name;
    std::function<Module*()> get;
    std::function<void(std::shared_ptr<Module>)> set;
  };
  void add_child(ChildSlot c);
  [[noreturn]] static void throw_bad_replacement(const std::string& name, const std::string& type);
  void check_name(const std::string& name) const;
  // Visits (full name, slot) for every parameter / buffer in the tree.
  void visit_params(const std::string& prefix, const std::function<void(const std::string&, Tensor&, bool)>& f) const;
  void visit_buffers(const std::string& prefix, const std::function<void(const std::string&, Tensor&, bool)>& f) const;
  void convert(const std::function<Tensor(const Tensor&)>& f);

  std::vector<ParamSlot> params_;
  std::vector<BufferSlot> buffers_;
  std::vector<ChildSlot> children_;
  bool training_ = true;
  std::optional<DType> compute_dtype_;
};

// A zero-stride stand-in with the given shape (one element of memory), and its test.
Tensor placeholder(const Shape& shape, DType dtype);
bool is_placeholder(const Tensor& t);

// A fresh leaf tensor with the same values (no graph), requires_grad as given.
Tensor make_parameter(const Tensor& values, bool requires_grad = true);

}  // namespace vgg::nn
