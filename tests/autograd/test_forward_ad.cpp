// Forward mode (autograd/forward_ad.h). For every op with a JVP rule, from the op table
// (tests/support/op_table.cpp: the cases flagged kJvp), in f64
// (jvpcheck, autograd/gradcheck.h):
//   - the JVP against central differences (f(x+εv) − f(x−εv))/2ε, with tangents on all float
//     inputs at once (in a strided layout) and on each one alone (undefined tangents skip terms),
//     and the primal under forward mode bitwise equal to f(x);
//   - the adjoint identity ⟨u, J v⟩ = ⟨Jᵀu, v⟩ against reverse mode;
//   - for a subset, reverse-over-forward: gradcheck of (x, v) ↦ J(x)·v.
// Then networks (nn layers, a tiny MMDiT), and the API and its errors.
#include <cmath>
#include <set>
#include <sstream>

#include "autograd/forward_ad.h"
#include "autograd/node.h"
#include "autograd/ops_util.h"
#include "nn/layers.h"
#include "nn/mmdit.h"
#include "tests/support/op_table.h"
#include "tests/support/test_support.h"

using namespace vgg;
using test::all_close;
using test::rnd;
using test::rnd_uniform;
using test::throws_error;

namespace {

using test::OpCase;

Tensor D(std::vector<double> v, Shape s) { return from_vector(v, s, {DType::F64}); }
Tensor I(std::vector<int64_t> v, Shape s) { return from_vector(v, s, {DType::I64}); }

// the op table's forward-mode cases (tests/support/op_table.cpp)
std::vector<OpCase> cases() { return test::op_cases_with(test::kJvp); }
// differentiable at their inputs (the tie cases are checked by the adjoint identity only)
std::vector<OpCase> central_cases() { return test::op_cases_with(test::kJvp | test::kJvpCentral); }
std::vector<OpCase> reverse_cases() { return test::op_cases_with(test::kJvp | test::kReverseOverForward); }

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

class GradcheckJvpOps : public ::testing::TestWithParam<OpCase> {};
class GradcheckJvpAdjoint : public ::testing::TestWithParam<OpCase> {};
class GradcheckJvpReverseOverForward : public ::testing::TestWithParam<OpCase> {};

}  // namespace

TEST_P(GradcheckJvpOps, MatchesCentralDifferences) {
  const OpCase& c = GetParam();
  JvpcheckOptions o;
  o.eps = c.jvp_eps;
  o.atol = o.rtol = c.jvp_tol;
  o.adjoint = false;
  EXPECT_GRADCHECK(jvpcheck(c.fn, c.inputs(), o));
}

TEST_P(GradcheckJvpAdjoint, InnerProductIdentity) {
  const OpCase& c = GetParam();
  JvpcheckOptions o;
  o.central = false;
  o.adjoint_tol = c.adjoint_tol;
  o.seed = 1;
  EXPECT_GRADCHECK(jvpcheck(c.fn, c.inputs(), o));
}

TEST_P(GradcheckJvpReverseOverForward, TangentMapMatchesCentralDifferences) {
  // h(x, v) = J(x)·v: its Jacobian w.r.t. x (second derivatives) and v (J itself) by reverse
  // mode through the JVP rules, against central differences of h
  const OpCase& c = GetParam();
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

static std::string case_name(const ::testing::TestParamInfo<OpCase>& i) { return i.param.name; }
INSTANTIATE_TEST_SUITE_P(GradcheckJvp, GradcheckJvpOps, ::testing::ValuesIn(central_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(GradcheckJvp, GradcheckJvpAdjoint, ::testing::ValuesIn(cases()), case_name);
INSTANTIATE_TEST_SUITE_P(GradcheckJvp, GradcheckJvpReverseOverForward, ::testing::ValuesIn(reverse_cases()), case_name);

TEST(GradcheckJvpCoverage, ReverseOverForwardListNamesExistingCases) {
  auto r = reverse_cases();
  EXPECT_EQ(r.size(), test::reverse_over_forward_names());
}

// Every public op (VGG_OPS in tests/support/op_table.h, checked against ops:: at compile time) has a
// forward-mode case in the op table, found by name: a case named after the op, or with the op as
// one of its '_'-separated words. A new op without a JVP case fails this test by name. The
// exemptions are the ops without a derivative (comparisons, argmax/argmin:
// NonDifferentiableOpsCarryNoTangent), and attention_jvp, the fused JVP itself, whose forward mode
// (forward-over-forward) is refused by design (AttentionJvp.BadInputsAreRefusedInOneLine); its JVP
// is what the attention cases check, and resize_matrix, a constant (resize2d's cases cover it).
TEST(GradcheckJvpCoverage, EveryOpHasAForwardModeCase) {
  const std::set<std::string> exempt = {"argmax", "argmin", "eq", "ne", "lt", "le", "gt", "ge", "attention_jvp",
                                        "resize_matrix"};
  const auto jvp = cases();
  std::set<std::string> words;
  for (const auto& c : jvp) {
    std::stringstream w(c.name);
    for (std::string x; std::getline(w, x, '_');) words.insert(x);
    words.insert(c.name);
  }
  int n = 0;
  for (const char* name : test::kOpNames) {
    const std::string op = name;
    if (exempt.count(op)) continue;
    ++n;
    bool found = words.count(op) > 0;
    for (const auto& c : jvp) found = found || c.name.rfind(op + "_", 0) == 0;
    EXPECT_TRUE(found) << "ops::" << op << " has no forward-mode case in the op table";
  }
  EXPECT_GT(n, 60);
}

// Every case name in the table is unique and every case carries at least one check.
TEST(GradcheckJvpCoverage, TableNamesAreUniqueAndEveryCaseIsChecked) {
  std::set<std::string> names;
  for (const auto& c : test::op_cases()) {
    EXPECT_TRUE(names.insert(c.name).second) << "op table: case " << c.name << " twice";
    EXPECT_NE(c.checks, 0u) << "op table: case " << c.name << " has no check";
  }
  EXPECT_GT(names.size(), 150u);
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
