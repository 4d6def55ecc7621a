// Graph nodes. An op that records history creates one Node whose backward closure maps the
// gradients of its outputs to the gradients of its inputs, written with differentiable ops
// so that create_graph=true yields higher derivatives.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace vgg {

struct Edge {
  std::shared_ptr<Node> node;  // null: the input needs no gradient
  int input_nr = 0;            // which output of `node` the input was
  bool valid() const { return node != nullptr; }
};

struct OutputMeta {
  Shape shape;
  DType dtype;
  Device device;
};

// A tensor kept for backward. Checks on unpack that it was not modified in place since.
// Outputs of the node that saves them are held without an owning reference to the node
// (that would be a cycle); unpack restores their history.
class SavedTensor {
 public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t, bool is_output);
  Tensor unpack(const char* op) const;
  bool defined() const { return data_.defined(); }
  void reset();

 private:
  Tensor data_;  // detached alias of the saved tensor (or the tensor itself for inputs)
  std::weak_ptr<Node> grad_fn_;
  int output_nr_ = 0;
  int64_t version_ = 0;
  bool is_output_ = false;
  bool requires_grad_ = false;
};

using Grads = std::vector<Tensor>;

struct Node : std::enable_shared_from_this<Node> {
  // Tears long chains down iteratively (a recursive release would overflow the stack).
  virtual ~Node();
  // grads[i] is the gradient of output i (undefined when none arrived); needs[j] says
  // whether input j wants a gradient. Returns one (possibly undefined) tensor per input.
  virtual Grads apply(const Grads& grads, const std::vector<bool>& needs) = 0;
  virtual void release() {}  // frees saved tensors (after a backward without retain_graph)
  virtual bool accumulates() const { return false; }

  std::string name;
  std::vector<Edge> next;          // one per input
  std::vector<OutputMeta> outputs;  // one per output
  uint64_t sequence = 0;           // creation order; later nodes run first
};

// The backward of one recorded op.
struct FunctionNode final : Node {
  ~FunctionNode() override { backward = nullptr; }
  std::function<Grads(const Grads&, const std::vector<bool>&)> backward;
  bool released = false;
  Grads apply(const Grads& grads, const std::vector<bool>& needs) override;
  void release() override {
    backward = nullptr;
    released = true;
  }
};

// Writes the incoming gradient into a leaf's .grad (after its hooks).
struct AccumulateGrad final : Node {
  std::shared_ptr<TensorImpl> leaf;
  bool accumulates() const override { return true; }
  Grads apply(const Grads& grads, const std::vector<bool>& needs) override;
  Tensor run_hooks(const Tensor& g) const;
};

// The edge through which a gradient reaches tensor t (creates a leaf's accumulator).
Edge gradient_edge(const Tensor& t);

// True when grad mode is on and one of the tensors requires grad.
bool any_requires_grad(std::initializer_list<const Tensor*> ts);
bool any_requires_grad(const std::vector<Tensor>& ts);

// Records a node named `name` for outputs computed from inputs (undefined inputs allowed).
// Call only when any_requires_grad(inputs); then set node->backward.
std::shared_ptr<FunctionNode> record(const char* name, const std::vector<Tensor>& inputs,
                                     const std::vector<Tensor*>& outputs);

}  // namespace vgg
