// Forward mode (autograd/forward_ad.h). For every op with a JVP rule, from one case table, in f64
// (jvpcheck, autograd/gradcheck.h):
//   - the JVP against central differences (f(x+εv) − f(x−εv))/2ε, with tangents on all float
//     inputs at once (in a strided layout) and on each one alone (undefined tangents skip terms),
//     and the primal under forward mode bitwise equal to f(x);
//   - the adjoint identity ⟨u, J v⟩ = ⟨Jᵀu, v⟩ against reverse mode;
//   - for a subset, reverse-over-forward: gradcheck of (x, v) ↦ J(x)·v.
// Then networks (nn layers, a tiny MMDiT), and the API and its errors.
#include <cmath>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "autograd/forward_ad.h"
#include "autograd/node.h"
#include "autograd/ops_util.h"
#include "nn/layers.h"
#include "nn/mmdit.h"
#include "tests/support/test_support.h"

using namespace vgg;
using test::all_close;
using test::rnd;
using test::rnd_uniform;
using test::throws_error;

namespace {

struct JvpCase {
  std::string name;
  std::function<std::vector<Tensor>()> inputs;
  TensorFn fn;
  bool central = true;  // false where the function is not differentiable at the inputs (ties)
  double eps = 1e-6, tol = 1e-6;
  double adjoint_tol = 1e-10;
};

std::ostream& operator<<(std::ostream& os, const JvpCase& c) { return os << c.name; }

Tensor I(std::vector<int64_t> v, Shape s) { return from_vector(v, s, {DType::I64}); }
Tensor pos(Shape s, uint64_t seed) { return rnd_uniform(s, 0.5, 2.0, seed); }
Tensor D(std::vector<double> v, Shape s) { return from_vector(v, s, {DType::F64}); }

#define UNARY(NAME, EXPR, INPUT) \
  JvpCase { NAME, [] { return std::vector<Tensor>{INPUT}; }, [](const std::vector<Tensor>& in) { const Tensor& x = in[0]; return EXPR; } }
#define BINARY(NAME, EXPR, A, B) \
  JvpCase { NAME, [] { return std::vector<Tensor>{A, B}; }, [](const std::vector<Tensor>& in) { const Tensor& a = in[0]; const Tensor& b = in[1]; return EXPR; } }
#define TERNARY(NAME, EXPR, A, B, C) \
  JvpCase { NAME, [] { return std::vector<Tensor>{A, B, C}; }, [](const std::vector<Tensor>& in) { const Tensor& a = in[0]; const Tensor& b = in[1]; const Tensor& c = in[2]; return EXPR; } }

std::vector<JvpCase> cases() {
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
      TERNARY("linear", linear(a, b, c), rnd({2, 3, 4}, 96), rnd({5, 4}, 97), rnd({5}, 98)),
      BINARY("linear_nobias", linear(a, b), rnd({3, 4}, 99), rnd({2, 4}, 100)),
      BINARY("matmul_transposed", matmul(transpose(a, 0, 1), transpose(b, 0, 1)), rnd({4, 3}, 94), rnd({2, 4}, 95)),
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
  };
  return c;
}

// Cases whose tangent map (x, v) ↦ J(x)·v is gradchecked (reverse-over-forward).
const char* kReverseOverForward[] = {"mul",      "matmul",      "silu",      "exp",
                                     "pow",      "where",       "amax",      "cat",
                                     "softmax",  "log_softmax", "gelu_tanh", "layer_norm_affine",
                                     "rms_norm", "conv2d",      "attention_naive", "attention_tiled",
                                     "lora_linear"};

bool has_name(const char* const* b, const char* const* e, const std::string& n) {
  for (; b != e; ++b)
    if (n == *b) return true;
  return false;
}

// Cases differentiable at their inputs (the tie cases are checked by the adjoint identity only).
std::vector<JvpCase> central_cases() {
  std::vector<JvpCase> r;
  for (auto& c : cases())
    if (c.central) r.push_back(c);
  return r;
}

