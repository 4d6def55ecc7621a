#include "autograd/node.h"

#include <atomic>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "tensor/factory.h"

namespace vgg {

namespace {
thread_local bool g_grad_enabled = true;
std::atomic<uint64_t> g_sequence{0};
}  // namespace

bool grad_enabled() { return g_grad_enabled; }
void set_grad_enabled(bool on) { g_grad_enabled = on; }

SavedTensor::SavedTensor(const Tensor& t, bool is_output) {
  if (!t.defined()) return;
  version_ = t.version();
  is_output_ = is_output;
  requires_grad_ = t.requires_grad();
  if (is_output) {
    data_ = t.detach();
    grad_fn_ = t.grad_fn();
    output_nr_ = t.output_nr();
  } else {
    data_ = t;
  }
}

void SavedTensor::reset() { data_ = Tensor(); }

Tensor SavedTensor::unpack(const char* op) const {
  VGG_CHECK(data_.defined(), "backward of '", op, "': saved tensors were already freed; call backward with ",
            "retain_graph=true the first time to backward through the graph twice");
  VGG_CHECK(data_.version() == version_, "backward of '", op,
            "': a tensor saved for backward was modified in place (version ", data_.version(), ", saved at version ",
            version_, ")");
  if (!is_output_) return data_;
  Tensor t = data_.detach();
  auto fn = grad_fn_.lock();
  if (fn) {
    t.impl().meta.grad_fn = fn;
    t.impl().meta.output_nr = output_nr_;
    t.impl().meta.requires_grad = requires_grad_;
  }
  return t;
}

Node::~Node() {
  std::vector<std::shared_ptr<Node>> stack;
  for (auto& e : next)
    if (e.node) stack.push_back(std::move(e.node));
  next.clear();
  while (!stack.empty()) {
    std::shared_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    if (n.use_count() == 1) {  // we hold the last reference: empty it before it dies
      n->release();
      for (auto& e : n->next)
        if (e.node) stack.push_back(std::move(e.node));
      n->next.clear();
    }
  }
}

Grads FunctionNode::apply(const Grads& grads, const std::vector<bool>& needs) {
  VGG_CHECK(!released, "backward through '", name, "' a second time: its saved tensors were freed after the first ",
            "backward; pass retain_graph=true to the first backward");
  return backward(grads, needs);
}

Tensor AccumulateGrad::run_hooks(const Tensor& g0) const {
  Tensor g = g0;
  for (const auto& h : leaf->meta.hooks) {
    Tensor r = h(g);
    if (r.defined()) {
      VGG_CHECK(r.shape() == g.shape(), "a gradient hook returned shape ", shape_str(r.shape()), " for a gradient of shape ",
                shape_str(g.shape()));
      g = r;
    }
  }
  return g;
}

Grads AccumulateGrad::apply(const Grads& grads, const std::vector<bool>&) {
  Tensor g = run_hooks(grads[0]);
  auto& slot = leaf->meta.grad;
  if (grad_enabled()) {  // create_graph: keep the gradient's own history
    slot = slot ? ops::add(Tensor(slot), g).impl_ptr() : g.impl_ptr();
  } else {  // a fresh contiguous buffer, never an alias of another gradient
    slot = slot ? ops::add(Tensor(slot).detach(), g.detach()).impl_ptr() : clone_raw(g.detach()).impl_ptr();
  }
  return {};
}

Edge gradient_edge(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  if (t.grad_fn()) return {t.grad_fn(), t.output_nr()};
  auto acc = t.impl().meta.grad_accumulator.lock();
  if (!acc) {
    auto a = std::make_shared<AccumulateGrad>();
    a->leaf = t.impl_ptr();
    a->name = "AccumulateGrad";
    a->outputs.push_back({t.shape(), t.dtype(), t.device()});
    a->sequence = g_sequence.fetch_add(1);
    acc = a;
    t.impl().meta.grad_accumulator = acc;
  }
  return {acc, 0};
}

bool any_requires_grad(std::initializer_list<const Tensor*> ts) {
  if (!grad_enabled()) return false;
  for (const Tensor* t : ts)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& ts) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : ts)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

std::shared_ptr<FunctionNode> record(const char* name, const std::vector<Tensor>& inputs,
                                     const std::vector<Tensor*>& outputs) {
  auto node = std::make_shared<FunctionNode>();
  node->name = name;
  node->sequence = g_sequence.fetch_add(1);
  node->next.reserve(inputs.size());
  for (const Tensor& t : inputs) node->next.push_back(gradient_edge(t));
  for (size_t i = 0; i < outputs.size(); ++i) {
    Tensor& o = *outputs[i];
    node->outputs.push_back({o.shape(), o.dtype(), o.device()});
    // outputs may alias an input's storage (views); they get fresh impls with history
    auto& m = o.impl().meta;
    m.grad_fn = node;
    m.output_nr = static_cast<int>(i);
    m.requires_grad = true;
  }
  return node;
}

}  // namespace vgg
