// f64 gradcheck for every op, and gradgradcheck for every op whose backward is composed of
// differentiable ops (all but the tiled attention kernel, which must refuse).
#include <cmath>

#include "autograd/ops_util.h"
#include "tests/support/test_support.h"

using namespace vgg;
using test::rnd;
using test::rnd_uniform;

namespace {

struct Case {
  std::string name;
  std::function<std::vector<Tensor>()> inputs;
  TensorFn fn;
  bool gradgrad = true;
  GradcheckOptions opt = {};
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

Tensor I(std::vector<int64_t> v, Shape s) { return from_vector(v, s, {DType::I64}); }
Tensor pos(Shape s, uint64_t seed) { return rnd_uniform(s, 0.5, 2.0, seed); }

#define UNARY(NAME, EXPR, INPUT) \
  Case { NAME, [] { return std::vector<Tensor>{INPUT}; }, [](const std::vector<Tensor>& in) { const Tensor& x = in[0]; return EXPR; } }
#define BINARY(NAME, EXPR, A, B) \
  Case { NAME, [] { return std::vector<Tensor>{A, B}; }, [](const std::vector<Tensor>& in) { const Tensor& a = in[0]; const Tensor& b = in[1]; return EXPR; } }

std::vector<Case> cases() {
  using namespace ops;
  std::vector<Case> c = {
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
      Case{"linear", [] { return std::vector<Tensor>{rnd({2, 3, 4}, 72), rnd({5, 4}, 73), rnd({5}, 74)}; },
           [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); }},
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
  };
  return c;
}

class GradcheckOps : public ::testing::TestWithParam<Case> {};
class GradGradcheckOps : public ::testing::TestWithParam<Case> {};

}  // namespace

TEST_P(GradcheckOps, MatchesCentralDifferences) {
  const Case& c = GetParam();
  EXPECT_GRADCHECK(gradcheck(c.fn, c.inputs(), c.opt));
}

TEST_P(GradGradcheckOps, SecondDerivativesMatch) {
  const Case& c = GetParam();
  if (!c.gradgrad) {
    // fused kernels must refuse double backward, never return a gradient without history
    auto in = c.inputs();
    for (auto& t : in) t.requires_grad_(true);
    Tensor y = c.fn(in);
    EXPECT_TRUE(test::throws_error([&] { grad({ops::sum(y)}, in, {}, /*create_graph=*/true); },
                                   {"double backward", "not supported"}));
    return;
  }
  EXPECT_GRADCHECK(gradgradcheck(c.fn, c.inputs(), c.opt));
}

static std::string case_name(const ::testing::TestParamInfo<Case>& i) { return i.param.name; }
INSTANTIATE_TEST_SUITE_P(Gradcheck, GradcheckOps, ::testing::ValuesIn(cases()), case_name);
INSTANTIATE_TEST_SUITE_P(GradGrad, GradGradcheckOps, ::testing::ValuesIn(cases()), case_name);
