// Reverse-mode execution: dependency counting over the graph reachable from the roots, then
// nodes run in an order where every node runs after all nodes that feed it gradients
// (ties broken by creation order, latest first). Gradients for shared inputs are summed.
#include "autograd/engine.h"

#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "autograd/forward_ad.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/factory.h"

namespace vgg {

namespace {

struct ByLatest {
  bool operator()(const Node* a, const Node* b) const { return a->sequence < b->sequence; }
};

struct Capture {
  Node* node;
  int nr;
  size_t slot;
};

std::vector<Tensor> run(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots, bool retain_graph,
                        bool create_graph, const std::vector<Tensor>* inputs, bool allow_unused) {
  VGG_CHECK(grad_roots.empty() || grad_roots.size() == roots.size(), "backward: ", roots.size(), " outputs but ",
            grad_roots.size(), " gradients");
  std::vector<Edge> root_edges;
  std::vector<Tensor> root_grads;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    VGG_CHECK(r.defined(), "backward: output ", i, " is undefined");
    VGG_CHECK(r.requires_grad(), "backward: output ", i, " (", describe(r),
              ") does not require grad and has no grad_fn");
    Tensor g;
    if (!grad_roots.empty() && grad_roots[i].defined()) {
      g = grad_roots[i];
      VGG_CHECK(g.shape() == r.shape() && g.dtype() == r.dtype() && g.device() == r.device(), "backward: gradient ",
                describe(g), " does not match output ", describe(r));
    } else {
      VGG_CHECK(r.numel() == 1, "backward: output ", i, " has shape ", shape_str(r.shape()),
                "; a gradient is needed for non-scalar outputs");
      g = ones_like(r);
    }
    root_edges.push_back(gradient_edge(r));
    root_grads.push_back(g);
  }

  // dependency counts over the reachable graph
  std::unordered_map<Node*, int> deps;
  std::unordered_set<Node*> seen;
  std::vector<Node*> stack;
  for (auto& e : root_edges)
    if (seen.insert(e.node.get()).second) stack.push_back(e.node.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (auto& e : n->next) {
      if (!e.valid()) continue;
      deps[e.node.get()]++;
      if (seen.insert(e.node.get()).second) stack.push_back(e.node.get());
    }
  }

  // captures for grad(): where each input's gradient arrives
  std::vector<Capture> captures;
  std::unordered_set<Node*> needed;  // nodes on a path to a captured input
  std::vector<Tensor> captured;
  if (inputs) {
    captured.resize(inputs->size());
    for (size_t i = 0; i < inputs->size(); ++i) {
      const Tensor& t = (*inputs)[i];
      VGG_CHECK(t.defined() && t.requires_grad(), "grad: input ", i, " (", describe(t), ") does not require grad");
      Edge e = gradient_edge(t);
      captures.push_back({e.node.get(), e.input_nr, i});
    }
    // needed = nodes from which a capture node is reachable: an iterative post-order walk
    // (graphs can be tens of thousands of nodes deep)
    std::unordered_set<Node*> targets;
    for (auto& c : captures) targets.insert(c.node);
    std::unordered_set<Node*> visited;
    std::vector<std::pair<Node*, size_t>> walk;
    for (auto& e : root_edges) {
      if (!visited.insert(e.node.get()).second) continue;
      walk.push_back({e.node.get(), 0});
      while (!walk.empty()) {
        auto& [n, i] = walk.back();
        if (i < n->next.size()) {
          Node* c = n->next[i++].node.get();
          if (c && visited.insert(c).second) walk.push_back({c, 0});
          continue;
        }
        bool r = targets.count(n) > 0;
        for (auto& e2 : n->next) r = r || (e2.valid() && needed.count(e2.node.get()) > 0);
        if (r) needed.insert(n);
        walk.pop_back();
      }
    }
  }

