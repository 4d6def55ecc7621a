// Activation checkpointing: trade compute for memory by keeping only a segment's inputs and
// recomputing the segment in backward (as torch.utils.checkpoint, non-reentrant in spirit).
//
//   y = checkpoint(fn, {x}, module.parameters())
//
// runs fn(x) without recording a graph (its intermediate activations are freed at once) and records
// one node "checkpoint" whose inputs are x and the parameters fn reads. Its backward runs fn again
// with grad mode on, from the saved inputs, and differentiates that recomputation:
//   * the gradients are those of fn itself (bit-identical when fn is deterministic: same ops, same
//     kernels, same order);
//   * under create_graph (double backward, e.g. a Hessian-vector product through the reward) the
//     recomputation starts from the inputs themselves, so the gradient keeps its graph to them and to
//     the parameters;
//   * with a forward-AD level open, fn simply runs (tangents need the graph-free path anyway);
//   * without anything requiring grad, fn simply runs.
// fn must be a pure function of its inputs and `params` (no randomness, no state changes), and
// is kept (by value) until the backward; tensors it reads that want gradients and are not in
// `params` get none, so pass every parameter of the segment (Module::parameters()). Hooks on parameters run in the recomputation's capture and again when
// the gradient reaches the parameter: do not combine leaf hooks with checkpointing.
#pragma once
#include <functional>
#include <vector>

#include "tensor/tensor.h"

namespace vgg {

using CheckpointFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& inputs)>;

// The outputs of fn(inputs), their backward by recomputation (see above).
std::vector<Tensor> checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs, const std::vector<Tensor>& params);
// One input, one output.
Tensor checkpoint(const std::function<Tensor(const Tensor&)>& fn, const Tensor& x, const std::vector<Tensor>& params);

}  // namespace vgg
