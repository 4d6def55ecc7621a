// The op-case table: every op test draws its cases from here (docs/testing.md, "The op table").
// A case names a function of tensors, its f64 CPU inputs, and the checks that apply to it:
//   kGrad       f64 gradcheck (central differences of the full Jacobian)
//   kGradGrad   gradgradcheck (double backward); kRefusesGradGrad: a fused op must refuse it
//   kJvp        forward mode: the JVP against central differences (kJvpCentral: the function is
//               differentiable at the inputs) and the adjoint identity against reverse mode
//   kReverseOverForward  gradcheck of (x, v) ↦ J(x)·v
//   kCuda       the same function on the GPU against the CPU in f32, bf16 and f64, with contiguous
//               and strided (column-major) inputs, within the parity rule of docs/testing.md
// Adding an op is one entry in the first list with the checks it should pass; the lists below
// it hold the cases that grew up in separate suites (gradcheck and forward mode merged by name,
// the CUDA cases at odd sizes), converted as they were.
#include "tests/support/op_table.h"

#include <cmath>
#include <map>
#include <set>

#include "autograd/ops_util.h"
#include "tests/support/test_support.h"

namespace vgg::test {

// every op named in VGG_OPS exists in ops:: (a name that is not an op does not compile)
namespace op_list_check {
#define VGG_OP_USING(op) using ::vgg::ops::op;
VGG_OPS(VGG_OP_USING)
#undef VGG_OP_USING
}  // namespace op_list_check

namespace {

Tensor I(std::vector<int64_t> v, Shape s) { return from_vector(v, s, {DType::I64}); }
Tensor pos(Shape s, uint64_t seed) { return rnd_uniform(s, 0.5, 2.0, seed); }
Tensor D(std::vector<double> v, Shape s) { return from_vector(v, s, {DType::F64}); }
// the CUDA cases at odd sizes: n inputs of [37, 29] (not a multiple of any vector width), uniform
// in [lo, hi]
std::function<std::vector<Tensor>()> odd_inputs(int n, double lo, double hi) {
  return [=] {
    std::vector<Tensor> v;
    for (int i = 0; i < n; ++i) v.push_back(rnd_uniform({37, 29}, lo, hi, 100 + static_cast<uint64_t>(i)));
    return v;
  };
}

// ---- 1. cases written for this table -----------------------------------------------------------

std::vector<OpCase> table_cases() {
  using namespace ops;
  constexpr unsigned kAll = kGrad | kGradGrad | kJvp | kJvpCentral | kCuda;
  return {
      // a linear layer (on the GPU one GEMM with the bias in its epilogue)
      OpCase{"linear", [] { return std::vector<Tensor>{rnd({2, 3, 4}, 72), rnd({5, 4}, 73), rnd({5}, 74)}; },
             [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); }, kAll},
      OpCase{"linear_nobias", [] { return std::vector<Tensor>{rnd({3, 4}, 99), rnd({2, 4}, 100)}; },
             [](const std::vector<Tensor>& in) { return linear(in[0], in[1]); }, kAll},
      // at odd sizes, with its gradients through the GPU's GEMMs
      OpCase{"linear_bias_odd", odd_inputs(1, -2, 2), [](const std::vector<Tensor>& in) {
               const Tensor& x = in[0];
               Tensor xx = reshape(narrow(narrow(x, 0, 0, 24), 1, 0, 28), {2, 12, 28});
               Tensor w = narrow(narrow(x, 0, 3, 20), 1, 1, 28), b = reshape(narrow(narrow(x, 1, 5, 1), 0, 0, 20), {20});
               return linear(xx, w, b);
             }, kCuda, {}, 2},
      OpCase{"linear_bias_backward_odd", odd_inputs(1, -2, 2), [](const std::vector<Tensor>& in) {
               const Tensor& x = in[0];
               Tensor xx = contiguous(reshape(narrow(narrow(x, 0, 0, 24), 1, 0, 28), {2, 12, 28})).detach().requires_grad_(true);
               Tensor w = contiguous(narrow(narrow(x, 0, 3, 20), 1, 1, 28)).detach().requires_grad_(true);
               Tensor b = contiguous(reshape(narrow(narrow(x, 1, 5, 1), 0, 0, 20), {20})).detach().requires_grad_(true);
               Tensor R = contiguous(reshape(narrow(narrow(x, 0, 1, 24), 1, 2, 20), {2, 12, 20})).detach();
               auto g = grad({sum(mul(linear(xx, w, b), R))}, {xx, w, b});
               return cat({reshape(g[0], {-1}), reshape(g[1], {-1}), reshape(g[2], {-1})}, 0);
             }, kCuda, {}, 2},
  };
}

// ---- 2. gradcheck / gradgradcheck cases (merged with the forward-mode case of the same name) ---

struct GradCase {
  std::string name;
  std::function<std::vector<Tensor>()> inputs;
  TensorFn fn;
  bool gradgrad = true;
  GradcheckOptions opt = {};
};
#define UNARY(NAME, EXPR, INPUT) \
  GradCase { NAME, [] { return std::vector<Tensor>{INPUT}; }, [](const std::vector<Tensor>& in) { const Tensor& x = in[0]; return EXPR; } }
#define BINARY(NAME, EXPR, A, B) \
  GradCase { NAME, [] { return std::vector<Tensor>{A, B}; }, [](const std::vector<Tensor>& in) { const Tensor& a = in[0]; const Tensor& b = in[1]; return EXPR; } }
#define Case GradCase

std::vector<GradCase> grad_cases() {
  using namespace ops;
  std::vector<GradCase> c = {
      // unary
      UNARY("neg", neg(x), rnd({3, 4}, 1)),
      UNARY("abs", abs(x), rnd({3, 4}, 2)),
      UNARY("exp", exp(x), rnd({3, 4}, 3)),
      UNARY("log", log(x), pos({3, 4}, 4)),
      UNARY("sqrt", sqrt(x), pos({3, 4}, 5)),
      UNARY("rsqrt", rsqrt(x), pos({3, 4}, 6)),
      UNARY("square", square(x), rnd({3, 4}, 7)),
      UNARY("sin", sin(x), rnd({3, 4}, 8)),
      UNARY("cos", cos(x), rnd({3, 4}, 9)),
      UNARY("tanh", tanh(x), rnd({3, 4}, 10)),
      UNARY("sigmoid", sigmoid(x), rnd({3, 4}, 11)),
      UNARY("silu", silu(x), rnd({3, 4}, 12)),
      UNARY("relu", relu(x), rnd({3, 4}, 13)),
      UNARY("gelu", gelu(x), rnd({3, 4}, 14)),
      UNARY("gelu_tanh", gelu(x, true), rnd({3, 4}, 15)),
      // the fused derivative op gelu_tanh's backward uses; its own rule is composed
      UNARY("gelu_tanh_grad", ops::detail::gelu_tanh_grad(mul(x, 2.0)), rnd({3, 4}, 45)),
      UNARY("erf", erf(x), rnd({3, 4}, 16)),
      UNARY("reciprocal", reciprocal(x), pos({3, 4}, 17)),
      UNARY("pow_scalar", pow(x, 3.0), rnd({3, 4}, 18)),
      UNARY("pow_fractional", pow(x, 0.7), pos({3, 4}, 19)),
      UNARY("clamp", clamp(x, -0.5, 0.5), rnd({3, 4}, 20)),
      UNARY("add_scalar", add(x, 1.5), rnd({3, 4}, 21)),
      UNARY("mul_scalar", mul(x, -2.5), rnd({3, 4}, 22)),
      UNARY("rsub_rdiv", (2.0 - x) / 3.0 + 1.0 / (x + 4.0), rnd({3, 4}, 23)),
      // binary with broadcasting
      BINARY("add", add(a, b), rnd({3, 4}, 30), rnd({4}, 31)),
      BINARY("sub", sub(a, b), rnd({2, 1, 3}, 32), rnd({4, 1}, 33)),
      BINARY("mul", mul(a, b), rnd({3, 4}, 34), rnd({3, 1}, 35)),
      BINARY("div", div(a, b), rnd({3, 4}, 36), pos({4}, 37)),
      BINARY("pow", pow(a, b), pos({3, 4}, 38), rnd({3, 4}, 39)),
      BINARY("maximum", maximum(a, b), rnd({3, 4}, 40), rnd({4}, 41)),
      BINARY("minimum", minimum(a, b), rnd({3, 4}, 42), rnd({3, 4}, 43)),
      BINARY("where", where(gt(a, b), a * b, a - b), rnd({3, 4}, 44), rnd({4}, 45)),
      // reductions
      UNARY("sum_all", sum(x), rnd({3, 4}, 50)),
      UNARY("sum_dims_keepdim", sum(x, {0, 2}, true), rnd({2, 3, 4}, 51)),
      UNARY("sum_noncontiguous", sum(transpose(x, 0, 1), {1}), rnd({3, 4}, 52)),
      UNARY("mean", mean(x, {1}), rnd({3, 4}, 53)),
      UNARY("var", var(x, {-1}), rnd({3, 4}, 54)),
      UNARY("var_all_biased", var(x, {}, 0), rnd({3, 4}, 55)),
      UNARY("amax", amax(x, {1}), rnd({3, 4}, 56)),
      UNARY("amin_keepdim", amin(x, {0}, true), rnd({3, 4}, 57)),
      UNARY("max_dim", max(x, 0), rnd({3, 4}, 58)),
      UNARY("min_dim", min(x, -1, true), rnd({3, 4}, 59)),
      UNARY("norm2", norm(x, 2.0, {1}), rnd({3, 4}, 60)),
      UNARY("norm1", norm(x, 1.0), rnd({3, 4}, 61)),
      UNARY("norm_inf", norm(x, INFINITY, {0}), rnd({3, 4}, 62)),
      // matmul
      BINARY("matmul", matmul(a, b), rnd({3, 4}, 70), rnd({4, 2}, 71)),
      BINARY("matmul_batch_broadcast", matmul(a, b), rnd({2, 1, 2, 3}, 72), rnd({3, 3, 2}, 73)),
      BINARY("matmul_rows", matmul(a, b), rnd({2, 3, 4}, 74), rnd({4, 2}, 75)),
      BINARY("matmul_vec_mat", matmul(a, b), rnd({4}, 76), rnd({4, 3}, 77)),
      BINARY("matmul_mat_vec", matmul(a, b), rnd({3, 4}, 78), rnd({4}, 79)),
      BINARY("matmul_dot", matmul(a, b), rnd({5}, 80), rnd({5}, 81)),
      BINARY("matmul_transposed", matmul(transpose(a, 0, 1), b), rnd({4, 3}, 82), rnd({4, 2}, 83)),
      // nn
      UNARY("softmax", softmax(x, -1), rnd({3, 4}, 90)),
      UNARY("softmax_dim0", softmax(x, 0), rnd({3, 4}, 91)),
      UNARY("log_softmax", log_softmax(x, 1), rnd({2, 3, 2}, 92)),
      Case{"layer_norm_affine", [] { return std::vector<Tensor>{rnd({3, 5}, 93), rnd({5}, 94), rnd({5}, 95)}; },
           [](const std::vector<Tensor>& in) { return layer_norm(in[0], {5}, in[1], in[2], 1e-5); }},
      UNARY("layer_norm_plain", layer_norm(x, {4}), rnd({3, 4}, 96)),
      Case{"layer_norm_2d", [] { return std::vector<Tensor>{rnd({2, 2, 3}, 97), rnd({2, 3}, 98)}; },
           [](const std::vector<Tensor>& in) { return layer_norm(in[0], {2, 3}, in[1], Tensor(), 1e-3); }},
      Case{"layer_norm_modulate", [] { return std::vector<Tensor>{rnd({2, 3, 5}, 101), rnd({2, 5}, 102), rnd({2, 5}, 103)}; },
           [](const std::vector<Tensor>& in) { return layer_norm_modulate(in[0], in[1], in[2], 1e-5); }},
      Case{"gated_residual", [] { return std::vector<Tensor>{rnd({2, 3, 5}, 104), rnd({2, 5}, 105), rnd({2, 3, 5}, 106)}; },
           [](const std::vector<Tensor>& in) { return gated_residual(in[0], in[1], in[2]); }},
      Case{"rms_norm", [] { return std::vector<Tensor>{rnd({3, 5}, 99), rnd({5}, 100)}; },
           [](const std::vector<Tensor>& in) { return rms_norm(in[0], {5}, in[1], 1e-6); }},
      UNARY("rms_norm_plain", rms_norm(x, {4}), rnd({3, 4}, 101)),
      // shape and views
      UNARY("reshape", reshape(x, {4, 3}) * reshape(x, {4, 3}), rnd({3, 4}, 110)),
      UNARY("view_permute", view(permute(x, {2, 0, 1}), {4, 6}) * 2.0, rnd({2, 3, 4}, 111)),
      UNARY("transpose_contiguous", contiguous(transpose(x, 0, 1)) * arange(0, 3, 1, {DType::F64}), rnd({3, 4}, 112)),
      UNARY("narrow_slice", narrow(x, 1, 1, 2) + slice(x, 1, -2, 4), rnd({3, 4}, 113)),
      UNARY("expand", expand(x, {2, 3, 4}) * rnd({2, 3, 4}, 114), rnd({3, 1}, 115)),
      UNARY("squeeze_unsqueeze", unsqueeze(squeeze(x), 0) * 3.0, rnd({3, 1, 2}, 116)),
      UNARY("flatten", flatten(x, 1) * rnd({2, 6}, 117), rnd({2, 3, 2}, 118)),
      UNARY("clone", clone(x) * x, rnd({3}, 119)),
      // through f32 the function is only f32-accurate: a coarser step and tolerance
      Case{"to_f32_and_back", [] { return std::vector<Tensor>{rnd({3}, 120)}; },
           [](const std::vector<Tensor>& in) { return ops::to(ops::to(in[0], DType::F32), DType::F64) * 1.0; }, true,
           GradcheckOptions{1e-3, 1e-4, 1e-4}},
      BINARY("cat", cat({a, b, a}, 1), rnd({2, 2}, 121), rnd({2, 3}, 122)),
      BINARY("stack", stack({a, b}, 1), rnd({2, 3}, 123), rnd({2, 3}, 124)),
      UNARY("split_chunk", split(x, std::vector<int64_t>{1, 3}, 1)[1] * 2.0 +
                               sum(chunk(x, 2, 1)[0] * chunk(x, 2, 1)[1]), rnd({2, 4}, 125)),
      UNARY("pad", pad(x, {1, 2, 0, 1}, 0.5) * rnd({4, 7}, 126), rnd({3, 4}, 127)),
      // indexing
      UNARY("index_select", index_select(x, 1, I({2, 0, 2}, {3})), rnd({2, 4}, 130)),
      BINARY("index_add", index_add(a, 0, I({1, 1, 0}, {3}), b), rnd({3, 2}, 131), rnd({3, 2}, 132)),
      UNARY("gather", gather(x, 1, I({0, 2, 2, 1, 0, 0}, {2, 3})), rnd({2, 4}, 133)),
      BINARY("scatter_add", scatter_add(a, 1, I({0, 2, 2, 1, 0, 0}, {2, 3}), b), rnd({2, 4}, 134), rnd({2, 3}, 135)),
      UNARY("embedding", embedding(x, I({3, 0, 3, 1}, {2, 2})), rnd({4, 3}, 136)),
      // convolution and pooling
      Case{"conv2d", [] { return std::vector<Tensor>{rnd({2, 2, 5, 4}, 140), rnd({3, 2, 3, 2}, 141), rnd({3}, 142)}; },
           [](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], {2, 1, 1, 1}); }},
      BINARY("conv2d_nobias", conv2d(a, b), rnd({1, 1, 4, 4}, 143), rnd({2, 1, 2, 2}, 144)),
      UNARY("im2col", im2col(x, 2, 3, {1, 2, 1, 0}), rnd({1, 2, 3, 4}, 145)),
      UNARY("col2im", col2im(x, {1, 1, 3, 3}, 2, 2), rnd({1, 4, 4}, 146)),
      UNARY("avg_pool2d", avg_pool2d(x, 2, 2, {2, 2, 0, 0}), rnd({1, 2, 4, 4}, 147)),
      UNARY("avg_pool2d_pad", avg_pool2d(x, 3, 3, {2, 2, 1, 1}), rnd({1, 1, 5, 4}, 148)),
      // attention
      Case{"attention_naive", [] { return std::vector<Tensor>{rnd({2, 3, 4}, 150), rnd({2, 5, 4}, 151), rnd({2, 5, 3}, 152)}; },
           [](const std::vector<Tensor>& in) { return attention(in[0], in[1], in[2], 0.5, AttentionImpl::Naive); }},
      Case{"lora_linear",
           [] { return std::vector<Tensor>{rnd({2, 3, 5}, 160), rnd({4, 5}, 161), rnd({4}, 162), rnd({2, 5}, 163), rnd({4, 2}, 164)}; },
           [](const std::vector<Tensor>& in) { return lora_linear(in[0], in[1], in[2], in[3], in[4], 1.5); },
           /*gradgrad=*/false},
      Case{"attention_tiled", [] { return std::vector<Tensor>{rnd({2, 3, 4}, 153), rnd({2, 5, 4}, 154), rnd({2, 5, 3}, 155)}; },
           [](const std::vector<Tensor>& in) { return attention(in[0], in[1], in[2], 0.5, AttentionImpl::Tiled); },
           /*gradgrad=*/false},
      // a longer key sequence crosses the 64-key tile boundary of the tiled kernel
      Case{"attention_tiled_multiblock", [] { return std::vector<Tensor>{rnd({1, 2, 3}, 156), rnd({1, 70, 3}, 157), rnd({1, 70, 2}, 158)}; },
           [](const std::vector<Tensor>& in) { return attention(in[0], in[1], in[2], 0.7, AttentionImpl::Tiled); },
           false},
      // image ops (composed): quick_gelu, group_norm, nearest upsampling, bilinear/bicubic resizing
      UNARY("quick_gelu", quick_gelu(x), rnd({3, 4}, 196)),
      Case{"group_norm", [] { return std::vector<Tensor>{rnd({2, 4, 3, 2}, 197), rnd({4}, 198), rnd({4}, 199)}; },
           [](const std::vector<Tensor>& in) { return group_norm(in[0], 2, in[1], in[2], 1e-5); }},
      UNARY("group_norm_noaffine", group_norm(x, 3), rnd({2, 6, 5}, 200)),
      UNARY("upsample_nearest2d", upsample_nearest2d(x, 2), rnd({1, 2, 2, 3}, 201)),
      UNARY("resize2d_bilinear", resize2d(x, 5, 4, ResizeMode::Bilinear), rnd({1, 2, 3, 6}, 202)),
      UNARY("resize2d_bicubic_aa", resize2d(x, 3, 5, ResizeMode::Bicubic, true), rnd({1, 1, 7, 4}, 203)),
      // the fused attention JVP as an op: gradcheck of its adjoint kernel over q, k, v and the tangents
      Case{"attention_jvp",
           [] { return std::vector<Tensor>{rnd({2, 3, 4}, 190), rnd({2, 5, 4}, 191), rnd({2, 5, 3}, 192),
                                           rnd({2, 3, 4}, 193), rnd({2, 5, 4}, 194), rnd({2, 5, 3}, 195)}; },
           [](const std::vector<Tensor>& in) { return attention_jvp(in[0], in[1], in[2], in[3], in[4], in[5], 0.5); },
           false}
  };
  return c;
}
#undef Case
#undef UNARY
#undef BINARY

