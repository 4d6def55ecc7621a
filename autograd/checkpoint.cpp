#include "autograd/checkpoint.h"

#include <memory>

#include "autograd/engine.h"
#include "autograd/forward_ad.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "tensor/error.h"

namespace vgg {

std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs, const std::vector<Tensor>& params) {
  std::vector<Tensor> all = inputs;
  all.insert(all.end(), params.begin(), params.end());
  if (fwad::level_open() || !any_requires_grad(all)) return fn(inputs);

  std::vector<Tensor> outs;
  {
    NoGradGuard no_graph;
    outs = fn(inputs);
  }
  std::vector<Tensor*> po;
  for (Tensor& o : outs) {
    VGG_CHECK(o.defined(), "checkpoint: the function returned an undefined tensor");
    po.push_back(&o);
  }
  auto saved = std::make_shared<std::vector<SavedTensor>>();
  for (const Tensor& t : inputs) saved->push_back(t.defined() ? SavedTensor(t, false) : SavedTensor());
  auto node = record("checkpoint", all, po);
  const size_t n_in = inputs.size();
  std::vector<Tensor> ps = params;  // leaves: holding them keeps no activation alive
  node->backward = [fn, saved, ps, n_in](const Grads& gys, const std::vector<bool>& needs) {
    const bool create_graph = grad_enabled();  // the engine runs backward with grad mode = create_graph
    GradModeGuard with_graph(true);
    std::vector<Tensor> xs(n_in);
    for (size_t i = 0; i < n_in; ++i) {
      if (!(*saved)[i].defined()) continue;
      Tensor x = (*saved)[i].unpack("checkpoint");
      // without create_graph a fresh leaf stops the recomputation's backward at the segment's edge;
      // with it, the input itself keeps the gradient's graph to whatever x came from
      xs[i] = create_graph ? x : x.detach().requires_grad_(x.requires_grad());
    }
    const std::vector<Tensor> ys = fn(xs);
    VGG_CHECK(ys.size() == gys.size(), "checkpoint: the recomputation returned ", ys.size(), " outputs, the forward ", gys.size());
    std::vector<Tensor> roots, seeds;
    for (size_t k = 0; k < ys.size(); ++k)
      if (gys[k].defined() && ys[k].requires_grad()) roots.push_back(ys[k]), seeds.push_back(gys[k]);
    Grads out(n_in + ps.size());
    std::vector<Tensor> wrt;
    std::vector<size_t> slot;
    for (size_t i = 0; i < n_in; ++i)
      if (needs[i] && xs[i].defined() && xs[i].requires_grad()) wrt.push_back(xs[i]), slot.push_back(i);
    for (size_t j = 0; j < ps.size(); ++j)
      if (needs[n_in + j] && ps[j].defined() && ps[j].requires_grad()) wrt.push_back(ps[j]), slot.push_back(n_in + j);
    if (roots.empty() || wrt.empty()) return out;
    const std::vector<Tensor> g = grad(roots, wrt, seeds, create_graph, /*allow_unused=*/true, /*retain_graph=*/create_graph ? 1 : 0);
    for (size_t k = 0; k < g.size(); ++k) out[slot[k]] = g[k];
    return out;
  };
  return outs;
}

Tensor checkpoint(const std::function<Tensor(const Tensor&)>& fn, const Tensor& x, const std::vector<Tensor>& params) {
  return checkpoint([fn](const std::vector<Tensor>& in) { return std::vector<Tensor>{fn(in[0])}; }, {x}, params)[0];
}

}  // namespace vgg
