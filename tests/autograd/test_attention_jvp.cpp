// The fused attention JVP and its adjoint (kernels/attention.h, ops::attention_jvp): the one-pass
// tangent against the composed reference rule and central differences in f64, the adjoint
// identity against reverse mode, reverse-over-forward against the composed path, gradcheck of the
// fused adjoint (also in the op table), every subset of tangents, several tiles in both sequence
// dimensions, f32/bf16, and O(S) memory at the SD3-medium sequence length.
#include <cmath>

#include "autograd/engine.h"
#include "autograd/forward_ad.h"
#include "tensor/factory.h"
#include "tensor/storage.h"
#include "tests/support/test_support.h"

using namespace vgg;
using test::all_close;
using test::rnd;
using test::throws_error;

namespace {

// Selects the attention JVP for one scope.
struct JvpMode {
  explicit JvpMode(ops::AttentionJvp m) : prev(ops::attention_jvp_mode()) { ops::set_attention_jvp(m); }
  ~JvpMode() { ops::set_attention_jvp(prev); }
  ops::AttentionJvp prev;
};

struct Shape5 {
  int64_t b, sq, sk, d, dv;
};

// [b, s, d]-shaped inputs and tangents; mask bit i off: tangent i undefined.
struct Inputs {
  std::vector<Tensor> x, t;
  Inputs(const Shape5& s, unsigned mask, uint64_t seed, DType dt = DType::F64) {
    x = {rnd({s.b, s.sq, s.d}, seed, dt), rnd({s.b, s.sk, s.d}, seed + 1, dt), rnd({s.b, s.sk, s.dv}, seed + 2, dt)};
    for (int i = 0; i < 3; ++i) t.push_back(mask & (1u << i) ? rnd(x[i].shape(), seed + 10 + i, dt) : Tensor());
  }
};

// The tangent of tiled attention under forward mode with the given rule.
Tensor jvp_of(const Inputs& in, double scale, ops::AttentionJvp mode) {
  JvpMode m(mode);
  fwad::DualLevel level;
  std::vector<Tensor> d;
  for (int i = 0; i < 3; ++i) d.push_back(in.t[i].defined() ? fwad::make_dual(in.x[i], in.t[i]) : in.x[i]);
  Tensor o = ops::attention(d[0], d[1], d[2], scale, ops::AttentionImpl::Tiled);
  return fwad::tangent(o);
}

double dot(const Tensor& a, const Tensor& b) { return ops::sum(ops::mul(a, b)).item(); }

const Shape5 kShapes[] = {
    {2, 3, 5, 4, 3},      // one tile
    {1, 70, 300, 5, 4},   // several query (64) and key (256) tiles
    {3, 1, 1, 2, 2},      // one query, one key
    {1, 129, 257, 8, 6},  // one past each tile boundary
};

}  // namespace

// f64: the fused tangent equals the composed reference rule (1e-12) for every subset of tangents.
TEST(AttentionJvp, FusedEqualsTheComposedRuleInF64) {
  int n = 0;
  for (const auto& s : kShapes)
    for (unsigned mask = 1; mask < 8; ++mask) {
      Inputs in(s, mask, 100 + mask);
      Tensor fused = jvp_of(in, 0.37, ops::AttentionJvp::Fused);
      Tensor composed = jvp_of(in, 0.37, ops::AttentionJvp::Composed);
      ASSERT_TRUE(fused.defined());
      EXPECT_TRUE(all_close(fused, composed, 1e-12, 1e-12)) << "sq " << s.sq << " sk " << s.sk << " mask " << mask;
      ++n;
    }
  EXPECT_EQ(n, 28);
}

// f64: the fused tangent against central differences of the attention itself.
TEST(AttentionJvp, FusedMatchesCentralDifferences) {
  for (const auto& s : kShapes) {
    Inputs in(s, 7, 200);
    Tensor jv = jvp_of(in, 0.5, ops::AttentionJvp::Fused);
    const double eps = 1e-6;
    std::vector<Tensor> plus, minus;
    for (int i = 0; i < 3; ++i) {
      plus.push_back(ops::add(in.x[i], ops::mul(in.t[i], eps)));
      minus.push_back(ops::sub(in.x[i], ops::mul(in.t[i], eps)));
    }
    Tensor fd = ops::div(ops::sub(ops::attention(plus[0], plus[1], plus[2], 0.5),
                                  ops::attention(minus[0], minus[1], minus[2], 0.5)),
                         scalar_tensor(2 * eps, {DType::F64}));
    EXPECT_TRUE(all_close(jv, fd, 1e-7, 1e-6)) << "sq " << s.sq << " sk " << s.sk;
  }
}