// ---- 3. forward-mode cases ----------------------------------------------------------------------

struct JvpCase {
  std::string name;
  std::function<std::vector<Tensor>()> inputs;
  TensorFn fn;
  bool central = true;  // false where the function is not differentiable at the inputs (ties)
  double eps = 1e-6, tol = 1e-6;
  double adjoint_tol = 1e-10;
};
#define UNARY(NAME, EXPR, INPUT) \
  JvpCase { NAME, [] { return std::vector<Tensor>{INPUT}; }, [](const std::vector<Tensor>& in) { const Tensor& x = in[0]; return EXPR; } }
#define BINARY(NAME, EXPR, A, B) \
  JvpCase { NAME, [] { return std::vector<Tensor>{A, B}; }, [](const std::vector<Tensor>& in) { const Tensor& a = in[0]; const Tensor& b = in[1]; return EXPR; } }
#define TERNARY(NAME, EXPR, A, B, C) \
  JvpCase { NAME, [] { return std::vector<Tensor>{A, B, C}; }, [](const std::vector<Tensor>& in) { const Tensor& a = in[0]; const Tensor& b = in[1]; const Tensor& c = in[2]; return EXPR; } }

std::vector<JvpCase> jvp_cases() {
  using namespace ops;
  std::vector<JvpCase> c = {
      // ---- elementwise, unary: tangent · f'(x)
      UNARY("neg", neg(x), rnd({3, 4}, 1)),
      UNARY("abs", abs(x), rnd({3, 4}, 2)),
      UNARY("exp", exp(x), rnd({3, 4}, 3)),
      UNARY("log", log(x), pos({3, 4}, 4)),
      UNARY("sqrt", sqrt(x), pos({3, 4}, 5)),
      UNARY("rsqrt", rsqrt(x), pos({3, 4}, 6)),
      UNARY("square", square(x), rnd({3, 4}, 7)),
      UNARY("sin", sin(x), rnd({3, 4}, 8)),
      UNARY("cos", cos(x), rnd({3, 4}, 9)),
      UNARY("tanh", tanh(x), rnd({3, 4}, 10)),
      UNARY("sigmoid", sigmoid(x), rnd({3, 4}, 11)),
      UNARY("silu", silu(x), rnd({3, 4}, 12)),
      UNARY("relu", relu(x), rnd({3, 4}, 13)),
      UNARY("gelu", gelu(x), rnd({3, 4}, 14)),
      UNARY("gelu_tanh", gelu(x, true), rnd({3, 4}, 15)),
      UNARY("gelu_tanh_grad", ops::detail::gelu_tanh_grad(mul(x, 2.0)), rnd({3, 4}, 16)),
      UNARY("erf", erf(x), rnd({3, 4}, 17)),
      UNARY("reciprocal", reciprocal(x), pos({3, 4}, 18)),
      UNARY("pow_scalar", pow(x, 3.0), rnd({3, 4}, 19)),
      UNARY("pow_fractional", pow(x, 0.7), pos({3, 4}, 20)),
      UNARY("pow_one", pow(x, 1.0), rnd({3, 4}, 21)),
      UNARY("clamp", clamp(x, -0.5, 0.5), rnd({3, 4}, 22)),
      UNARY("add_scalar", add(x, 1.5), rnd({3, 4}, 23)),
      UNARY("mul_scalar", mul(x, -2.5), rnd({3, 4}, 24)),
      UNARY("rsub_rdiv", (2.0 - x) / 3.0 + 1.0 / (x + 4.0), rnd({3, 4}, 25)),
      UNARY("sign_has_no_tangent", mul(sign(x), x), rnd({3, 4}, 26)),
      UNARY("exp_transposed", exp(transpose(x, 0, 1)), rnd({3, 4}, 27)),
      // ---- elementwise, binary, with broadcasting: product and quotient rules
      BINARY("add", add(a, b), rnd({3, 4}, 30), rnd({4}, 31)),
      BINARY("sub", sub(a, b), rnd({2, 1, 3}, 32), rnd({4, 1}, 33)),
      BINARY("mul", mul(a, b), rnd({3, 4}, 34), rnd({3, 1}, 35)),
      BINARY("mul_both_broadcast", mul(a, b), rnd({3, 1}, 36), rnd({1, 4}, 37)),
      BINARY("mul_transposed", mul(transpose(a, 0, 1), b), rnd({4, 3}, 38), rnd({3, 4}, 39)),
      BINARY("div", div(a, b), rnd({3, 4}, 40), pos({4}, 41)),
      BINARY("pow", pow(a, b), pos({3, 4}, 42), rnd({3, 4}, 43)),
      BINARY("pow_broadcast", pow(a, b), pos({2, 3}, 44), rnd({3}, 45)),
      BINARY("maximum", maximum(a, b), rnd({3, 4}, 46), rnd({4}, 47)),
      BINARY("minimum", minimum(a, b), rnd({3, 4}, 48), rnd({3, 4}, 49)),
      BINARY("where", where(gt(a, b), a * b, a - b), rnd({3, 4}, 50), rnd({4}, 51)),
      BINARY("where_broadcast", where(gt(a, zeros({3, 1}, {DType::F64})), a, b), rnd({3, 1}, 52), rnd({4}, 53)),
      // ties are not differentiable; the JVP averages the tied tangents as the reverse rule
      // shares the gradient, which the adjoint identity checks
      JvpCase{"maximum_ties", [] { return std::vector<Tensor>{D({1, 2, 3}, {3}), D({1, 5, 3}, {3})}; },
              [](const std::vector<Tensor>& in) { return ops::maximum(in[0], in[1]); }, false},
      // ---- reductions
      UNARY("sum_all", sum(x), rnd({3, 4}, 60)),
      UNARY("sum_dims_keepdim", sum(x, {0, 2}, true), rnd({2, 3, 4}, 61)),
      UNARY("sum_noncontiguous", sum(transpose(x, 0, 1), {1}), rnd({3, 4}, 62)),
      UNARY("sum_to", sum_to(x, {3, 1}), rnd({2, 3, 4}, 63)),
      UNARY("mean", mean(x, {1}), rnd({3, 4}, 64)),
      UNARY("var", var(x, {-1}), rnd({3, 4}, 65)),
      UNARY("var_all_biased", var(x, {}, 0), rnd({3, 4}, 66)),
      UNARY("amax", amax(x, {1}), rnd({3, 4}, 67)),
      UNARY("amax_all", amax(x), rnd({3, 4}, 68)),
      UNARY("amin_keepdim", amin(x, {0}, true), rnd({3, 4}, 69)),
      UNARY("max_dim", max(x, 0), rnd({3, 4}, 70)),
      UNARY("min_dim", min(x, -1, true), rnd({3, 4}, 71)),
      JvpCase{"amax_ties", [] { return std::vector<Tensor>{D({1, 3, 3, 0, 2, 2, 2, -1}, {2, 4})}; },
              [](const std::vector<Tensor>& in) { return ops::amax(in[0], {1}); }, false},
      JvpCase{"min_ties", [] { return std::vector<Tensor>{D({1, 0, 1, 0, 2, 0}, {3, 2})}; },
              [](const std::vector<Tensor>& in) { return ops::min(in[0], 0); }, false},
      UNARY("norm2", norm(x, 2.0, {1}), rnd({3, 4}, 72)),
      UNARY("norm1", norm(x, 1.0), rnd({3, 4}, 73)),
      UNARY("norm_inf", norm(x, INFINITY, {0}), rnd({3, 4}, 74)),
      // ---- matmul: ta·b + a·tb
      BINARY("matmul", matmul(a, b), rnd({3, 4}, 80), rnd({4, 2}, 81)),
      BINARY("matmul_batched", matmul(a, b), rnd({2, 3, 4}, 82), rnd({2, 4, 5}, 83)),
      BINARY("matmul_batch_broadcast", matmul(a, b), rnd({2, 1, 2, 3}, 84), rnd({3, 3, 2}, 85)),
      BINARY("matmul_rows", matmul(a, b), rnd({2, 3, 4}, 86), rnd({4, 2}, 87)),
      BINARY("matmul_vec_mat", matmul(a, b), rnd({4}, 88), rnd({4, 3}, 89)),
      BINARY("matmul_mat_vec", matmul(a, b), rnd({3, 4}, 90), rnd({4}, 91)),
      BINARY("matmul_dot", matmul(a, b), rnd({5}, 92), rnd({5}, 93)),
      BINARY("matmul_transposed_both", matmul(transpose(a, 0, 1), transpose(b, 0, 1)), rnd({4, 3}, 94), rnd({2, 4}, 95)),
      // ---- neural-network ops
      UNARY("softmax", softmax(x, -1), rnd({3, 4}, 100)),
      UNARY("softmax_dim0", softmax(x, 0), rnd({3, 4}, 101)),
      UNARY("softmax_transposed", softmax(transpose(x, 0, 1), 1), rnd({3, 4}, 102)),
      UNARY("log_softmax", log_softmax(x, 1), rnd({2, 3, 2}, 103)),
      TERNARY("layer_norm_affine", layer_norm(a, {5}, b, c, 1e-5), rnd({3, 5}, 104), rnd({5}, 105), rnd({5}, 106)),
      UNARY("layer_norm_plain", layer_norm(x, {4}), rnd({3, 4}, 107)),
      TERNARY("layer_norm_modulate", layer_norm_modulate(a, b, c, 1e-5), rnd({2, 3, 5}, 130), rnd({2, 5}, 131), rnd({2, 5}, 132)),
      TERNARY("gated_residual", gated_residual(a, b, c), rnd({2, 3, 5}, 133), rnd({2, 5}, 134), rnd({2, 3, 5}, 135)),
      BINARY("layer_norm_2d", layer_norm(a, {2, 3}, b, Tensor(), 1e-3), rnd({2, 2, 3}, 108), rnd({2, 3}, 109)),
      TERNARY("layer_norm_transposed", layer_norm(transpose(a, 0, 1), {3}, b, c), rnd({3, 4}, 110), rnd({3}, 111),
              rnd({3}, 112)),
      BINARY("rms_norm", rms_norm(a, {5}, b, 1e-6), rnd({3, 5}, 113), rnd({5}, 114)),
      UNARY("rms_norm_plain", rms_norm(x, {4}), rnd({3, 4}, 115)),
      BINARY("rms_norm_transposed", rms_norm(transpose(a, 0, 1), {3}, b), rnd({3, 4}, 116), rnd({3}, 117)),
      // ---- shape and views: the op applied to the tangent
      UNARY("reshape", reshape(x, {4, 3}) * reshape(x, {4, 3}), rnd({3, 4}, 120)),
      UNARY("reshape_copies", reshape(transpose(x, 0, 1), {12}), rnd({3, 4}, 121)),
      UNARY("view_permute", view(permute(x, {2, 0, 1}), {4, 6}) * 2.0, rnd({2, 3, 4}, 122)),
      UNARY("transpose_contiguous", contiguous(transpose(x, 0, 1)) * arange(0, 3, 1, {DType::F64}), rnd({3, 4}, 123)),
      UNARY("narrow_slice", narrow(x, 1, 1, 2) + slice(x, 1, -2, 4), rnd({3, 4}, 124)),
      UNARY("expand", expand(x, {2, 3, 4}) * rnd({2, 3, 4}, 125), rnd({3, 1}, 126)),
      UNARY("expand_same_shape", expand(x, {3, 4}) * x, rnd({3, 4}, 127)),
      UNARY("squeeze_unsqueeze", unsqueeze(squeeze(x), 0) * 3.0, rnd({3, 1, 2}, 128)),
      UNARY("flatten", flatten(x, 1) * rnd({2, 6}, 129), rnd({2, 3, 2}, 130)),
      UNARY("clone", clone(x) * x, rnd({3}, 131)),
      // through f32 the function is only f32-accurate: a coarser step and tolerance
      JvpCase{"to_f32_and_back", [] { return std::vector<Tensor>{rnd({3}, 132)}; },
              [](const std::vector<Tensor>& in) { return ops::to(ops::to(in[0], DType::F32), DType::F64) * 1.0; }, true,
              1e-3, 1e-4, 1e-6},
      UNARY("to_same_device", ops::to(x, Device::cpu()) * x, rnd({3}, 133)),
      BINARY("cat", cat({a, b, a}, 1), rnd({2, 2}, 134), rnd({2, 3}, 135)),
      BINARY("cat_with_constant", cat({a, ones({2, 1}, {DType::F64}), b}, 1), rnd({2, 2}, 136), rnd({2, 3}, 137)),
      BINARY("stack", stack({a, b}, 1), rnd({2, 3}, 138), rnd({2, 3}, 139)),
      UNARY("split_chunk",
            split(x, std::vector<int64_t>{1, 3}, 1)[1] * 2.0 + sum(chunk(x, 2, 1)[0] * chunk(x, 2, 1)[1]),
            rnd({2, 4}, 140)),
      UNARY("pad", pad(x, {1, 2, 0, 1}, 0.5) * rnd({4, 7}, 141), rnd({3, 4}, 142)),
      // ---- indexing
      UNARY("index_select", index_select(x, 1, I({2, 0, 2}, {3})), rnd({2, 4}, 150)),
      BINARY("index_add", index_add(a, 0, I({1, 1, 0}, {3}), b), rnd({3, 2}, 151), rnd({3, 2}, 152)),
      BINARY("index_add_src_only", index_add(zeros({3, 2}, {DType::F64}), 0, I({1, 1, 0}, {3}), b * a),
             rnd({3, 2}, 153), rnd({3, 2}, 154)),
      UNARY("gather", gather(x, 1, I({0, 2, 2, 1, 0, 0}, {2, 3})), rnd({2, 4}, 155)),
      BINARY("scatter_add", scatter_add(a, 1, I({0, 2, 2, 1, 0, 0}, {2, 3}), b), rnd({2, 4}, 156), rnd({2, 3}, 157)),
      UNARY("embedding", embedding(x, I({3, 0, 3, 1}, {2, 2})), rnd({4, 3}, 158)),
      // ---- convolution and pooling
      TERNARY("conv2d", conv2d(a, b, c, {2, 1, 1, 1}), rnd({2, 2, 5, 4}, 160), rnd({3, 2, 3, 2}, 161), rnd({3}, 162)),
      BINARY("conv2d_nobias", conv2d(a, b), rnd({1, 1, 4, 4}, 163), rnd({2, 1, 2, 2}, 164)),
      UNARY("im2col", im2col(x, 2, 3, {1, 2, 1, 0}), rnd({1, 2, 3, 4}, 165)),
      UNARY("col2im", col2im(x, {1, 1, 3, 3}, 2, 2), rnd({1, 4, 4}, 166)),
      UNARY("avg_pool2d", avg_pool2d(x, 2, 2, {2, 2, 0, 0}), rnd({1, 2, 4, 4}, 167)),
      UNARY("avg_pool2d_pad", avg_pool2d(x, 3, 3, {2, 2, 1, 1}), rnd({1, 1, 5, 4}, 168)),
      UNARY("avg_pool2d_adjoint", avg_pool2d_adjoint(x, {1, 1, 5, 4}, 3, 3, {2, 2, 1, 1}), rnd({1, 1, 3, 2}, 169)),
      // ---- attention: naive (composed) and the tiled kernel (its own rule)
      TERNARY("attention_naive", attention(a, b, c, 0.5, AttentionImpl::Naive), rnd({2, 3, 4}, 170),
              rnd({2, 5, 4}, 171), rnd({2, 5, 3}, 172)),
      TERNARY("attention_tiled", attention(a, b, c, 0.5, AttentionImpl::Tiled), rnd({2, 3, 4}, 173),
              rnd({2, 5, 4}, 174), rnd({2, 5, 3}, 175)),
      // a longer key sequence crosses the 64-key tile boundary of the tiled kernel
      TERNARY("attention_tiled_multiblock", attention(a, b, c, 0.7, AttentionImpl::Tiled), rnd({1, 2, 3}, 176),
              rnd({1, 70, 3}, 177), rnd({1, 70, 2}, 178)),
      // the fused LoRA linear: tangents on x, W, bias, A and B
      JvpCase{"lora_linear",
              [] { return std::vector<Tensor>{rnd({2, 3, 5}, 182), rnd({4, 5}, 183), rnd({4}, 184), rnd({2, 5}, 185), rnd({4, 2}, 186)}; },
              [](const std::vector<Tensor>& in) { return lora_linear(in[0], in[1], in[2], in[3], in[4], 1.5); }},
      TERNARY("attention_tiled_transposed", attention(transpose(a, 1, 2), b, c, 0.6, AttentionImpl::Tiled),
              rnd({2, 4, 3}, 179), rnd({2, 5, 4}, 180), rnd({2, 5, 2}, 181)),
      // image ops (composed)
      UNARY("quick_gelu", quick_gelu(x), rnd({3, 4}, 204)),
      TERNARY("group_norm", group_norm(a, 2, b, c, 1e-5), rnd({2, 4, 3, 2}, 205), rnd({4}, 206), rnd({4}, 207)),
      UNARY("upsample_nearest2d", upsample_nearest2d(x, 3), rnd({1, 2, 2, 3}, 208)),
      UNARY("resize2d_bicubic", resize2d(x, 6, 4, ResizeMode::Bicubic), rnd({1, 2, 3, 5}, 209)),
      UNARY("resize2d_bilinear_aa", resize2d(x, 2, 3, ResizeMode::Bilinear, true), rnd({2, 5, 7}, 210)),
      // the tiled attention's forward mode through the composed reference rule (the default is the
      // fused JVP kernel): both stay checked
      JvpCase{"attention_tiled_composed_rule",
              [] { return std::vector<Tensor>{rnd({2, 3, 4}, 187), rnd({2, 5, 4}, 188), rnd({2, 5, 3}, 189)}; },
              [](const std::vector<Tensor>& in) {
                const AttentionJvp prev = attention_jvp_mode();
                set_attention_jvp(AttentionJvp::Composed);
                Tensor o = attention(in[0], in[1], in[2], 0.55, AttentionImpl::Tiled);
                set_attention_jvp(prev);
                return o;
              }}
  };
  return c;
}
#undef UNARY
#undef BINARY
#undef TERNARY

