// The op-case table (tests/support/op_table.cpp): one list of op cases that every op test draws
// from — gradcheck and gradgradcheck (tests/autograd/test_gradcheck.cpp), forward mode
// (tests/autograd/test_forward_ad.cpp), CPU vs CUDA parity (tests/kernels/test_cuda_parity.cpp) —
// each case saying which checks apply. VGG_OPS lists every public op of autograd/ops.h; the
// coverage test requires a forward-mode case for each (docs/testing.md, "The op table").
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"

// Every public op of autograd/ops.h (not ops::detail, not the in-place ops). A name here that is
// not an op does not compile (op_table.cpp); an op missing here has no coverage check, so a new op
// is added here and to the table in the same change.
#define VGG_OPS(X)                                                                                                   \
  X(neg) X(abs) X(exp) X(log) X(sqrt) X(rsqrt) X(square) X(sin) X(cos) X(tanh) X(sigmoid) X(silu) X(relu) X(gelu)    \
  X(erf) X(reciprocal) X(sign) X(pow) X(clamp) X(add) X(sub) X(mul) X(div) X(maximum) X(minimum) X(eq) X(ne) X(lt)   \
  X(le) X(gt) X(ge) X(where) X(sum) X(mean) X(var) X(amax) X(amin) X(max) X(min) X(argmax) X(argmin) X(norm)         \
  X(sum_to) X(matmul) X(linear) X(softmax) X(log_softmax) X(layer_norm) X(rms_norm) X(layer_norm_modulate)           \
  X(gated_residual) X(index_select) X(index_add) X(gather) X(scatter_add) X(embedding) X(pad) X(conv2d) X(im2col)    \
  X(col2im) X(avg_pool2d) X(avg_pool2d_adjoint) X(lora_linear) X(attention) X(attention_jvp) X(quick_gelu) X(group_norm) X(upsample_nearest2d) X(resize2d) X(resize_matrix) X(reshape) X(view) X(permute)            \
  X(transpose) X(narrow) X(slice) X(expand) X(squeeze) X(unsqueeze) X(flatten) X(contiguous) X(to) X(clone) X(cat)   \
  X(split) X(chunk) X(stack)

namespace vgg::test {

enum OpCheck : unsigned {
  kGrad = 1u << 0,              // f64 gradcheck
  kGradGrad = 1u << 1,          // f64 gradgradcheck
  kRefusesGradGrad = 1u << 2,   // a fused op: double backward must be refused with a clear error
  kJvp = 1u << 3,               // forward mode: the adjoint identity against reverse mode
  kJvpCentral = 1u << 4,        // ... and the JVP against central differences (differentiable here)
  kReverseOverForward = 1u << 5,  // gradcheck of (x, v) ↦ J(x)·v
  kCuda = 1u << 6,              // the GPU against the CPU in f32, bf16, f64, contiguous and strided
};

struct OpCase {
  std::string name;  // unique; the op's name, or the op's name and a variant: "matmul_rows"
  std::function<std::vector<Tensor>()> inputs;  // f64 (and integer index) tensors on the CPU
  TensorFn fn;
  unsigned checks = 0;
  GradcheckOptions grad_opt = {};
  double cuda_atol = 0.5;  // the CUDA parity rule's absolute part, in units of rtol·scale
  double jvp_eps = 1e-6, jvp_tol = 1e-6, adjoint_tol = 1e-10;
};
inline std::ostream& operator<<(std::ostream& os, const OpCase& c) { return os << c.name; }

const std::vector<OpCase>& op_cases();
// the cases that carry every check in `checks`
std::vector<OpCase> op_cases_with(unsigned checks);
// how many names the reverse-over-forward list holds (each must name a case)
size_t reverse_over_forward_names();

inline constexpr const char* kOpNames[] = {
#define VGG_OP_NAME(op) #op,
    VGG_OPS(VGG_OP_NAME)
#undef VGG_OP_NAME
};

}  // namespace vgg::test
