#include "autograd/forward_ad.h"

#include <atomic>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/factory.h"

namespace vgg::fwad {

namespace {
std::atomic<uint64_t> g_next_level{1};  // level ids are never reused, so stale tangents stay stale
thread_local uint64_t g_level = 0;       // the open level on this thread (0: none)
thread_local bool g_paused = false;
thread_local bool g_propagate = false;   // g_level != 0 && !g_paused
thread_local uint64_t g_backward_level = 0;  // the level during which the reverse engine last ran

void refresh() { g_propagate = g_level != 0 && !g_paused; }
}  // namespace

DualLevel::DualLevel() {
  VGG_CHECK(g_level == 0, "DualLevel: a forward-AD level is already open on this thread (levels do not nest)");
  id_ = g_next_level.fetch_add(1);
  g_level = id_;
  refresh();
}

DualLevel::~DualLevel() {
  g_level = 0;
  refresh();
}

bool level_open() { return g_level != 0; }

PauseGuard::PauseGuard() : prev_(g_paused) {
  g_paused = true;
  refresh();
}

PauseGuard::~PauseGuard() {
  g_paused = prev_;
  refresh();
}

namespace detail {

bool propagating() { return g_propagate; }

Tensor tangent_of(const Tensor& t) {
  if (g_level == 0 || !t.defined()) return Tensor();
  const AutogradMeta& m = t.impl().meta;
  if (m.fw_level != g_level || !m.fw_grad) return Tensor();
  return Tensor(m.fw_grad);
}

Tensor history_alias(const Tensor& t) {
  if (!t.defined() || (t.is_leaf() && t.requires_grad())) return t;  // a leaf's gradient edge is its own
  Tensor a = t.detach();
  if (t.grad_fn()) {
    a.impl().meta.grad_fn = t.grad_fn();
    a.impl().meta.output_nr = t.output_nr();
    a.impl().meta.requires_grad = t.requires_grad();
  }
  return a;
}

void set_tangent(const char* op, const Tensor& y, const Tensor& t0) {
  VGG_CHECK(g_level != 0, op, ": no forward-AD level is open");
  VGG_CHECK(t0.shape() == y.shape() && t0.dtype() == y.dtype() && t0.device() == y.device(), op,
            ": the tangent ", describe(t0), " does not match the output ", describe(y));
  Tensor t = t0.same_impl(y) ? history_alias(t0) : t0;  // never a tensor its own tangent
  AutogradMeta& m = y.impl().meta;
  m.fw_grad = t.impl_ptr();
  m.fw_level = g_level;
}

void check_not_dual(const char* op, const Tensor& t) {
  if (g_level == 0 || !t.defined()) return;
  VGG_CHECK(!tangent_of(t).defined(), op, ": in-place op on a dual tensor is not supported (", describe(t),
            " carries a tangent; use the out-of-place op)");
}

void note_backward() {
  if (g_level != 0) g_backward_level = g_level;
}

}  // namespace detail

Tensor tangent(const Tensor& t) { return detail::tangent_of(t); }
bool has_tangent(const Tensor& t) { return detail::tangent_of(t).defined(); }

Tensor make_dual(const Tensor& primal, const Tensor& tangent) {
  VGG_CHECK(g_level != 0, "make_dual: no forward-AD level is open (create a vgg::fwad::DualLevel first)");
  VGG_CHECK(primal.defined(), "make_dual: the primal is undefined");
  VGG_CHECK(tangent.defined(), "make_dual: the tangent is undefined");
  VGG_CHECK(is_floating(primal.dtype()), "make_dual: the primal must be floating point, got ", describe(primal));
  VGG_CHECK(tangent.shape() == primal.shape(), "make_dual: tangent shape ", shape_str(tangent.shape()),
            " does not match primal shape ", shape_str(primal.shape()));
  VGG_CHECK(tangent.dtype() == primal.dtype(), "make_dual: tangent dtype ", dtype_name(tangent.dtype()),
            " does not match primal dtype ", dtype_name(primal.dtype()));
  VGG_CHECK(tangent.device() == primal.device(), "make_dual: tangent device ", tangent.device().str(),
            " does not match primal device ", primal.device().str());
  // a differentiable identity: reverse mode through the dual reaches the primal
  Tensor y = primal.detach();
  if (any_requires_grad({&primal})) {
    auto node = record("make_dual", {primal}, {&y});
    node->backward = [](const Grads& g, const std::vector<bool>&) -> Grads { return {g[0]}; };
  }
  detail::set_tangent("make_dual", y, tangent);
  return y;
}

std::pair<std::vector<Tensor>, std::vector<Tensor>> jvp(const MultiFn& fn, const std::vector<Tensor>& primals,
                                                        const std::vector<Tensor>& tangents) {
  VGG_CHECK(primals.size() == tangents.size(), "jvp: ", primals.size(), " primals but ", tangents.size(),
            " tangents");
  VGG_CHECK(g_level == 0, "jvp: a forward-AD level is already open on this thread (levels do not nest)");
  DualLevel level;
  std::vector<Tensor> in;
  in.reserve(primals.size());
  for (size_t i = 0; i < primals.size(); ++i) {
    if (!tangents[i].defined()) {
      in.push_back(primals[i]);
      continue;
    }
    try {
      in.push_back(make_dual(primals[i], tangents[i]));
    } catch (const Error& e) {
      VGG_FAIL("jvp: input ", i, ": ", e.what());
    }
  }
  std::vector<Tensor> outs = fn(in);
  std::vector<Tensor> touts;
  touts.reserve(outs.size());
  for (size_t i = 0; i < outs.size(); ++i) {
    VGG_CHECK(outs[i].defined(), "jvp: output ", i, " is undefined");
    Tensor t = detail::tangent_of(outs[i]);
    if (!t.defined()) {
      VGG_CHECK(g_backward_level != level.id(), "jvp: output ", i,
                " has no tangent and the function ran a backward pass; tangents do not flow through gradients ",
                "(forward-over-reverse is not supported; use double backward with create_graph=true)");
      t = zeros_like(outs[i]);
    }
    touts.push_back(t);
  }
  return {outs, touts};
}

}  // namespace vgg::fwad
