// The reverse-mode engine: accumulation, retain/create graph, version counters, hooks,
// grad mode, detach, and grad() with explicit inputs.
#include <cmath>

#include "autograd/node.h"
#include "tests/support/test_support.h"

using namespace vgg;
using vgg::test::throws_error;

namespace {
Tensor leaf(std::vector<double> v, Shape s) {
  Tensor t = from_vector(v, s, {DType::F64});
  t.requires_grad_(true);
  return t;
}
}  // namespace

TEST(Engine, AccumulatesForSharedInputsAndAcrossCalls) {
  Tensor x = leaf({1, 2, 3}, {3});
  Tensor y = ops::sum(x * x + x * 3.0);  // dy/dx = 2x + 3
  backward(y);
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{5, 7, 9}));
  backward(ops::sum(x * 2.0));  // accumulates into .grad
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{7, 9, 11}));
  EXPECT_TRUE(x.grad().is_contiguous());
}

TEST(Engine, DiamondGraph) {
  Tensor x = leaf({0.5}, {1});
  Tensor a = ops::exp(x), b = ops::sin(a), c = ops::cos(a);
  backward(ops::sum(b * c));  // d/dx sin(e^x)cos(e^x) = e^x cos(2 e^x)
  EXPECT_NEAR(x.grad().item(), std::exp(0.5) * std::cos(2 * std::exp(0.5)), 1e-14);
}

TEST(Engine, RetainGraphAndSecondBackwardError) {
  Tensor x = leaf({2}, {1});
  Tensor y = ops::sum(ops::exp(x));
  backward(y, Tensor(), /*retain_graph=*/true);
  backward(y);
  EXPECT_NEAR(x.grad().item(), 2 * std::exp(2.0), 1e-12);
  EXPECT_TRUE(throws_error([&] { backward(y); }, {"second time", "retain_graph"}));
}

TEST(Engine, CreateGraphGivesHigherDerivatives) {
  Tensor x = leaf({0.7}, {1});
  Tensor y = ops::sum(ops::pow(x, 4.0));
  auto g1 = grad({y}, {x}, {}, /*create_graph=*/true);
  EXPECT_NEAR(g1[0].item(), 4 * std::pow(0.7, 3), 1e-14);
  EXPECT_TRUE(g1[0].requires_grad());
  auto g2 = grad({ops::sum(g1[0])}, {x}, {}, true);
  EXPECT_NEAR(g2[0].item(), 12 * 0.49, 1e-14);
  auto g3 = grad({ops::sum(g2[0])}, {x});
  EXPECT_NEAR(g3[0].item(), 24 * 0.7, 1e-13);
  EXPECT_FALSE(g3[0].requires_grad());
}

TEST(Engine, InPlaceChangeOfSavedTensorIsDetected) {
  Tensor x = leaf({1, 2}, {2});
  Tensor w = from_vector(std::vector<double>{3, 4}, {2}, {DType::F64});
  Tensor y = ops::sum(x * w);  // saves w
  ops::mul_(w, 2.0);           // w is not a leaf requiring grad: allowed, bumps its version
  EXPECT_TRUE(throws_error([&] { backward(y); }, {"mul", "modified in place", "version"}));
}

TEST(Engine, InPlaceOnRequiresGradIsRefused) {
  Tensor x = leaf({1}, {1});
  EXPECT_TRUE(throws_error([&] { ops::add_(x, x); }, {"add_", "requires grad"}));
  NoGradGuard ng;
  ops::add_(x, ones({1}, {DType::F64}));
  EXPECT_EQ(x.item(), 2);
}

TEST(Engine, NoGradAndDetach) {
  Tensor x = leaf({1, 2}, {2});
  {
    NoGradGuard ng;
    Tensor y = x * 2.0;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_FALSE(grad_enabled());
  }
  EXPECT_TRUE(grad_enabled());
  Tensor d = x.detach();
  EXPECT_FALSE(d.requires_grad());
  Tensor y = ops::sum(x * d);  // d is a constant
  backward(y);
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{1, 2}));
  EXPECT_TRUE(throws_error([&] { backward(ops::sum(d * 2.0)); }, {"does not require grad"}));
}

TEST(Engine, LeafHooksTransformTheGradient) {
  Tensor x = leaf({1, 2}, {2});
  int calls = 0;
  x.register_hook([&](const Tensor& g) {
    ++calls;
    return g * 10.0;
  });
  backward(ops::sum(x * 3.0));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{30, 30}));
  Tensor y = ops::sum(x * x);
  EXPECT_TRUE(throws_error([&] { y.register_hook([](const Tensor& g) { return g; }); }, {"leaf"}));
}

