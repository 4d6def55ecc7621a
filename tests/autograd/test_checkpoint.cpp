// Activation checkpointing (autograd/checkpoint.h): gradients of inputs and parameters identical
// to the plain graph's, double backward through a checkpointed segment, forward mode through it,
// undefined cotangents of some outputs, and the memory it saves on a deep chain.
#include "autograd/checkpoint.h"
#include "autograd/engine.h"
#include "autograd/forward_ad.h"
#include "tensor/factory.h"
#include "tensor/storage.h"
#include "tests/support/test_support.h"

using namespace vgg;
using test::all_close;
using test::rnd;

namespace {

// A small MLP-like segment y = tanh(x·W + b)·W2: parameters read from outside its inputs.
struct Segment {
  Tensor w, b, w2;
  explicit Segment(uint64_t seed, int64_t d = 6)
      : w(rnd({d, d}, seed).requires_grad_(true)), b(rnd({d}, seed + 1).requires_grad_(true)),
        w2(rnd({d, d}, seed + 2).requires_grad_(true)) {}
  Tensor operator()(const Tensor& x) const { return ops::matmul(ops::tanh(ops::add(ops::matmul(x, w), b)), w2); }
  std::vector<Tensor> params() const { return {w, b, w2}; }
};

bool same(const Tensor& a, const Tensor& b) { return a.defined() && b.defined() && all_close(a, b, 0, 0); }

}  // namespace

TEST(Checkpoint, GradientsOfInputsAndParametersEqualThePlainGraphs) {
  Segment s1(1), s2(10);
  Tensor x = rnd({4, 6}, 100).requires_grad_(true);
  auto loss = [&](bool ckpt) {
    Tensor h = ckpt ? checkpoint([&](const Tensor& t) { return s1(t); }, x, s1.params()) : s1(x);
    h = ckpt ? checkpoint([&](const Tensor& t) { return s2(t); }, h, s2.params()) : s2(h);
    return ops::sum(ops::square(h));
  };
  std::vector<Tensor> wrt = {x, s1.w, s1.b, s1.w2, s2.w, s2.b, s2.w2};
  Tensor l0 = loss(false), l1 = loss(true);
  EXPECT_TRUE(same(l0, l1));
  auto g0 = grad({l0}, wrt), g1 = grad({l1}, wrt);
  for (size_t i = 0; i < wrt.size(); ++i) EXPECT_TRUE(same(g0[i], g1[i])) << "input " << i;
  // backward() accumulates the same into .grad through the node's parameter edges
  backward(loss(true));
  EXPECT_TRUE(same(s1.w.grad(), g0[1]));
  EXPECT_TRUE(same(s2.b.grad(), g0[5]));
}

TEST(Checkpoint, DoubleBackwardThroughTheSegment) {
  // a Hessian-vector product of x ↦ Σ s(x)³ through the checkpointed segment
  Segment s(3);
  Tensor x = rnd({3, 6}, 7).requires_grad_(true), v = rnd({3, 6}, 8);
  auto hvp = [&](bool ckpt) {
    Tensor y = ckpt ? checkpoint([&](const Tensor& t) { return s(t); }, x, s.params()) : s(x);
    Tensor gx = grad({ops::sum(ops::mul(ops::square(y), y))}, {x}, {}, /*create_graph=*/true)[0];
    return grad({ops::sum(ops::mul(gx, v))}, {x, s.w})[0];
  };
  EXPECT_TRUE(all_close(hvp(true), hvp(false), 1e-13, 1e-13));
}

TEST(Checkpoint, ForwardModeRunsTheFunctionItself) {
  Segment s(5);
  Tensor x = rnd({2, 6}, 9), t = rnd({2, 6}, 11);
  auto f = [&](bool ckpt) {
    return fwad::jvp([&](const std::vector<Tensor>& in) {
      return std::vector<Tensor>{ckpt ? checkpoint([&](const Tensor& a) { return s(a); }, in[0], s.params()) : s(in[0])};
    }, {x}, {t});
  };
  auto [y0, t0] = f(false);
  auto [y1, t1] = f(true);
  EXPECT_TRUE(same(y0[0], y1[0]));
  EXPECT_TRUE(same(t0[0], t1[0]));
}

TEST(Checkpoint, SeveralOutputsSomeWithoutCotangent) {
  Segment s(4);
  Tensor x = rnd({2, 6}, 12).requires_grad_(true);
  auto two = [&](const std::vector<Tensor>& in) { Tensor y = s(in[0]); return std::vector<Tensor>{y, ops::exp(y)}; };
  std::vector<Tensor> ys = checkpoint(two, {x}, s.params());
  ASSERT_EQ(ys.size(), 2u);
  // only the second output reaches the loss: the first gets no cotangent
  auto g1 = grad({ops::sum(ys[1])}, {x, s.w});
  auto g0 = grad({ops::sum(ops::exp(s(x)))}, {x, s.w});
  EXPECT_TRUE(same(g0[0], g1[0]));
  EXPECT_TRUE(same(g0[1], g1[1]));
}

TEST(Checkpoint, NothingRequiringGradRunsThePlainFunction) {
  Segment s(6);
  NoGradGuard ng;  // parameters require grad, but no graph is recorded
  Tensor y = checkpoint([&](const Tensor& t) { return s(t); }, rnd({2, 6}, 1), s.params());
  EXPECT_FALSE(y.requires_grad());
}

TEST(Checkpoint, KeepsOnlyTheSegmentInputsOfADeepChain) {
  // 16 segments of 8 wide intermediates each: the plain graph keeps them all until backward, the
  // checkpointed one only the 16 segment inputs (and one segment's worth during its backward)
  const int64_t rows = 512, d = 64;
  std::vector<Segment> segs;
  for (int i = 0; i < 16; ++i) segs.emplace_back(200 + 3 * i, d);
  Tensor x = rnd({rows, d}, 99).requires_grad_(true);
  auto peak = [&](bool ckpt) {
    reset_host_peak_memory();
    const size_t base = host_memory_stats().allocated_bytes;
    Tensor h = x;
    for (const Segment& s : segs) {
      auto deep = [&s](const Tensor& t) {
        Tensor a = t;
        for (int k = 0; k < 4; ++k) a = ops::tanh(ops::add(s(a), t));  // 8 intermediates of [rows, d]
        return a;
      };
      h = ckpt ? checkpoint(deep, h, s.params()) : deep(h);
    }
    Tensor gx = grad({ops::sum(ops::square(h))}, {x})[0];
    return std::pair{host_memory_stats().peak_allocated_bytes - base, gx};
  };
  auto [plain, g0] = peak(false);
  auto [ckpt, g1] = peak(true);
  EXPECT_TRUE(same(g0, g1));
  const double act = static_cast<double>(rows * d * 8);  // bytes of one [rows, d] f64 activation
  EXPECT_GT(static_cast<double>(plain), 16 * 8 * act) << "the plain graph should hold every intermediate";
  EXPECT_LT(static_cast<double>(ckpt), 0.35 * static_cast<double>(plain)) << "checkpointed peak " << ckpt << " vs plain " << plain;
}
