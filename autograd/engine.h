// The reverse-mode engine.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace vgg {

// Accumulates d(sum of roots·grad_roots)/d(leaf) into every leaf's .grad.
// grad_roots may be empty when every root has one element (then 1 is used).
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots = {}, bool retain_graph = false,
              bool create_graph = false);
void backward(const Tensor& root, const Tensor& grad_root = Tensor(), bool retain_graph = false,
              bool create_graph = false);

// Returns d(sum of outputs·grad_outputs)/d(inputs) without touching .grad. Inputs that do
// not influence the outputs get an undefined tensor when allow_unused, else an error.
// retain_graph defaults to create_graph.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, bool create_graph = false,
                         bool allow_unused = false, int retain_graph = -1);

}  // namespace vgg