TEST(Engine, GradWithExplicitInputs) {
  Tensor a = leaf({1, 2}, {2}), b = leaf({3, 4}, {2}), unused = leaf({0}, {1});
  Tensor y = ops::sum(a * b);
  auto g = grad({y}, {a}, {}, false, false, 1);
  EXPECT_EQ(g[0].to_vector(), (std::vector<double>{3, 4}));
  EXPECT_FALSE(a.grad().defined());  // grad() leaves .grad alone
  EXPECT_FALSE(b.grad().defined());
  EXPECT_TRUE(throws_error([&] { grad({y}, {unused}); }, {"not used", "allow_unused"}));
  auto gu = grad({y}, {unused, b}, {}, false, true);
  EXPECT_FALSE(gu[0].defined());
  EXPECT_EQ(gu[1].to_vector(), (std::vector<double>{1, 2}));
  // gradient with respect to an intermediate (non-leaf) tensor
  Tensor a2 = leaf({1, 2}, {2});
  Tensor m = a2 * 2.0;
  Tensor z = ops::sum(ops::square(m));
  auto gm = grad({z}, {m});
  EXPECT_EQ(gm[0].to_vector(), (std::vector<double>{4, 8}));
}

TEST(Engine, NonScalarOutputsNeedAGradient) {
  Tensor x = leaf({1, 2}, {2});
  Tensor y = x * 2.0;
  EXPECT_TRUE(throws_error([&] { backward(y); }, {"non-scalar"}));
  backward(y, from_vector(std::vector<double>{1, -1}, {2}, {DType::F64}));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, -2}));
  EXPECT_TRUE(throws_error([&] { backward(y, ones({3}, {DType::F64})); }, {"does not match"}));
}

TEST(Engine, RequiresGradOnlyOnFloatLeaves) {
  Tensor i = zeros({2}, {DType::I64});
  EXPECT_TRUE(throws_error([&] { i.requires_grad_(); }, {"floating"}));
  Tensor x = leaf({1}, {1});
  Tensor y = x * 2.0;
  EXPECT_TRUE(throws_error([&] { y.requires_grad_(false); }, {"leaf"}));
}

TEST(Engine, SplitOutputsWithoutGradientGetZeros) {
  Tensor x = leaf({1, 2, 3, 4}, {4});
  auto parts = ops::split(x, 2, 0);
  backward(ops::sum(parts[1] * 5.0));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0, 0, 5, 5}));
}

TEST(Engine, DeepChainDoesNotOverflowTheStack) {
  Tensor x = leaf({1}, {1});
  Tensor y = x;
  for (int i = 0; i < 20000; ++i) y = y * 1.0;
  backward(ops::sum(y));
  EXPECT_EQ(x.grad().item(), 1.0);
}

// gradcheck itself must catch a wrong derivative: an op whose backward is off by 2x.
TEST(Gradcheck, DetectsAWrongBackwardRule) {
  TensorFn wrong = [](const std::vector<Tensor>& in) {
    const Tensor& x = in[0];
    Tensor y = clone_raw(ops::sin(x.detach()));
    if (any_requires_grad({&x})) {
      auto node = record("wrong_sin", {x}, {&y});
      SavedTensor sx(x, false);
      node->backward = [sx](const Grads& g, const std::vector<bool>&) -> Grads {
        return {ops::mul(ops::mul(g[0], ops::cos(sx.unpack("wrong_sin"))), 2.0)};
      };
    }
    return y;
  };
  auto r = gradcheck(wrong, {test::rnd({5}, 1)});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("Jacobian mismatch"), std::string::npos);
  auto right = gradcheck([](const std::vector<Tensor>& in) { return ops::sin(in[0]); }, {test::rnd({5}, 1)});
  EXPECT_TRUE(right.ok) << right.message;
}

// Comparisons, argmax/argmin and sign are piecewise constant: they record no history.
TEST(Engine, NonDifferentiableOpsRecordNothing) {
  Tensor x = leaf({1, -2, 3}, {3});
  EXPECT_FALSE(ops::gt(x, x * 0.5).requires_grad());
  EXPECT_FALSE(ops::eq(x, x).requires_grad());
  EXPECT_FALSE(ops::argmax(x, 0).requires_grad());
  EXPECT_FALSE(ops::sign(x).requires_grad());
  // and a function of them still differentiates through the differentiable part
  backward(ops::sum(ops::where(ops::gt(x, zeros({3}, {DType::F64})), x * 2.0, x * 3.0)));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, 3, 2}));
}

TEST(Engine, GradThroughADeepChain) {
  Tensor x = leaf({2}, {1});
  Tensor y = x;
  for (int i = 0; i < 20000; ++i) y = y * 1.0;
  auto g = grad({ops::sum(y * y)}, {x});
  EXPECT_EQ(g[0].item(), 4.0);
}