std::vector<JvpCase> reverse_cases() {
  std::vector<JvpCase> r;
  for (auto& c : cases())
    if (has_name(std::begin(kReverseOverForward), std::end(kReverseOverForward), c.name)) r.push_back(c);
  return r;
}

// Random tangents (seeded) for the floating inputs; undefined for the others.
std::vector<Tensor> random_tangents(const std::vector<Tensor>& in, uint64_t seed) {
  std::vector<Tensor> v;
  for (size_t i = 0; i < in.size(); ++i)
    v.push_back(is_floating(in[i].dtype()) ? rnd(in[i].shape(), seed + 97 * i, in[i].dtype()) : Tensor());
  return v;
}

// The JVP of a single-output function.
std::pair<Tensor, Tensor> jvp1(const TensorFn& f, const std::vector<Tensor>& xs, const std::vector<Tensor>& vs) {
  auto [ys, ts] = fwad::jvp([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{f(in)}; }, xs, vs);
  return {ys[0], ts[0]};
}

class GradcheckJvpOps : public ::testing::TestWithParam<JvpCase> {};
class GradcheckJvpAdjoint : public ::testing::TestWithParam<JvpCase> {};
class GradcheckJvpReverseOverForward : public ::testing::TestWithParam<JvpCase> {};

}  // namespace

TEST_P(GradcheckJvpOps, MatchesCentralDifferences) {
  const JvpCase& c = GetParam();
  JvpcheckOptions o;
  o.eps = c.eps;
  o.atol = o.rtol = c.tol;
  o.adjoint = false;
  EXPECT_GRADCHECK(jvpcheck(c.fn, c.inputs(), o));
}

TEST_P(GradcheckJvpAdjoint, InnerProductIdentity) {
  const JvpCase& c = GetParam();
  JvpcheckOptions o;
  o.central = false;
  o.adjoint_tol = c.adjoint_tol;
  o.seed = 1;
  EXPECT_GRADCHECK(jvpcheck(c.fn, c.inputs(), o));
}

TEST_P(GradcheckJvpReverseOverForward, TangentMapMatchesCentralDifferences) {
  // h(x, v) = J(x)·v: its Jacobian w.r.t. x (second derivatives) and v (J itself) by reverse
  // mode through the JVP rules, against central differences of h
  const JvpCase& c = GetParam();
  std::vector<Tensor> xs = c.inputs();
  std::vector<Tensor> all = xs;
  for (const Tensor& t : random_tangents(xs, 4000)) all.push_back(t);
  const size_t n = xs.size();
  TensorFn fn = c.fn;
  TensorFn h = [fn, n](const std::vector<Tensor>& args) {
    std::vector<Tensor> x(args.begin(), args.begin() + static_cast<int64_t>(n));
    std::vector<Tensor> v(args.begin() + static_cast<int64_t>(n), args.end());
    return jvp1(fn, x, v).second;
  };
  EXPECT_GRADCHECK(gradcheck(h, all));
}