// ⟨u, J v⟩ = ⟨Jᵀu, v⟩: the fused JVP against the tiled attention's reverse mode (its own kernel).
TEST(AttentionJvp, AdjointIdentityAgainstReverseMode) {
  for (const auto& s : kShapes) {
    Inputs in(s, 7, 300);
    Tensor jv = jvp_of(in, 0.45, ops::AttentionJvp::Fused);
    Tensor u = rnd(jv.shape(), 301);
    std::vector<Tensor> x;
    for (const Tensor& t : in.x) x.push_back(t.detach().requires_grad_(true));
    Tensor o = ops::attention(x[0], x[1], x[2], 0.45, ops::AttentionImpl::Tiled);
    auto g = grad({o}, x, {u});
    const double lhs = dot(u, jv), rhs = dot(g[0], in.t[0]) + dot(g[1], in.t[1]) + dot(g[2], in.t[2]);
    EXPECT_NEAR(lhs, rhs, 1e-10 * (1 + std::abs(lhs))) << "sq " << s.sq << " sk " << s.sk;
  }
}

// Reverse mode through the tangent (reverse-over-forward): the fused adjoint kernel's gradients with
// respect to q, k, v and the three tangents equal the composed rule's (1e-11), for every subset of
// tangents, with and without a gradient through the primal output at the same time.
TEST(AttentionJvp, ReverseOverForwardEqualsTheComposedRule) {
  for (const auto& s : kShapes)
    for (unsigned mask = 1; mask < 8; ++mask) {
      Inputs in(s, mask, 400 + mask);
      std::vector<Tensor> grads[2];
      for (int which = 0; which < 2; ++which) {
        JvpMode m(which == 0 ? ops::AttentionJvp::Fused : ops::AttentionJvp::Composed);
        std::vector<Tensor> x, t, wrt;
        for (int i = 0; i < 3; ++i) {
          x.push_back(in.x[i].detach().requires_grad_(true));
          wrt.push_back(x.back());
        }
        for (int i = 0; i < 3; ++i)
          if (in.t[i].defined()) {
            t.push_back(in.t[i].detach().requires_grad_(true));
            wrt.push_back(t.back());
          } else {
            t.push_back(Tensor());
          }
        Tensor to, o;
        {
          fwad::DualLevel level;
          std::vector<Tensor> d;
          for (int i = 0; i < 3; ++i) d.push_back(t[i].defined() ? fwad::make_dual(x[i], t[i]) : x[i]);
          o = ops::attention(d[0], d[1], d[2], 0.6, ops::AttentionImpl::Tiled);
          to = fwad::tangent(o);
        }  // o stays the primal output, with its reverse history
        Tensor loss = ops::add(ops::sum(ops::mul(to, rnd(to.shape(), 9))), ops::sum(ops::mul(o, rnd(o.shape(), 10))));
        grads[which] = grad({loss}, wrt);
      }
      ASSERT_EQ(grads[0].size(), grads[1].size());
      for (size_t i = 0; i < grads[0].size(); ++i)
        EXPECT_TRUE(all_close(grads[0][i], grads[1][i], 1e-11, 1e-11))
            << "input " << i << " sq " << s.sq << " sk " << s.sk << " mask " << mask;
    }
}

// The fused adjoint against central differences of the fused JVP (gradcheck over all six inputs,
// and with tangents absent).
TEST(AttentionJvp, GradcheckOfTheFusedAdjoint) {
  const Shape5 s{2, 3, 70, 3, 2};
  Inputs in(s, 7, 500);
  std::vector<Tensor> all = {in.x[0], in.x[1], in.x[2], in.t[0], in.t[1], in.t[2]};
  EXPECT_GRADCHECK(gradcheck(
      [](const std::vector<Tensor>& a) { return ops::attention_jvp(a[0], a[1], a[2], a[3], a[4], a[5], 0.8); }, all));
  EXPECT_GRADCHECK(gradcheck(
      [](const std::vector<Tensor>& a) { return ops::attention_jvp(a[0], a[1], a[2], Tensor(), a[3], Tensor(), 0.8); },
      {in.x[0], in.x[1], in.x[2], in.t[1]}));
  EXPECT_GRADCHECK(gradcheck(
      [](const std::vector<Tensor>& a) { return ops::attention_jvp(a[0], a[1], a[2], Tensor(), Tensor(), a[3], 0.8); },
      {in.x[0], in.x[1], in.x[2], in.t[2]}));
}