  GradModeGuard mode(create_graph);
  // gradients carry no tangents (forward-over-reverse is not supported; see forward_ad.h)
  fwad::detail::note_backward();
  fwad::PauseGuard no_tangents;
  std::unordered_map<Node*, Grads> buffers;
  auto add_to = [&](Node* n, int nr, const Tensor& g) {
    auto& buf = buffers[n];
    if (buf.empty()) buf.resize(n->outputs.size());
    Tensor& slot = buf[nr];
    slot = slot.defined() ? ops::add(slot, g) : g;
  };
  std::priority_queue<Node*, std::vector<Node*>, ByLatest> ready;
  for (size_t i = 0; i < root_edges.size(); ++i) add_to(root_edges[i].node.get(), root_edges[i].input_nr, root_grads[i]);
  for (auto& e : root_edges)
    if (deps[e.node.get()] == 0) {
      deps[e.node.get()] = -1;  // queued
      ready.push(e.node.get());
    }

  while (!ready.empty()) {
    Node* n = ready.top();
    ready.pop();
    Grads in = std::move(buffers[n]);
    buffers.erase(n);
    if (in.empty()) in.resize(n->outputs.size());
    bool any_grad = false;
    for (auto& g : in) any_grad = any_grad || g.defined();
    bool execute = any_grad;
    if (inputs && any_grad) {
      for (auto& c : captures)
        if (c.node == n && in[c.nr].defined()) {
          Tensor g = in[c.nr];
          if (n->accumulates()) g = static_cast<AccumulateGrad*>(n)->run_hooks(g);
          captured[c.slot] = captured[c.slot].defined() ? ops::add(captured[c.slot], g) : g;
        }
      execute = !n->accumulates() && needed.count(n) > 0;
    }
    if (execute && !n->accumulates()) {
      for (size_t k = 0; k < in.size(); ++k)
        if (!in[k].defined()) in[k] = zeros(n->outputs[k].shape, {n->outputs[k].dtype, n->outputs[k].device});
    }
    Grads out;
    if (execute) {
      std::vector<bool> needs(n->next.size());
      for (size_t j = 0; j < needs.size(); ++j)
        needs[j] = n->next[j].valid() && (!inputs || needed.count(n->next[j].node.get()) > 0);
      out = n->apply(in, needs);
      if (!n->accumulates()) {
        VGG_CHECK(out.size() == n->next.size(), "backward of '", n->name, "' returned ", out.size(),
                  " gradients for ", n->next.size(), " inputs");
      }
      if (!retain_graph) n->release();
    }
    for (size_t j = 0; j < n->next.size(); ++j) {
      const Edge& e = n->next[j];
      if (!e.valid()) continue;
      Node* c = e.node.get();
      if (execute && j < out.size() && out[j].defined()) {
        const OutputMeta& m = c->outputs[e.input_nr];
        VGG_CHECK(out[j].shape() == m.shape, "backward of '", n->name, "' returned a gradient of shape ",
                  shape_str(out[j].shape()), " for input ", j, " of shape ", shape_str(m.shape));
        add_to(c, e.input_nr, out[j]);
      }
      if (--deps[c] == 0) {
        deps[c] = -1;
        ready.push(c);
      }
    }
  }

  if (inputs) {
    for (size_t i = 0; i < captured.size(); ++i)
      VGG_CHECK(captured[i].defined() || allow_unused, "grad: input ", i, " (", describe((*inputs)[i]),
                ") was not used to compute the outputs (pass allow_unused=true)");
    if (!create_graph)
      for (auto& c : captured)
        if (c.defined()) c = c.detach();
  }
  return captured;
}

}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots, bool retain_graph,
              bool create_graph) {
  run(roots, grad_roots, retain_graph || create_graph, create_graph, nullptr, false);
}

void backward(const Tensor& root, const Tensor& grad_root, bool retain_graph, bool create_graph) {
  backward(std::vector<Tensor>{root}, grad_root.defined() ? std::vector<Tensor>{grad_root} : std::vector<Tensor>{},
           retain_graph, create_graph);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool create_graph, bool allow_unused,
                         int retain_graph) {
  bool retain = retain_graph < 0 ? create_graph : retain_graph != 0;
  return run(outputs, grad_outputs, retain, create_graph, &inputs, allow_unused);
}

}  // namespace vgg