static std::string case_name(const ::testing::TestParamInfo<JvpCase>& i) { return i.param.name; }
INSTANTIATE_TEST_SUITE_P(GradcheckJvp, GradcheckJvpOps, ::testing::ValuesIn(central_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(GradcheckJvp, GradcheckJvpAdjoint, ::testing::ValuesIn(cases()), case_name);
INSTANTIATE_TEST_SUITE_P(GradcheckJvp, GradcheckJvpReverseOverForward, ::testing::ValuesIn(reverse_cases()), case_name);

TEST(GradcheckJvpCoverage, ReverseOverForwardListNamesExistingCases) {
  auto r = reverse_cases();
  EXPECT_EQ(r.size(), std::size(kReverseOverForward));
}

// Every op declared in autograd/ops.h (outside ops::detail; in-place ops excluded, they throw on
// duals) has a case here, found by name: a case named after the op, or with the op as one of its
// '_'-separated words. A new op without a JVP case fails this test by name. The exemptions are the
// ops without a derivative (comparisons, argmax/argmin: NonDifferentiableOpsCarryNoTangent).
TEST(GradcheckJvpCoverage, EveryOpInOpsHeaderHasACase) {
  std::ifstream in(test::data_path("../../autograd/ops.h"));
  ASSERT_TRUE(in) << "cannot read autograd/ops.h";
  std::stringstream ss;
  ss << in.rdbuf();
  std::string h = ss.str();
  h = h.substr(0, h.find("namespace detail"));
  const std::set<std::string> exempt = {"argmax", "argmin", "eq", "ne", "lt", "le", "gt", "ge"};
  std::set<std::string> words;
  for (const auto& c : cases()) {
    std::stringstream w(c.name);
    for (std::string x; std::getline(w, x, '_');) words.insert(x);
    words.insert(c.name);
  }
  const std::regex decl(R"(^(?:Tensor|std::vector<Tensor>|std::pair<Tensor, ?Tensor>)\s+(\w+)\()");
  int n = 0;
  std::stringstream lines(h);
  for (std::string line; std::getline(lines, line);) {
    std::smatch mt;
    if (!std::regex_search(line, mt, decl)) continue;
    const std::string op = mt[1];
    if (op.back() == '_' || exempt.count(op)) continue;
    ++n;
    bool found = words.count(op) > 0;
    for (const auto& c : cases()) found = found || c.name.rfind(op + "_", 0) == 0;
    EXPECT_TRUE(found) << "ops::" << op << " has no forward-mode case in this file";
  }
  EXPECT_GT(n, 60);  // the parse found the header's ops
}

// ---- networks ------------------------------------------------------------------------------

TEST(GradcheckJvpNetwork, LinearSiluLayerNormAlongInputAndParameters) {
  Generator gen(11);
  nn::LayerOptions o{DType::F64, Device::cpu(), &gen};
  nn::Linear lin(5, 6, true, o);
  nn::LayerNorm ln(6, 1e-5, true, o);
  nn::normal_(ln.weight, 1.0, 0.3, &gen);  // off the identity initialisation
  nn::normal_(ln.bias, 0.0, 0.3, &gen);
  const std::vector<Tensor> xs = {rnd({2, 3, 5}, 12), lin.weight.detach(), lin.bias.detach(), ln.weight.detach(),
                                  ln.bias.detach()};
  TensorFn f = [&](const std::vector<Tensor>& in) {
    nn::Linear l(in[1], in[2]);
    nn::LayerNorm n(6, 1e-5, true, o);
    n.weight = in[3];
    n.bias = in[4];
    return n.forward(ops::silu(l.forward(in[0])));
  };
  EXPECT_GRADCHECK(jvpcheck(f, xs));
  const std::vector<Tensor> v = random_tangents(xs, 13);
  EXPECT_GT(ops::sum(ops::abs(jvp1(f, xs, v).second)).item(), 1.0);  // not vacuous
}

TEST(GradcheckJvpNetwork, TinyMMDiTAlongAllInputsIncludingTime) {
  Generator gen(21);
  nn::MMDiT m(nn::MMDiTConfig::named("tiny-sd35m"), nn::LayerOptions{DType::F64, Device::cpu(), &gen});
  // x [1, 1, 8, 8], timestep [1], context [1, 3, 64], pooled [1, 64]
  const std::vector<Tensor> xs = {rnd({1, 1, 8, 8}, 22), D({400.0}, {1}), rnd({1, 3, 64}, 23), rnd({1, 64}, 24)};
  TensorFn f = [&](const std::vector<Tensor>& in) { return m.forward(in[0], in[1], in[2], in[3]); };
  EXPECT_GRADCHECK(jvpcheck(f, xs));
  const std::vector<Tensor> v = random_tangents(xs, 25);
  EXPECT_GT(ops::sum(ops::abs(jvp1(f, xs, v).second)).item(), 1e-3);  // not vacuous
}

// ---- the API -------------------------------------------------------------------------------

TEST(ForwardAD, MakeDualAliasesTheDataAndKeepsReverseHistory) {
  Tensor x = D({1, 2, 3}, {3});
  x.requires_grad_(true);
  Tensor v = D({0.5, -1, 2}, {3});
  fwad::DualLevel level;
  Tensor d = fwad::make_dual(x, v);
  EXPECT_EQ(d.data_ptr(), x.data_ptr());
  EXPECT_TRUE(fwad::has_tangent(d));
  EXPECT_FALSE(fwad::has_tangent(x));
  EXPECT_TRUE(fwad::tangent(d).same_impl(v));
  Tensor y = ops::sum(ops::square(d));
  EXPECT_NEAR(fwad::tangent(y).item(), 2 * (0.5 - 2 + 6), 1e-14);  // 2·⟨x, v⟩
  auto g = grad({y}, {x});  // reverse mode through the dual reaches the primal
  EXPECT_EQ(g[0].to_vector(), (std::vector<double>{2, 4, 6}));
}

TEST(ForwardAD, TangentsAreInvisibleOutsideTheirLevel) {
  Tensor x = D({1, 2}, {2}), y;
  {
    fwad::DualLevel level;
    y = ops::exp(fwad::make_dual(x, D({1, 1}, {2})));
    EXPECT_TRUE(fwad::has_tangent(y));
    EXPECT_TRUE(fwad::level_open());
  }
  EXPECT_FALSE(fwad::level_open());
  EXPECT_FALSE(fwad::has_tangent(y));
  EXPECT_FALSE(fwad::tangent(y).defined());
  fwad::DualLevel next;  // a later level does not see them either
  EXPECT_FALSE(fwad::has_tangent(y));
  EXPECT_FALSE(fwad::has_tangent(ops::exp(y)));
}

TEST(ForwardAD, LevelsDoNotNest) {
  fwad::DualLevel level;
  EXPECT_TRUE(throws_error([] { fwad::DualLevel inner; }, {"DualLevel", "already open", "do not nest"}));
  EXPECT_TRUE(throws_error([] { fwad::jvp([](const std::vector<Tensor>& in) { return in; }, {}, {}); },
                           {"jvp", "already open"}));
}

TEST(ForwardAD, MakeDualChecksItsArguments) {
  Tensor x = D({1, 2, 3}, {3});
  EXPECT_TRUE(throws_error([&] { fwad::make_dual(x, x); }, {"make_dual", "no forward-AD level is open"}));
  fwad::DualLevel level;
  EXPECT_TRUE(throws_error([&] { fwad::make_dual(x, D({1, 2}, {2})); },
                           {"make_dual: tangent shape [2] does not match primal shape [3]"}));
  EXPECT_TRUE(throws_error([&] { fwad::make_dual(x, D({1, 2, 3}, {3, 1})); }, {"tangent shape [3, 1]"}));
  EXPECT_TRUE(throws_error([&] { fwad::make_dual(x, ones({3}, {DType::F32})); },
                           {"make_dual: tangent dtype f32 does not match primal dtype f64"}));
  EXPECT_TRUE(throws_error([&] { fwad::make_dual(I({1, 2, 3}, {3}), x); }, {"make_dual", "floating point"}));
  EXPECT_TRUE(throws_error([&] { fwad::make_dual(x, Tensor()); }, {"make_dual", "tangent is undefined"}));
  if (cuda_device_count() > 0)
    EXPECT_TRUE(throws_error([&] { fwad::make_dual(x, ones({3}, {DType::F64, Device::cuda(0)})); },
                             {"make_dual: tangent device", "does not match primal device"}));
}

TEST(ForwardAD, JvpChecksArgumentsAndNamesTheInput) {
  Tensor x = D({1, 2}, {2});
  auto id = [](const std::vector<Tensor>& in) { return in; };
  EXPECT_TRUE(throws_error([&] { fwad::jvp(id, {x}, {}); }, {"jvp: 1 primals but 0 tangents"}));
  EXPECT_TRUE(throws_error([&] { fwad::jvp(id, {x, x}, {Tensor(), D({1}, {1})}); },
                           {"jvp: input 1: make_dual: tangent shape"}));
}

TEST(ForwardAD, InPlaceOpsOnDualTensorsThrowNamingTheOp) {
  fwad::DualLevel level;
  Tensor plain = D({1, 2}, {2});
  Tensor d = fwad::make_dual(D({3, 4}, {2}), D({1, 1}, {2}));
  const char* msg = "in-place op on a dual tensor is not supported";
  EXPECT_TRUE(throws_error([&] { ops::add_(d, plain); }, {"add_: ", msg}));
  EXPECT_TRUE(throws_error([&] { ops::add_(plain, d); }, {"add_: ", msg}));
  EXPECT_TRUE(throws_error([&] { ops::mul_(d, 2.0); }, {"mul_: ", msg}));
  EXPECT_TRUE(throws_error([&] { ops::copy_(d, plain); }, {"copy_: ", msg}));
  EXPECT_TRUE(throws_error([&] { ops::copy_(plain, d); }, {"copy_: ", msg}));
  EXPECT_TRUE(throws_error([&] { ops::zero_(d); }, {"zero_: ", msg}));
  EXPECT_TRUE(throws_error([&] { ops::add_(ops::exp(d), plain); }, {"add_: ", msg}));  // an op's dual output too
  EXPECT_EQ(plain.to_vector(), (std::vector<double>{1, 2}));
  Tensor other = D({5, 6}, {2});  // tensors without tangents are fine inside a level
  ops::add_(plain, other);
  EXPECT_EQ(plain.to_vector(), (std::vector<double>{6, 8}));
}

TEST(ForwardAD, NonDifferentiableOpsCarryNoTangent) {
  fwad::DualLevel level;
  Tensor a = fwad::make_dual(D({1, -2, 3}, {3}), D({1, 1, 1}, {3}));
  Tensor b = D({0, 0, 5}, {3});
  EXPECT_FALSE(fwad::has_tangent(ops::gt(a, b)));
  EXPECT_FALSE(fwad::has_tangent(ops::eq(a, a)));
  EXPECT_FALSE(fwad::has_tangent(ops::sign(a)));
  EXPECT_FALSE(fwad::has_tangent(ops::argmax(a, 0)));
  EXPECT_FALSE(fwad::has_tangent(ops::argmin(a, 0)));
  EXPECT_FALSE(fwad::has_tangent(ops::to(a, DType::I64)));
  EXPECT_FALSE(fwad::has_tangent(a.detach()));
  EXPECT_FALSE(fwad::has_tangent(ops::mul(b, 2.0)));
  // where: the condition selects; it contributes nothing itself
  Tensor w = ops::where(ops::gt(a, b), b, b * 2.0);
  EXPECT_FALSE(fwad::has_tangent(w));
  Tensor w2 = ops::where(ops::gt(a, b), a, b);
  EXPECT_EQ(fwad::tangent(w2).to_vector(), (std::vector<double>{1, 0, 0}));
}

TEST(ForwardAD, CastsAndMovesCarryTheTangent) {
  fwad::DualLevel level;
  Tensor d = fwad::make_dual(D({1, 2}, {2}), D({0.25, -3}, {2}));
  Tensor f = ops::to(d, DType::F32);
  ASSERT_TRUE(fwad::has_tangent(f));
  EXPECT_EQ(fwad::tangent(f).dtype(), DType::F32);
  EXPECT_EQ(fwad::tangent(f).to_vector(), (std::vector<double>{0.25, -3}));
  EXPECT_TRUE(ops::to(d, Device::cpu()).same_impl(d));
  EXPECT_TRUE(ops::contiguous(d).same_impl(d));  // a no-op keeps the handle and so the tangent
}

TEST(ForwardAD, ExtremaAverageTiedTangentsLikeTheReverseRuleSharesGradients) {
  fwad::DualLevel level;
  Tensor x = fwad::make_dual(D({1, 3, 3}, {3}), D({10, 2, 4}, {3}));
  EXPECT_DOUBLE_EQ(fwad::tangent(ops::amax(x)).item(), 3.0);
  EXPECT_DOUBLE_EQ(fwad::tangent(ops::amin(x)).item(), 10.0);
  Tensor y = fwad::make_dual(D({1, 5, 3}, {3}), D({1, 1, 1}, {3}));
  EXPECT_EQ(fwad::tangent(ops::maximum(x, y)).to_vector(), (std::vector<double>{5.5, 1, 2.5}));
}

TEST(ForwardAD, JvpGivesZerosForOutputsIndependentOfTheInputs) {
  Tensor x = D({1, 2}, {2}), c = D({7, 8, 9}, {3});
  auto [ys, ts] = fwad::jvp(
      [&](const std::vector<Tensor>& in) {
        return std::vector<Tensor>{ops::mul(in[0], in[1]), ops::exp(c), ops::argmax(in[0], 0)};
      },
      {x, D({3, 4}, {2})}, {D({1, 0}, {2}), Tensor()});  // the second input is held fixed
  ASSERT_EQ(ts.size(), 3u);
  EXPECT_EQ(ts[0].to_vector(), (std::vector<double>{3, 0}));
  EXPECT_EQ(ts[1].to_vector(), (std::vector<double>{0, 0, 0}));
  EXPECT_EQ(ts[2].dtype(), DType::I64);
  EXPECT_FALSE(fwad::level_open());
}

TEST(ForwardAD, RulesComputeNoTangentsOfTangents) {
  fwad::DualLevel level;
  Tensor v = fwad::make_dual(D({1, 2}, {2}), D({5, 5}, {2}));  // a tangent that is itself dual
  Tensor x = fwad::make_dual(D({0.5, 1.5}, {2}), v);
  Tensor y = ops::exp(x);
  ASSERT_TRUE(fwad::has_tangent(y));
  EXPECT_FALSE(fwad::has_tangent(fwad::tangent(y)));
  EXPECT_NEAR(fwad::tangent(y).at({1}), 2 * std::exp(1.5), 1e-13);
}

TEST(ForwardAD, ReverseOverForwardInsideALevel) {
  // loss = Σ (J v)² with J v = v·W: d loss / dW = 2 vᵀ(v W), also through the tangent's own
  // inputs (v made from a tensor that requires grad)
  Tensor w = rnd({3, 2}, 31), s = D({1.5}, {1});
  w.requires_grad_(true);
  s.requires_grad_(true);
  Tensor x0 = rnd({4, 3}, 32), v0 = rnd({4, 3}, 33);
  fwad::DualLevel level;
  Tensor v = ops::mul(v0, s);
  Tensor y = ops::matmul(fwad::make_dual(x0, v), w);
  Tensor t = fwad::tangent(y);
  ASSERT_TRUE(t.requires_grad());
  auto g = grad({ops::sum(ops::square(t))}, {w, s});
  NoGradGuard ng;
  Tensor vw = ops::matmul(v.detach(), w.detach());
  EXPECT_TRUE(all_close(g[0], ops::mul(ops::matmul(ops::transpose(v.detach(), 0, 1), vw), 2.0), 1e-12, 1e-12));
  EXPECT_NEAR(g[1].item(), 2 * ops::sum(ops::square(vw)).item() / 1.5, 1e-10);
  EXPECT_FALSE(fwad::has_tangent(g[0]));  // gradients carry no tangents
}

TEST(ForwardAD, JvpOfAGradientThrowsInsteadOfReturningZeros) {
  Tensor x = D({0.5, 1.0}, {2});
  auto grad_of_cube = [](const std::vector<Tensor>& in) {
    Tensor xr = in[0].detach();
    xr.requires_grad_(true);
    return grad({ops::sum(ops::pow(xr, 3.0))}, {xr}, {}, true);
  };
  EXPECT_TRUE(throws_error([&] { fwad::jvp(grad_of_cube, {x}, {D({1, 1}, {2})}); },
                           {"jvp: output 0 has no tangent", "forward-over-reverse is not supported"}));
}

TEST(ForwardAD, TiledAttentionTangentMatchesTheNaiveComposition) {
  Tensor q = rnd({2, 2, 5, 8}, 41), k = rnd({2, 2, 67, 8}, 42), v = rnd({2, 2, 67, 4}, 43);
  std::vector<Tensor> xs = {q, k, v}, ts = {rnd(q.shape(), 44), rnd(k.shape(), 45), rnd(v.shape(), 46)};
  auto f = [](ops::AttentionImpl impl) {
    return [impl](const std::vector<Tensor>& in) { return ops::attention(in[0], in[1], in[2], 0.35, impl); };
  };
  Tensor tiled = jvp1(f(ops::AttentionImpl::Tiled), xs, ts).second;
  Tensor naive = jvp1(f(ops::AttentionImpl::Naive), xs, ts).second;
  EXPECT_TRUE(all_close(tiled, naive, 1e-12, 1e-12));
}

TEST(ForwardAD, NoLevelLeavesReverseModeUntouched) {
  Tensor x = rnd({3, 4}, 51);
  x.requires_grad_(true);
  Tensor y = ops::softmax(ops::exp(x), 1);
  EXPECT_FALSE(fwad::has_tangent(y));
  EXPECT_EQ(y.grad_fn()->name, "softmax");
  auto g = grad({ops::sum(ops::square(y))}, {x});
  EXPECT_EQ(g[0].shape(), x.shape());
}

TEST(ForwardAD, JvpcheckReportsAMismatch) {
  // relu at its kink: the rule takes the derivative 0 there, central differences see ½
  TensorFn f = [](const std::vector<Tensor>& in) { return ops::relu(in[0]); };
  auto r = jvpcheck(f, {zeros({4}, {DType::F64})});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("JVP mismatch along all inputs, output element"), std::string::npos) << r.message;
  EXPECT_TRUE(jvpcheck(f, {D({1, -1, 2, -2}, {4})}).ok);
}

TEST(ForwardAD, DualOutputsAndTheirTangentsAreFreedWithTheirTensors) {
  // rules that use their own output go through a history alias, so a tangent's graph never
  // holds the output that holds the tangent (no reference cycle)
  Tensor x0 = rnd({2, 3, 4}, 61), w = rnd({4}, 62), v = rnd({2, 3, 4}, 63);
  x0.requires_grad_(true);
  w.requires_grad_(true);
  v.requires_grad_(true);
  fwad::DualLevel level;
  Tensor x = fwad::make_dual(x0, v);
  std::vector<std::function<Tensor()>> ops_under_test = {
      [&] { return ops::exp(x); },
      [&] { return ops::sigmoid(x); },
      [&] { return ops::pow(ops::abs(x), w); },
      [&] { return ops::softmax(x, -1); },
      [&] { return ops::log_softmax(x, 1); },
      [&] { return ops::layer_norm(x, {4}, w); },
      [&] { return ops::amax(x, {1}); },
      [&] { return ops::attention(x, x, x, 0.5, ops::AttentionImpl::Tiled); },
  };
  for (size_t i = 0; i < ops_under_test.size(); ++i) {
    std::weak_ptr<TensorImpl> out, tan;
    {
      Tensor y = ops_under_test[i]();
      ASSERT_TRUE(fwad::has_tangent(y)) << "op " << i;
      ASSERT_TRUE(fwad::tangent(y).requires_grad()) << "op " << i;
      out = y.impl_ptr();
      tan = fwad::tangent(y).impl_ptr();
    }
    EXPECT_TRUE(out.expired()) << "op " << i << ": the output outlived its last handle";
    EXPECT_TRUE(tan.expired()) << "op " << i << ": the tangent outlived its output";
  }
}
