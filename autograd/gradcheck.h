// Finite-difference checks of derivative rules in float64.
// gradcheck compares the full Jacobian from backward with central differences;
// gradgradcheck applies gradcheck to the (create_graph) gradient itself;
// jvpcheck checks forward mode (autograd/forward_ad.h) against central differences and against
// reverse mode.
#pragma once
#include <cstdint>
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

struct JvpcheckOptions {
  double eps = 1e-6;           // central-difference step
  double atol = 1e-6;          // |jvp - numeric| <= atol + rtol * |numeric|, elementwise
  double rtol = 1e-6;
  double adjoint_tol = 1e-10;  // |<u, J v> - <J^T u, v>| <= adjoint_tol * (1 + |<u, J v>|)
  bool central = true;         // compare with (f(x + eps v) - f(x - eps v)) / 2 eps
  bool adjoint = true;         // compare <u, J v> with <J^T u, v> from reverse mode
  uint64_t seed = 0;           // of the random tangents v and cotangent u
};

// Inputs as for gradcheck. Random tangents on every floating input: the JVP along all of them at
// once (the tangents in a strided layout), then along each input alone (the others undefined),
// each against central differences; the primal computed under forward mode must equal f(x)
// exactly. The adjoint identity ties the JVP rules to the reverse rules.
GradcheckResult jvpcheck(const TensorFn& f, const std::vector<Tensor>& inputs, JvpcheckOptions o = {});

}  // namespace vgg