// f32 and bf16 (f32 accumulation): the fused tangent against the f64 composed rule on the same
// (rounded) inputs, within the precision's scale.
TEST(AttentionJvp, LowerPrecisionsAgainstTheF64Reference) {
  const Shape5 s{2, 70, 300, 16, 16};
  for (DType dt : {DType::F32, DType::BF16}) {
    Inputs in(s, 7, 600, dt);
    Inputs ref = in;
    for (int i = 0; i < 3; ++i) ref.x[i] = ops::to(in.x[i], DType::F64), ref.t[i] = ops::to(in.t[i], DType::F64);
    Tensor got = ops::to(jvp_of(in, 0.25, ops::AttentionJvp::Fused), DType::F64);
    Tensor want = jvp_of(ref, 0.25, ops::AttentionJvp::Composed);
    const double scale = ops::amax(ops::abs(want)).item();
    const double tol = dt == DType::F32 ? 1e-5 : 3.0 / 128;
    EXPECT_TRUE(all_close(got, want, tol * scale, tol)) << dtype_name(dt);
  }
}

// O(S) memory: at the SD3-medium joint sequence length (4429) the fused JVP's tensors stay far below
// one S x S score matrix, which the composed rule materialises several times.
TEST(AttentionJvp, MemoryDoesNotGrowWithTheScoreMatrix) {
  const int64_t S = 4429, d = 64;
  Inputs in({1, S, S, d, d}, 7, 700, DType::F32);
  const double sxs = static_cast<double>(S) * S * 4;  // one f32 score matrix: 78 MB
  reset_host_peak_memory();
  const size_t before = host_memory_stats().allocated_bytes;
  Tensor to = jvp_of(in, 0.125, ops::AttentionJvp::Fused);
  const double fused_peak = static_cast<double>(host_memory_stats().peak_allocated_bytes - before);
  EXPECT_LT(fused_peak, 0.1 * sxs) << "fused JVP peak " << fused_peak << " bytes";
  EXPECT_GT(fused_peak, 0.0);
  // the statistics do see an S x S allocation: the composed rule's
  reset_host_peak_memory();
  const size_t before2 = host_memory_stats().allocated_bytes;
  Tensor to2 = jvp_of(in, 0.125, ops::AttentionJvp::Composed);
  EXPECT_GT(static_cast<double>(host_memory_stats().peak_allocated_bytes - before2), sxs);
  EXPECT_TRUE(all_close(to, to2, 1e-5 * ops::amax(ops::abs(to2)).item(), 1e-4));
}

TEST(AttentionJvp, BadInputsAreRefusedInOneLine) {
  Inputs in({1, 3, 4, 2, 2}, 7, 800);
  EXPECT_TRUE(throws_error([&] { ops::attention_jvp(in.x[0], in.x[1], in.x[2], rnd({1, 3, 3}, 1), Tensor(), Tensor(), 1); },
                           {"attention_jvp", "tangent tq", "[1, 3, 3]", "[1, 3, 2]"}));
  EXPECT_TRUE(throws_error(
      [&] { ops::attention_jvp(in.x[0], in.x[1], in.x[2], Tensor(), ops::to(in.t[1], DType::F32), Tensor(), 1); },
      {"attention_jvp", "dtype mismatch"}));
  // forward mode over the fused JVP (forward-over-forward) is refused, not silently wrong
  EXPECT_TRUE(throws_error(
      [&] {
        fwad::DualLevel level;
        Tensor q = fwad::make_dual(in.x[0], in.t[0]);
        ops::attention_jvp(q, in.x[1], in.x[2], in.t[0], Tensor(), Tensor(), 1);
      },
      {"attention_jvp", "forward mode over the fused JVP"}));
  // double backward through the fused adjoint is refused with the fallback named
  EXPECT_TRUE(throws_error(
      [&] {
        Tensor q = in.x[0].detach().requires_grad_(true);
        Tensor to = ops::attention_jvp(q, in.x[1], in.x[2], in.t[0], Tensor(), Tensor(), 1);
        grad({ops::sum(to)}, {q}, {}, /*create_graph=*/true);
      },
      {"attention_jvp", "AttentionJvp::Composed"}));
}
