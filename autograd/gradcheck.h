// Finite-difference checks of derivative rules in float64.
// gradcheck compares the full Jacobian from backward with central differences;
// gradgradcheck applies gradcheck to the (create_graph) gradient itself.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace vgg {

struct GradcheckOptions {
  double eps = 1e-6;   // central-difference step
  double atol = 1e-6;  // |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-6;
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // names the first failing entry
  double max_abs_error = 0;
  int64_t entries = 0;  // Jacobian entries compared
};

using TensorFn = std::function<Tensor(const std::vector<Tensor>&)>;

// Inputs are converted to f64 leaves (floating ones require grad; integer ones pass through).
GradcheckResult gradcheck(const TensorFn& f, const std::vector<Tensor>& inputs, GradcheckOptions o = {});
GradcheckResult gradgradcheck(const TensorFn& f, const std::vector<Tensor>& inputs, GradcheckOptions o = {});

}  // namespace vgg