// Cases whose tangent map (x, v) ↦ J(x)·v is gradchecked (reverse-over-forward).
const char* const kReverseOverForwardNames[] = {"mul",      "matmul",      "silu",      "exp",
                                                "pow",      "where",       "amax",      "cat",
                                                "softmax",  "log_softmax", "gelu_tanh", "layer_norm_affine",
                                                "rms_norm", "conv2d",      "attention_naive", "attention_tiled",
                                                "lora_linear"};

// ---- 4. CUDA cases at odd sizes -----------------------------------------------------------------

struct ParityCase {
  std::string name;
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  int inputs = 1;
  double lo = -2, hi = 2;  // input range
  double atol = 0.5;       // the parity rule's absolute part (docs/testing.md)
};

std::vector<ParityCase> parity_cases() {
  using namespace ops;
  auto U = [](std::string n, std::function<Tensor(const Tensor&)> f, double lo = -2, double hi = 2, double atol = 0.5) {
    return ParityCase{n, [f](const std::vector<Tensor>& in) { return f(in[0]); }, 1, lo, hi, atol};
  };
  auto B = [](std::string n, std::function<Tensor(const Tensor&, const Tensor&)> f, double lo = -2, double hi = 2,
              double atol = 0.5) {
    return ParityCase{n, [f](const std::vector<Tensor>& in) { return f(in[0], in[1]); }, 2, lo, hi, atol};
  };
  return {      U("neg", [](const Tensor& x) { return neg(x); }),
      U("abs", [](const Tensor& x) { return abs(x); }),
      U("exp", [](const Tensor& x) { return exp(x); }),
      U("log", [](const Tensor& x) { return log(x); }, 0.1, 3),
      U("sqrt", [](const Tensor& x) { return sqrt(x); }, 0.1, 3),
      U("rsqrt", [](const Tensor& x) { return rsqrt(x); }, 0.1, 3),
      U("square", [](const Tensor& x) { return square(x); }),
      U("sin", [](const Tensor& x) { return sin(x); }),
      U("cos", [](const Tensor& x) { return cos(x); }),
      U("tanh", [](const Tensor& x) { return tanh(x); }),
      U("sigmoid", [](const Tensor& x) { return sigmoid(x); }),
      U("silu", [](const Tensor& x) { return silu(x); }),
      U("relu", [](const Tensor& x) { return relu(x); }),
      U("gelu", [](const Tensor& x) { return gelu(x); }),
      U("gelu_tanh", [](const Tensor& x) { return gelu(x, true); }),
      U("sign", [](const Tensor& x) { return sign(x); }),
      U("reciprocal", [](const Tensor& x) { return reciprocal(x); }, 0.2, 3),
      U("pow_scalar", [](const Tensor& x) { return pow(x, 1.5); }, 0.1, 3),
      U("clamp", [](const Tensor& x) { return clamp(x, -0.5, 0.7); }),
      U("add_mul_scalar", [](const Tensor& x) { return mul(add(x, 0.25), -3.0); }),
      B("add", [](const Tensor& a, const Tensor& b) { return add(a, b); }),
      B("sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }),
      B("mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }),
      B("div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, 0.2, 3),
      B("pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); }, 0.2, 2),
      B("maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }),
      B("minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }),
      B("add_broadcast_row", [](const Tensor& a, const Tensor& b) { return add(a, narrow(b, 0, 0, 1)); }),
      B("mul_broadcast_col", [](const Tensor& a, const Tensor& b) { return mul(a, narrow(b, 1, 2, 1)); }),
      B("compare_where", [](const Tensor& a, const Tensor& b) { return where(gt(a, b), a, mul(b, 2.0)); }),
      B("eq_le_cast", [](const Tensor& a, const Tensor& b) { return add(to(le(a, b), a.dtype()), to(eq(a, a), a.dtype())); }),
      U("cast_roundtrip", [](const Tensor& x) { return to(to(to(x, DType::BF16), DType::F64), x.dtype()); }),
      U("cast_int", [](const Tensor& x) { return to(to(mul(x, 10.0), DType::I64), x.dtype()); }),
      // GEMM (gemm.cu, cuBLASLt): both transpose flags, a broadcast batch
      B("matmul_nt", [](const Tensor& a, const Tensor& b) { return matmul(a, transpose(b, 0, 1)); }, -2, 2, 2),
      B("matmul_tn", [](const Tensor& a, const Tensor& b) { return matmul(transpose(a, 0, 1), b); }, -2, 2, 2),
      B("matmul_batched", [](const Tensor& a, const Tensor& b) {
        Tensor a3 = reshape(contiguous(narrow(a, 0, 0, 28)), {4, 7, a.size(1)});
        return matmul(a3, transpose(b, 0, 1));
      }, -2, 2, 2),
      // indexing (index_rng.cu); the indices live on the input's device
      U("index_select_add", [](const Tensor& x) {
        Tensor i = to(from_vector(std::vector<int64_t>{3, 0, 3, 7}, {4}), x.device());
        Tensor sel = index_select(x, 1, i);  // [rows, 4], column 3 twice
        return index_add(mul(x, 0.5), 1, i, sel);  // repeated index: the sums in order
      }),
      U("gather_scatter_add", [](const Tensor& x) {
        std::vector<int64_t> iv;
        for (int64_t r = 0; r < x.size(0); ++r)
          for (int64_t j = 0; j < 3; ++j) iv.push_back((r * 7 + j * 5) % x.size(1));
        Tensor i = to(from_vector(iv, {x.size(0), 3}), x.device());
        return scatter_add(x, 1, i, mul(gather(x, 1, i), 2.0));
      }),
      U("embedding", [](const Tensor& x) {
        Tensor i = to(from_vector(std::vector<int64_t>{1, 5, 1, 0, 9, 2}, {2, 3}), x.device());
        return embedding(x, i);
      }),
      // convolution pieces (conv.cu): im2col + GEMM, pooling with stride and padding, the adjoints
      U("conv2d", [](const Tensor& x) {
        Tensor img = reshape(contiguous(narrow(reshape(contiguous(x), {-1}), 0, 0, 2 * 3 * 10 * 12)), {2, 3, 10, 12});
        Tensor w = reshape(contiguous(narrow(reshape(contiguous(x), {-1}), 0, 720, 4 * 3 * 3 * 3)), {4, 3, 3, 3});
        return conv2d(img, w, Tensor(), {2, 1, 1, 0});
      }, -2, 2, 2),
      U("col2im_adjoint", [](const Tensor& x) {
        Tensor img = reshape(contiguous(narrow(reshape(contiguous(x), {-1}), 0, 0, 2 * 3 * 7 * 9)), {2, 3, 7, 9});
        return col2im(im2col(img, 3, 2, {2, 1, 1, 1}), {2, 3, 7, 9}, 3, 2, {2, 1, 1, 1});
      }),
      // non-overlapping patches (the MMDiT's patch embedding): one GEMM over a permuted view on the GPU
      U("conv2d_patch", [](const Tensor& x) {
        Tensor xx = reshape(narrow(narrow(x, 0, 0, 24), 1, 0, 24), {2, 3, 12, 8});
        Tensor w = reshape(narrow(narrow(x, 0, 24, 5), 1, 0, 24), {10, 3, 2, 2});
        Tensor b = reshape(narrow(narrow(x, 1, 24, 1), 0, 0, 10), {10});
        return conv2d(xx, w, b, {2, 2, 0, 0});
      }, -2, 2, 2),
      U("avg_pool2d_adjoint", [](const Tensor& x) {
        Tensor img = reshape(contiguous(narrow(reshape(contiguous(x), {-1}), 0, 0, 2 * 3 * 11 * 9)), {2, 3, 11, 9});
        Tensor y = avg_pool2d(img, 3, 2, {2, 1, 1, 0});
        return avg_pool2d_adjoint(y, {2, 3, 11, 9}, 3, 2, {2, 1, 1, 0});
      }),
      // rows (reduce.cu): the inner == 1 block-per-row path and the strided-column path
      U("sum_all", [](const Tensor& x) { return sum(x); }, -2, 2, 2),
      U("sum_rows_cols", [](const Tensor& x) { return add(sum(x, {1}, true), sum(x, {0}, true)); }),
      U("mean_amax_amin", [](const Tensor& x) { return add(mean(x, {1}, true), sub(amax(x, {0}, true), amin(x, {1}, true))); }),
      U("argmax_argmin", [](const Tensor& x) { return to(add(argmax(x, 1), argmin(x, 1)), x.dtype()); }),
      U("softmax_last", [](const Tensor& x) { return softmax(x, 1); }),
      U("softmax_first", [](const Tensor& x) { return softmax(x, 0); }),
      U("log_softmax", [](const Tensor& x) { return add(log_softmax(x, 1), log_softmax(x, 0)); }),
      U("layer_norm", [](const Tensor& x) { return layer_norm(x, {x.size(1)}); }),
      // image ops (composed): on the GPU through its elementwise, norm and GEMM kernels
      U("quick_gelu", [](const Tensor& x) { return quick_gelu(x); }),
      U("group_norm", [](const Tensor& x) { return group_norm(reshape(x, {1, x.size(0), x.size(1)}), 1, Tensor(), Tensor(), 1e-5); }),
      U("upsample_nearest2d", [](const Tensor& x) { return upsample_nearest2d(x, 2); }),
      U("resize2d_bicubic_aa", [](const Tensor& x) { return resize2d(x, 16, 40, ResizeMode::Bicubic, true); }),
      U("layer_norm_affine", [](const Tensor& x) {
        Tensor w = mul(narrow(x, 0, 0, 1), 0.5), b = narrow(x, 0, 1, 1);
        return layer_norm(x, {x.size(1)}, reshape(contiguous(w), {x.size(1)}), reshape(contiguous(b), {x.size(1)}));
      }),
      // x, y [2, T, C] and scale, shift, gate [2, C] are row ranges of the [R, C] input (R is 29 when
      // transposed): views, so the transposed case hands the ops strided inputs of the right shapes
      U("layer_norm_modulate", [](const Tensor& x) {
        Tensor x3 = reshape(narrow(x, 0, 0, 24), {2, 12, x.size(1)});
        Tensor sc = narrow(x, 0, 24, 2), sh = mul(narrow(x, 0, 26, 2), 0.5);
        return layer_norm_modulate(x3, sc, sh);
      }),
      U("gated_residual", [](const Tensor& x) {
        Tensor x3 = reshape(narrow(x, 0, 0, 12), {2, 6, x.size(1)});
        Tensor y3 = reshape(narrow(x, 0, 12, 12), {2, 6, x.size(1)});
        return gated_residual(x3, narrow(x, 0, 24, 2), y3);
      }),
      // the fused backwards on the GPU against the CPU's composed ones: gradients of sum(y ⊙ R) for
      // every input (bf16: the CPU rounds each composed step, hence the wider band)
      U("layer_norm_modulate_backward", [](const Tensor& x) {
        Tensor x3 = contiguous(reshape(narrow(x, 0, 0, 24), {2, 12, x.size(1)})).detach().requires_grad_(true);
        Tensor sc = contiguous(narrow(x, 0, 24, 2)).detach().requires_grad_(true);
        Tensor sh = contiguous(narrow(x, 0, 26, 2)).detach().requires_grad_(true);
        Tensor R = contiguous(reshape(narrow(x, 0, 3, 24), {2, 12, x.size(1)})).detach();
        auto g = grad({sum(mul(layer_norm_modulate(x3, sc, sh), R))}, {x3, sc, sh});
        return cat({reshape(g[0], {-1}), reshape(g[1], {-1}), reshape(g[2], {-1})}, 0);
      }, -2, 2, 4),
      U("gelu_tanh_backward", [](const Tensor& x) {  // one fused pass on the GPU, composed on the CPU
        Tensor xv = contiguous(x).detach().requires_grad_(true);
        Tensor R = contiguous(transpose(contiguous(transpose(x, 0, 1)), 0, 1)).detach();
        return grad({sum(mul(gelu(xv, true), mul(R, 0.5)))}, {xv})[0];
      }, -3, 3, 2),
      U("gated_residual_backward", [](const Tensor& x) {
        Tensor x3 = contiguous(reshape(narrow(x, 0, 0, 12), {2, 6, x.size(1)})).detach().requires_grad_(true);
        Tensor y3 = contiguous(reshape(narrow(x, 0, 12, 12), {2, 6, x.size(1)})).detach().requires_grad_(true);
        Tensor gt = contiguous(narrow(x, 0, 24, 2)).detach().requires_grad_(true);
        Tensor R = contiguous(reshape(narrow(x, 0, 5, 12), {2, 6, x.size(1)})).detach();
        auto g = grad({sum(mul(gated_residual(x3, gt, y3), R))}, {x3, gt, y3});
        return cat({reshape(g[0], {-1}), reshape(g[1], {-1}), reshape(g[2], {-1})}, 0);
      }, -2, 2, 4),
      U("rms_norm", [](const Tensor& x) { return rms_norm(x, {x.size(1)}, reshape(contiguous(narrow(x, 0, 2, 1)), {x.size(1)})); })
  };
}

std::vector<OpCase> build() {
  std::vector<OpCase> t = table_cases();
  std::map<std::string, size_t> at;
  for (size_t i = 0; i < t.size(); ++i) at[t[i].name] = i;
  for (auto& g : grad_cases()) {
    VGG_CHECK(!at.count(g.name), "op table: case '", g.name, "' twice");
    at[g.name] = t.size();
    t.push_back(OpCase{g.name, g.inputs, g.fn, kGrad | (g.gradgrad ? kGradGrad : kRefusesGradGrad), g.opt});
  }
  const std::set<std::string> rof(std::begin(kReverseOverForwardNames), std::end(kReverseOverForwardNames));
  for (auto& j : jvp_cases()) {
    unsigned f = kJvp | (j.central ? kJvpCentral : 0u) | (rof.count(j.name) ? kReverseOverForward : 0u);
    auto it = at.find(j.name);
    if (it == at.end()) {  // forward mode only
      at[j.name] = t.size();
      OpCase c{j.name, j.inputs, j.fn, f};
      c.jvp_eps = j.eps, c.jvp_tol = j.tol, c.adjoint_tol = j.adjoint_tol;
      t.push_back(c);
    } else {  // the same function as the gradcheck case: one case, both checks, its inputs
      OpCase& c = t[it->second];
      c.checks |= f;
      c.jvp_eps = j.eps, c.jvp_tol = j.tol, c.adjoint_tol = j.adjoint_tol;
    }
  }
  for (auto& p : parity_cases()) {
    const std::string name = p.name + "_odd";
    VGG_CHECK(!at.count(name), "op table: case '", name, "' twice");
    at[name] = t.size();
    t.push_back(OpCase{name, odd_inputs(p.inputs, p.lo, p.hi), p.fn, kCuda, {}, p.atol});
  }
  return t;
}

}  // namespace

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> t = build();
  return t;
}

std::vector<OpCase> op_cases_with(unsigned checks) {
  std::vector<OpCase> r;
  for (const auto& c : op_cases())
    if ((c.checks & checks) == checks) r.push_back(c);
  return r;
}

size_t reverse_over_forward_names() { return std::size(kReverseOverForwardNames); }

}  // namespace vgg::test
