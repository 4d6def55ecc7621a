// Forward results of every CPU kernel against independent references written here with
// plain loops in double, in f64, f32 and bf16, with broadcasting and non-contiguous inputs.
#include <cmath>
#include <functional>

#include "autograd/ops_util.h"
#include "kernels/elementwise.h"
#include "tests/support/test_support.h"

using namespace vgg;
using test::all_close;
using test::noncontig;
using test::rnd;
using test::rnd_uniform;

namespace {

// Tolerance for comparing a dtype's result with a double reference.
double tol(DType dt) { return dt == DType::F64 ? 1e-12 : dt == DType::F32 ? 2e-6 : 1e-2; }

// The reference applied to the values the op actually saw (bf16/f32-rounded inputs).
Tensor map_ref(const Tensor& x, const std::function<double(double)>& f) {
  auto v = x.to_vector();
  for (auto& e : v) e = f(e);
  return from_vector(v, x.shape(), {DType::F64});
}

struct UnaryRef {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;
  double lo, hi;
};

double gelu_ref(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double gelu_tanh_ref(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

std::vector<UnaryRef> unary_refs() {
  return {
      {"neg", ops::neg, [](double x) { return -x; }, -3, 3},
      {"abs", ops::abs, [](double x) { return std::abs(x); }, -3, 3},
      {"exp", ops::exp, [](double x) { return std::exp(x); }, -3, 3},
      {"log", ops::log, [](double x) { return std::log(x); }, 0.1, 5},
      {"sqrt", ops::sqrt, [](double x) { return std::sqrt(x); }, 0.1, 5},
      {"rsqrt", ops::rsqrt, [](double x) { return 1 / std::sqrt(x); }, 0.1, 5},
      {"square", ops::square, [](double x) { return x * x; }, -3, 3},
      {"sin", ops::sin, [](double x) { return std::sin(x); }, -3, 3},
      {"cos", ops::cos, [](double x) { return std::cos(x); }, -3, 3},
      {"tanh", ops::tanh, [](double x) { return std::tanh(x); }, -3, 3},
      {"sigmoid", ops::sigmoid, [](double x) { return 1 / (1 + std::exp(-x)); }, -6, 6},
      {"silu", ops::silu, [](double x) { return x / (1 + std::exp(-x)); }, -6, 6},
      {"relu", ops::relu, [](double x) { return x > 0 ? x : 0; }, -3, 3},
      {"gelu", [](const Tensor& x) { return ops::gelu(x); }, gelu_ref, -4, 4},
      {"gelu_tanh", [](const Tensor& x) { return ops::gelu(x, true); }, gelu_tanh_ref, -4, 4},
      {"erf", ops::erf, [](double x) { return std::erf(x); }, -3, 3},
      {"reciprocal", ops::reciprocal, [](double x) { return 1 / x; }, 0.2, 4},
      {"sign", ops::sign, [](double x) { return double((x > 0) - (x < 0)); }, -3, 3},
      {"pow2.5", [](const Tensor& x) { return ops::pow(x, 2.5); }, [](double x) { return std::pow(x, 2.5); }, 0.1, 3},
      {"clamp", [](const Tensor& x) { return ops::clamp(x, -1, 0.5); }, [](double x) { return std::min(std::max(x, -1.0), 0.5); }, -3, 3},
      {"add_scalar", [](const Tensor& x) { return x + 2.5; }, [](double x) { return x + 2.5; }, -3, 3},
      {"mul_scalar", [](const Tensor& x) { return x * -1.5; }, [](double x) { return -1.5 * x; }, -3, 3},
  };
}

}  // namespace

TEST(ForwardUnary, MatchesStdMathInEveryDtypeAndLayout) {
  uint64_t seed = 1;
  for (const auto& u : unary_refs()) {
    for (DType dt : {DType::F64, DType::F32, DType::BF16}) {
      Tensor x = rnd_uniform({5, 7}, u.lo, u.hi, seed++, dt);
      Tensor y = u.op(x);
      EXPECT_EQ(y.dtype(), dt) << u.name;
      EXPECT_TRUE(all_close(y, map_ref(x, u.ref), tol(dt), tol(dt))) << u.name << " " << dtype_name(dt);
      Tensor yn = u.op(noncontig(x));
      EXPECT_EQ(yn.to_vector(), y.to_vector()) << u.name << " non-contiguous, " << dtype_name(dt);
      Tensor yt = u.op(ops::transpose(x, 0, 1));
      EXPECT_EQ(yt.to_vector(), ops::contiguous(ops::transpose(y, 0, 1)).to_vector()) << u.name << " transposed";
    }
  }
}

TEST(ForwardBinary, BroadcastingMatchesLoops) {
  const std::vector<std::pair<const char*, std::function<Tensor(const Tensor&, const Tensor&)>>> ops_ = {
      {"add", [](const Tensor& a, const Tensor& b) { return ops::add(a, b); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return ops::sub(a, b); }},
      {"mul", [](const Tensor& a, const Tensor& b) { return ops::mul(a, b); }},
      {"div", [](const Tensor& a, const Tensor& b) { return ops::div(a, b); }},
      {"pow", [](const Tensor& a, const Tensor& b) { return ops::pow(ops::abs(a) + 0.5, b); }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return ops::maximum(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return ops::minimum(a, b); }}};
  const std::vector<std::function<double(double, double)>> refs = {
      [](double a, double b) { return a + b; }, [](double a, double b) { return a - b; },
      [](double a, double b) { return a * b; }, [](double a, double b) { return a / b; },
      [](double a, double b) { return std::pow(std::abs(a) + 0.5, b); },
      [](double a, double b) { return std::max(a, b); }, [](double a, double b) { return std::min(a, b); }};
  for (DType dt : {DType::F64, DType::F32, DType::BF16, DType::I64}) {
    Tensor a = ops::to(rnd({2, 3, 4}, 11) * 3.0, dt);
    Tensor b = ops::to(rnd_uniform({3, 1}, 0.5, 2.0, 12), dt);  // b > 0 so div/pow are defined
    auto av = a.to_vector(), bv = b.to_vector();
    for (size_t k = 0; k < ops_.size(); ++k) {
      if (dt == DType::I64 && (k == 3 || k == 4)) continue;  // integer div/pow are not meaningful here
      std::vector<double> ref(24);
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
          for (int l = 0; l < 4; ++l) {
            double ae = av[(i * 3 + j) * 4 + l];
            if (k == 4 && dt == DType::BF16) ae = static_cast<float>(bf16(std::abs(ae) + 0.5f)) - 0.5;
            ref[(i * 3 + j) * 4 + l] = refs[k](ae, bv[j]);
          }
      Tensor r = from_vector(ref, {2, 3, 4}, {DType::F64});
      Tensor y = ops_[k].second(a, b);
      double t = dt == DType::I64 ? 0 : tol(dt);
      EXPECT_TRUE(all_close(y, r, t, t)) << ops_[k].first << " " << dtype_name(dt);
      EXPECT_EQ(ops_[k].second(noncontig(a), noncontig(b)).to_vector(), y.to_vector()) << ops_[k].first;
      // broadcasting is symmetric: b op a has the same shape
      EXPECT_EQ(ops_[k].second(b, a).shape(), (Shape{2, 3, 4}));
    }
  }
}

TEST(ForwardBinary, ComparisonsAndWhere) {
  Tensor a = from_vector(std::vector<double>{1, 2, 3, 4}, {2, 2}, {DType::F64});
  Tensor b = from_vector(std::vector<double>{2, 2}, {2}, {DType::F64});
  EXPECT_EQ(ops::lt(a, b).to_vector(), (std::vector<double>{1, 0, 0, 0}));
  EXPECT_EQ(ops::le(a, b).to_vector(), (std::vector<double>{1, 1, 0, 0}));
  EXPECT_EQ(ops::eq(a, b).to_vector(), (std::vector<double>{0, 1, 0, 0}));
  EXPECT_EQ(ops::ne(a, b).to_vector(), (std::vector<double>{1, 0, 1, 1}));
  EXPECT_EQ(ops::gt(a, b).to_vector(), (std::vector<double>{0, 0, 1, 1}));
  EXPECT_EQ(ops::ge(a, b).to_vector(), (std::vector<double>{0, 1, 1, 1}));
  EXPECT_EQ(ops::gt(a, b).dtype(), DType::Bool);
  Tensor w = ops::where(ops::gt(a, b), a, ops::neg(b));
  EXPECT_EQ(w.to_vector(), (std::vector<double>{-2, -2, 3, 4}));
  // NaN propagates through maximum/minimum
  Tensor n = from_vector(std::vector<double>{NAN, 1}, {2}, {DType::F64});
  EXPECT_TRUE(std::isnan(ops::maximum(n, ones({2}, {DType::F64})).to_vector()[0]));
}

TEST(ForwardReduce, AllDimSetsMatchLoops) {
  for (DType dt : {DType::F64, DType::F32, DType::BF16}) {
    Tensor x = rnd({3, 4, 5}, 21, dt);
    auto v = x.to_vector();
    auto at = [&](int i, int j, int k) { return v[(i * 4 + j) * 5 + k]; };
    // sum over {0, 2} keepdim
    std::vector<double> s(4, 0), mx(4, -1e300), mn(4, 1e300);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 4; ++j)
        for (int k = 0; k < 5; ++k) {
          s[j] += at(i, j, k);
          mx[j] = std::max(mx[j], at(i, j, k));
          mn[j] = std::min(mn[j], at(i, j, k));
        }
    double t = dt == DType::BF16 ? 5e-2 : tol(dt) * 10;
    EXPECT_TRUE(all_close(ops::sum(x, {0, 2}, true), from_vector(s, {1, 4, 1}, {DType::F64}), t, t));
    EXPECT_TRUE(all_close(ops::sum(noncontig(x), {2, 0}), from_vector(s, {4}, {DType::F64}), t, t));
    EXPECT_TRUE(all_close(ops::amax(x, {0, 2}), from_vector(mx, {4}, {DType::F64}), 0, 0));
    EXPECT_TRUE(all_close(ops::amin(ops::transpose(x, 0, 1), {1, 2}), from_vector(mn, {4}, {DType::F64}), 0, 0));
    std::vector<double> m(4);
    for (int j = 0; j < 4; ++j) m[j] = s[j] / 15;
    EXPECT_TRUE(all_close(ops::mean(x, {0, 2}), from_vector(m, {4}, {DType::F64}), t, t));
    // var over the last dim (correction 1), argmax over dim 1
    std::vector<double> var(12), am(15);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 4; ++j) {
        double mu = 0, ss = 0;
        for (int k = 0; k < 5; ++k) mu += at(i, j, k) / 5;
        for (int k = 0; k < 5; ++k) ss += (at(i, j, k) - mu) * (at(i, j, k) - mu);
        var[i * 4 + j] = ss / 4;
      }
    for (int i = 0; i < 3; ++i)
      for (int k = 0; k < 5; ++k) {
        int best = 0;
        for (int j = 1; j < 4; ++j)
          if (at(i, j, k) > at(i, best, k)) best = j;
        am[i * 5 + k] = best;
      }
    EXPECT_TRUE(all_close(ops::var(x, {-1}), from_vector(var, {3, 4}, {DType::F64}), t, t));
    EXPECT_EQ(ops::argmax(x, 1).to_vector(), am);
    EXPECT_EQ(ops::argmax(x, 1).dtype(), DType::I64);
    EXPECT_EQ(ops::argmax(x, 1, true).shape(), (Shape{3, 1, 5}));
    // full reductions and norms
    double total = 0, l2 = 0, l1 = 0, linf = 0;
    for (double e : v) {
      total += e;
      l2 += e * e;
      l1 += std::abs(e);
      linf = std::max(linf, std::abs(e));
    }
    EXPECT_TRUE(all_close(ops::sum(x), scalar_tensor(total, {DType::F64}), t, t));
    EXPECT_TRUE(all_close(ops::norm(x), scalar_tensor(std::sqrt(l2), {DType::F64}), t, t));
    EXPECT_TRUE(all_close(ops::norm(x, 1), scalar_tensor(l1, {DType::F64}), t, t));
    EXPECT_TRUE(all_close(ops::norm(x, INFINITY), scalar_tensor(linf, {DType::F64}), 0, 0));
  }
  // argmin picks the first of equal minima
  Tensor e = from_vector(std::vector<double>{3, 1, 1, 2}, {4});
  EXPECT_EQ(ops::argmin(e, 0).item(), 1);
  // sum over an empty dim is zero; max over it is an error
  EXPECT_EQ(ops::sum(zeros({3, 0}), {1}).to_vector(), (std::vector<double>{0, 0, 0}));
  EXPECT_TRUE(test::throws_error([] { ops::amax(zeros({3, 0}), {1}); }, {"amax", "empty"}));
}

TEST(ForwardMatmul, MatchesTripleLoop) {
  for (DType dt : {DType::F64, DType::F32, DType::BF16}) {
    struct Shp { Shape a, b; };
    for (auto sh : {Shp{{5, 7}, {7, 3}}, Shp{{2, 1, 4, 6}, {3, 6, 5}}, Shp{{3, 4, 6}, {6, 2}}, Shp{{33, 65}, {65, 17}}}) {
      Tensor a = rnd(sh.a, 31, dt), b = rnd(sh.b, 32, dt);
      Tensor c = ops::matmul(a, b);
      // reference: broadcast batch dims by hand
      Shape ab(sh.a.begin(), sh.a.end() - 2), bb(sh.b.begin(), sh.b.end() - 2);
      Shape batch = broadcast_shapes(ab, bb, "t");
      const int64_t m = sh.a[sh.a.size() - 2], k = sh.a.back(), n = sh.b.back();
      Shape as = batch, bs = batch, os = batch;
      as.insert(as.end(), {m, k});
      bs.insert(bs.end(), {k, n});
      os.insert(os.end(), {m, n});
      auto A = ops::contiguous(ops::expand(a, as)).to_vector(), B = ops::contiguous(ops::expand(b, bs)).to_vector();
      const int64_t nb = numel_of(batch);
      std::vector<double> ref(nb * m * n, 0);
      for (int64_t q = 0; q < nb; ++q)
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            double s = 0;
            for (int64_t l = 0; l < k; ++l) s += A[(q * m + i) * k + l] * B[(q * k + l) * n + j];
            ref[(q * m + i) * n + j] = s;
          }
      double t = dt == DType::F64 ? 1e-12 : dt == DType::F32 ? 1e-5 : 3e-2;
      Tensor r = from_vector(ref, os, {DType::F64});
      EXPECT_TRUE(all_close(c, r, t, t)) << dtype_name(dt) << " " << shape_str(sh.a) << "@" << shape_str(sh.b);
      // transposed and non-contiguous operands take other kernel paths and agree
      Tensor at = ops::transpose(ops::contiguous(ops::transpose(a, -1, -2)), -1, -2);
      EXPECT_TRUE(all_close(ops::matmul(at, noncontig(b)), r, t, t)) << dtype_name(dt) << " transposed operands";
    }
  }
  Tensor v = from_vector(std::vector<double>{1, 2, 3}, {3}, {DType::F64});
  EXPECT_EQ(ops::matmul(v, v).item(), 14);
  EXPECT_EQ(ops::matmul(zeros({2, 0}), zeros({0, 3})).to_vector(), std::vector<double>(6, 0.0));
}

TEST(ForwardSoftmax, MatchesLoopsAndIsStable) {
  for (DType dt : {DType::F64, DType::F32, DType::BF16}) {
    Tensor x = rnd({3, 4, 5}, 41, dt) * 4.0;
    auto v = x.to_vector();
    for (int64_t dim : {0, 1, 2}) {
      std::vector<double> ref(60), lref(60);
      int64_t strides[3] = {20, 5, 1}, sizes[3] = {3, 4, 5};
      for (int64_t e = 0; e < 60; ++e) {
        int64_t base = e - ((e / strides[dim]) % sizes[dim]) * strides[dim];
        double mx = -1e300, s = 0;
        for (int64_t j = 0; j < sizes[dim]; ++j) mx = std::max(mx, v[base + j * strides[dim]]);
        for (int64_t j = 0; j < sizes[dim]; ++j) s += std::exp(v[base + j * strides[dim]] - mx);
        ref[e] = std::exp(v[e] - mx) / s;
        lref[e] = v[e] - mx - std::log(s);
      }
      double t = dt == DType::BF16 ? 1e-2 : tol(dt);
      EXPECT_TRUE(all_close(ops::softmax(x, dim), from_vector(ref, {3, 4, 5}, {DType::F64}), t, t)) << dim;
      EXPECT_TRUE(all_close(ops::log_softmax(noncontig(x), dim), from_vector(lref, {3, 4, 5}, {DType::F64}), t * 4, t))
          << dim;
    }
  }
  Tensor big = from_vector(std::vector<double>{1000, 1001, -INFINITY}, {3}, {DType::F32});
  auto s = ops::softmax(big, 0).to_vector();
  EXPECT_NEAR(s[1], 1 / (1 + std::exp(-1.0)), 1e-6);
  EXPECT_EQ(s[2], 0.0);
}

TEST(ForwardNorm, LayerNormAndRmsNormMatchLoops) {
  for (DType dt : {DType::F64, DType::F32, DType::BF16}) {
    Tensor x = rnd({4, 6}, 51, dt) * 2.0 + 1.0, w = rnd({6}, 52, dt), b = rnd({6}, 53, dt);
    auto xv = x.to_vector(), wv = w.to_vector(), bv = b.to_vector();
    std::vector<double> ln(24), lnp(24), rms(24);
    for (int i = 0; i < 4; ++i) {
      double mu = 0, var = 0, ms = 0;
      for (int j = 0; j < 6; ++j) mu += xv[i * 6 + j] / 6;
      for (int j = 0; j < 6; ++j) var += (xv[i * 6 + j] - mu) * (xv[i * 6 + j] - mu) / 6;
      for (int j = 0; j < 6; ++j) ms += xv[i * 6 + j] * xv[i * 6 + j] / 6;
      for (int j = 0; j < 6; ++j) {
        double h = (xv[i * 6 + j] - mu) / std::sqrt(var + 1e-5);
        lnp[i * 6 + j] = h;
        ln[i * 6 + j] = h * wv[j] + bv[j];
        rms[i * 6 + j] = xv[i * 6 + j] / std::sqrt(ms + 1e-6) * wv[j];
      }
    }
    double t = dt == DType::BF16 ? 3e-2 : dt == DType::F32 ? 1e-5 : 1e-12;
    EXPECT_TRUE(all_close(ops::layer_norm(x, {6}, w, b), from_vector(ln, {4, 6}, {DType::F64}), t, t));
    EXPECT_TRUE(all_close(ops::layer_norm(noncontig(x), {6}), from_vector(lnp, {4, 6}, {DType::F64}), t, t));
    EXPECT_TRUE(all_close(ops::rms_norm(x, {6}, w), from_vector(rms, {4, 6}, {DType::F64}), t, t));
    // normalising over both dims equals normalising the flattened tensor
    EXPECT_TRUE(all_close(ops::layer_norm(x, {4, 6}), ops::reshape(ops::layer_norm(ops::reshape(x, {24}), {24}), {4, 6}),
                          t, t));
  }
}

TEST(ForwardIndex, SelectGatherScatterEmbedding) {
  Tensor x = ops::reshape(arange(0, 24, 1, {DType::F64}), {2, 3, 4});
  Tensor idx = from_vector(std::vector<int64_t>{2, 0, 2}, {3});
  Tensor s = ops::index_select(x, 1, idx);
  EXPECT_EQ(s.shape(), (Shape{2, 3, 4}));
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) EXPECT_EQ(s.at({i, j, k}), x.at({i, idx.at({j}) == 2 ? 2 : 0, k}));
  Tensor acc = ops::index_add(zeros({2, 3, 4}, {DType::F64}), 1, idx, ones({2, 3, 4}, {DType::F64}));
  EXPECT_EQ(acc.at({0, 2, 1}), 2);
  EXPECT_EQ(acc.at({1, 0, 3}), 1);
  EXPECT_EQ(acc.at({1, 1, 0}), 0);
  Generator gen(3);
  Tensor gidx = randint(0, 3, {2, 2, 4}, {DType::I64}, &gen);
  Tensor g = ops::gather(x, 1, gidx);
  Tensor src = rnd({2, 2, 4}, 61);
  Tensor sc = ops::scatter_add(zeros({2, 3, 4}, {DType::F64}), 1, gidx, src);
  std::vector<double> sref(24, 0.0);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 4; ++k) {
        int64_t r = static_cast<int64_t>(gidx.at({i, j, k}));
        EXPECT_EQ(g.at({i, j, k}), x.at({i, r, k}));
        sref[(i * 3 + r) * 4 + k] += src.at({i, j, k});
      }
  EXPECT_TRUE(all_close(sc, from_vector(sref, {2, 3, 4}, {DType::F64}), 1e-15, 0));
  Tensor w = rnd({5, 3}, 62);
  Tensor e = ops::embedding(w, from_vector(std::vector<int64_t>{4, 0, 4, 2}, {2, 2}));
  EXPECT_EQ(e.shape(), (Shape{2, 2, 3}));
  for (int k = 0; k < 3; ++k) {
    EXPECT_EQ(e.at({0, 0, k}), w.at({4, k}));
    EXPECT_EQ(e.at({1, 1, k}), w.at({2, k}));
  }
  // i32 indices are accepted; out-of-range and negative ones are errors naming the op
  EXPECT_EQ(ops::index_select(x, 0, from_vector(std::vector<int64_t>{1}, {1}, {DType::I32})).at({0, 0, 0}), 12);
  EXPECT_TRUE(test::throws_error([&] { ops::index_select(x, 1, from_vector(std::vector<int64_t>{3}, {1})); },
                                 {"index_select", "index 3", "size 3"}));
  EXPECT_TRUE(test::throws_error([&] { ops::embedding(w, from_vector(std::vector<int64_t>{-1}, {1})); },
                                 {"index -1"}));
  EXPECT_TRUE(test::throws_error([&] { ops::gather(x, 1, zeros({2, 2, 3}, {DType::I64})); },
                                 {"gather", "index shape"}));
}

TEST(ForwardShape, PadCatSplitStack) {
  Tensor x = ops::reshape(arange(1, 7, 1, {DType::F64}), {2, 3});
  Tensor p = ops::pad(x, {1, 0, 0, 2}, -1.0);
  EXPECT_EQ(p.shape(), (Shape{4, 4}));
  EXPECT_EQ(p.to_vector(), (std::vector<double>{-1, 1, 2, 3, -1, 4, 5, 6, -1, -1, -1, -1, -1, -1, -1, -1}));
  Tensor c = ops::cat({x, ops::mul(x, 10.0)}, 0);
  EXPECT_EQ(c.shape(), (Shape{4, 3}));
  EXPECT_EQ(c.at({3, 2}), 60);
  Tensor c1 = ops::cat({noncontig(x), x}, -1);
  EXPECT_EQ(c1.to_vector(), (std::vector<double>{1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6}));
  auto parts = ops::split(c1, std::vector<int64_t>{2, 4}, 1);
  EXPECT_EQ(parts[0].to_vector(), (std::vector<double>{1, 2, 4, 5}));
  EXPECT_EQ(parts[1].shape(), (Shape{2, 4}));
  auto ch = ops::chunk(arange(0, 7), 3, 0);
  ASSERT_EQ(ch.size(), 3u);
  EXPECT_EQ(ch[2].to_vector(), (std::vector<double>{6}));
  Tensor st = ops::stack({x, x * 2.0}, 2);
  EXPECT_EQ(st.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(st.at({1, 2, 1}), 12);
}

TEST(ForwardConv, Conv2dAndPoolMatchDirectLoops) {
  for (DType dt : {DType::F64, DType::F32, DType::BF16}) {
    const int N = 2, C = 3, H = 7, W = 6, O = 4, KH = 3, KW = 2, SH = 2, SW = 1, PH = 1, PW = 1;
    Tensor x = rnd({N, C, H, W}, 71, dt), w = rnd({O, C, KH, KW}, 72, dt), b = rnd({O}, 73, dt);
    Tensor y = ops::conv2d(x, w, b, {SH, SW, PH, PW});
    const int OH = (H + 2 * PH - KH) / SH + 1, OW = (W + 2 * PW - KW) / SW + 1;
    ASSERT_EQ(y.shape(), (Shape{N, O, OH, OW}));
    auto xv = x.to_vector(), wv = w.to_vector(), bv = b.to_vector();
    std::vector<double> ref(N * O * OH * OW);
    for (int n = 0; n < N; ++n)
      for (int o = 0; o < O; ++o)
        for (int oy = 0; oy < OH; ++oy)
          for (int ox = 0; ox < OW; ++ox) {
            double s = bv[o];
            for (int c = 0; c < C; ++c)
              for (int i = 0; i < KH; ++i)
                for (int j = 0; j < KW; ++j) {
                  int iy = oy * SH - PH + i, ix = ox * SW - PW + j;
                  if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                  s += xv[((n * C + c) * H + iy) * W + ix] * wv[((o * C + c) * KH + i) * KW + j];
                }
            ref[((n * O + o) * OH + oy) * OW + ox] = s;
          }
    double t = dt == DType::BF16 ? 5e-2 : dt == DType::F32 ? 1e-5 : 1e-12;
    EXPECT_TRUE(all_close(y, from_vector(ref, y.shape(), {DType::F64}), t, t)) << dtype_name(dt);
    // average pooling 3x3, stride 2, padding 1, zeros counted
    Tensor p = ops::avg_pool2d(noncontig(x), 3, 3, {2, 2, 1, 1});
    const int PHo = (H + 2 - 3) / 2 + 1, PWo = (W + 2 - 3) / 2 + 1;
    std::vector<double> pref(N * C * PHo * PWo);
    for (int nc = 0; nc < N * C; ++nc)
      for (int oy = 0; oy < PHo; ++oy)
        for (int ox = 0; ox < PWo; ++ox) {
          double s = 0;
          for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j) {
              int iy = oy * 2 - 1 + i, ix = ox * 2 - 1 + j;
              if (iy >= 0 && iy < H && ix >= 0 && ix < W) s += xv[(nc * H + iy) * W + ix];
            }
          pref[(nc * PHo + oy) * PWo + ox] = s / 9;
        }
    EXPECT_TRUE(all_close(p, from_vector(pref, p.shape(), {DType::F64}), t, t)) << dtype_name(dt);
  }
}

// im2col/col2im and avg_pool2d/its adjoint are transposes: <A x, y> = <x, A^T y>.
TEST(ForwardConv, AdjointPairs) {
  Tensor x = rnd({2, 3, 6, 5}, 81);
  ops::Conv2dOptions o{2, 1, 1, 2};
  Tensor cols = ops::im2col(x, 3, 2, o);
  Tensor y = rnd(cols.shape(), 82);
  double lhs = ops::sum(cols * y).item(), rhs = ops::sum(x * ops::col2im(y, x.shape(), 3, 2, o)).item();
  EXPECT_NEAR(lhs, rhs, 1e-10 * (1 + std::abs(lhs)));
  Tensor p = ops::avg_pool2d(x, 3, 2, o);
  Tensor z = rnd(p.shape(), 83);
  lhs = ops::sum(p * z).item();
  rhs = ops::sum(x * ops::avg_pool2d_adjoint(z, x.shape(), 3, 2, o)).item();
  EXPECT_NEAR(lhs, rhs, 1e-10 * (1 + std::abs(lhs)));
}

namespace {
// Attention in double with plain loops over [bh, s, d] data.
std::vector<double> attention_ref(const std::vector<double>& q, const std::vector<double>& k,
                                  const std::vector<double>& v, int64_t bh, int64_t sq, int64_t sk, int64_t d,
                                  int64_t dv, double scale) {
  std::vector<double> o(bh * sq * dv, 0.0), s(sk);
  for (int64_t b = 0; b < bh; ++b)
    for (int64_t i = 0; i < sq; ++i) {
      double mx = -1e300, sum = 0;
      for (int64_t j = 0; j < sk; ++j) {
        double acc = 0;
        for (int64_t t = 0; t < d; ++t) acc += q[(b * sq + i) * d + t] * k[(b * sk + j) * d + t];
        s[j] = acc * scale;
        mx = std::max(mx, s[j]);
      }
      for (int64_t j = 0; j < sk; ++j) sum += (s[j] = std::exp(s[j] - mx));
      for (int64_t j = 0; j < sk; ++j)
        for (int64_t t = 0; t < dv; ++t) o[(b * sq + i) * dv + t] += s[j] / sum * v[(b * sk + j) * dv + t];
    }
  return o;
}
double max_err(const Tensor& a, const std::vector<double>& ref) {
  auto v = a.to_vector();
  double e = 0;
  for (size_t i = 0; i < v.size(); ++i) e = std::max(e, std::abs(v[i] - ref[i]));
  return e;
}
}  // namespace

TEST(ForwardAttention, TiledAndNaiveMatchTheLoopReference) {
  // sequence lengths that are not multiples of the 32x64 tiles, and several key blocks
  struct Sz { int64_t b, h, sq, sk, d, dv; };
  for (Sz z : {Sz{1, 2, 37, 70, 16, 8}, Sz{2, 1, 5, 130, 8, 8}, Sz{1, 1, 65, 64, 32, 32}}) {
    const double scale = 1.0 / std::sqrt(double(z.d));
    Tensor q = rnd({z.b, z.h, z.sq, z.d}, 91), k = rnd({z.b, z.h, z.sk, z.d}, 92), v = rnd({z.b, z.h, z.sk, z.dv}, 93);
    auto ref = attention_ref(q.to_vector(), k.to_vector(), v.to_vector(), z.b * z.h, z.sq, z.sk, z.d, z.dv, scale);
    for (auto impl : {ops::AttentionImpl::Naive, ops::AttentionImpl::Tiled}) {
      Tensor o = ops::attention(q, k, v, scale, impl);
      EXPECT_EQ(o.shape(), (Shape{z.b, z.h, z.sq, z.dv}));
      EXPECT_LT(max_err(o, ref), 1e-12);
      Tensor of = ops::attention(ops::to(q, DType::F32), ops::to(noncontig(k), DType::F32), ops::to(v, DType::F32),
                                 scale, impl);
      EXPECT_LT(max_err(of, ref), 2e-6);
    }
    // bf16: the tiled kernel (f32 accumulation) is no worse than twice the naive bf16 composition
    Tensor qb = ops::to(q, DType::BF16), kb = ops::to(k, DType::BF16), vb = ops::to(v, DType::BF16);
    auto refb = attention_ref(qb.to_vector(), kb.to_vector(), vb.to_vector(), z.b * z.h, z.sq, z.sk, z.d, z.dv, scale);
    double e_tiled = max_err(ops::attention(qb, kb, vb, scale, ops::AttentionImpl::Tiled), refb);
    double e_naive = max_err(ops::attention(qb, kb, vb, scale, ops::AttentionImpl::Naive), refb);
    EXPECT_LE(e_tiled, 2 * e_naive + 1e-3) << "tiled " << e_tiled << " naive " << e_naive;
  }
}

TEST(ForwardAttention, TiledBackwardMatchesNaiveBackward) {
  Tensor q = rnd({2, 2, 45, 16}, 94), k = rnd({2, 2, 77, 16}, 95), v = rnd({2, 2, 77, 12}, 96);
  Tensor g = rnd({2, 2, 45, 12}, 97);
  std::vector<std::vector<Tensor>> grads;
  for (auto impl : {ops::AttentionImpl::Naive, ops::AttentionImpl::Tiled}) {
    Tensor qi = clone_raw(q), ki = clone_raw(k), vi = clone_raw(v);
    for (auto* t : {&qi, &ki, &vi}) t->requires_grad_(true);
    grads.push_back(grad({ops::attention(qi, ki, vi, 0.3, impl)}, {qi, ki, vi}, {g}));
  }
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(all_close(grads[1][i], grads[0][i], 1e-12, 1e-10)) << "input " << i;
}

// The fused gated residual equals x + gate·y composed of separate ops (f64 to rounding; f32 and
// bf16 within a unit of their precision, since the fused kernel rounds once).
TEST(ForwardNorm, GatedResidualEqualsTheComposition) {
  for (DType dt : {DType::F64, DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor x = ops::to(test::rnd({3, 7, 33}, 4), dt), g = ops::to(test::rnd({3, 33}, 5), dt), y = ops::to(test::rnd({3, 7, 33}, 6), dt);
    Tensor fused = ops::gated_residual(x, g, y);
    Tensor ref = ops::add(ops::to(x, DType::F64), ops::mul(ops::unsqueeze(ops::to(g, DType::F64), 1), ops::to(y, DType::F64)));
    const double tol = dt == DType::F64 ? 1e-15 : dt == DType::F32 ? 1e-6 : 8e-3;
    EXPECT_TRUE(test::all_close(ops::to(fused, DType::F64), ref, tol, tol));
  }
  EXPECT_TRUE(test::throws_error([] { ops::gated_residual(test::rnd({2, 3, 4}, 1), test::rnd({2, 4}, 2), test::rnd({2, 3, 5}, 3)); },
                                 {"gated_residual: need x, y [B, T, D] and gate [B, D]"}));
}

// The fused adaLN kernel equals its definition, layer_norm(x)·(1 + scale) + shift, composed of
// separate ops (f64 to rounding; f32 and bf16 within a few units of their precision).
TEST(ForwardNorm, LayerNormModulateEqualsTheComposition) {
  for (DType dt : {DType::F64, DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor x = ops::to(test::rnd({3, 7, 33}, 1), dt), s = ops::to(test::rnd({3, 33}, 2), dt), h = ops::to(test::rnd({3, 33}, 3), dt);
    Tensor fused = ops::layer_norm_modulate(x, s, h, 1e-6);
    Tensor x64 = ops::to(x, DType::F64);
    Tensor ref = ops::add(ops::mul(ops::layer_norm(x64, {33}, Tensor(), Tensor(), 1e-6), ops::add(ops::unsqueeze(ops::to(s, DType::F64), 1), 1.0)),
                          ops::unsqueeze(ops::to(h, DType::F64), 1));
    const double tol = dt == DType::F64 ? 1e-13 : dt == DType::F32 ? 1e-5 : 3e-2;
    EXPECT_TRUE(test::all_close(ops::to(fused, DType::F64), ref, tol, tol));
  }
  EXPECT_TRUE(test::throws_error([] { ops::layer_norm_modulate(test::rnd({2, 3, 4}, 1), test::rnd({2, 5}, 2), test::rnd({2, 5}, 3)); },
                                 {"layer_norm_modulate: need x [B, T, D] and scale, shift [B, D]"}));
}

// The fused LoRA linear equals its composition x·Wᵀ + bias + s·(x·Aᵀ)·Bᵀ, with and without bias, on
// leading batch dims, in f64 (to rounding), f32 and bf16 (within their precision); its explicit
// backward equals the composition's gradients in f64; bad shapes are refused by name.
TEST(ForwardLinalg, LoraLinearEqualsItsComposition) {
  for (DType dt : {DType::F64, DType::F32, DType::BF16}) {
    for (bool with_bias : {true, false}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + (with_bias ? " bias" : " no bias"));
      Tensor x = ops::to(test::rnd({2, 7, 33}, 51), dt), w = ops::to(test::rnd({19, 33}, 52), dt);
      Tensor bias = with_bias ? ops::to(test::rnd({19}, 53), dt) : Tensor();
      Tensor a = ops::to(test::rnd({4, 33}, 54), dt), b = ops::to(test::rnd({19, 4}, 55), dt);
      Tensor fused = ops::lora_linear(x, w, bias, a, b, 0.75);
      auto f64 = [](const Tensor& t) { return t.defined() ? ops::to(t, DType::F64) : t; };
      Tensor ref = ops::add(ops::matmul(f64(x), ops::transpose(f64(w), 0, 1)),
                            ops::mul(ops::matmul(ops::matmul(f64(x), ops::transpose(f64(a), 0, 1)), ops::transpose(f64(b), 0, 1)), 0.75));
      if (with_bias) ref = ops::add(ref, f64(bias));
      ASSERT_EQ(fused.shape(), (Shape{2, 7, 19}));
      const double tol = dt == DType::F64 ? 1e-12 : dt == DType::F32 ? 1e-5 : 5e-2;
      EXPECT_TRUE(test::all_close(ops::to(fused, DType::F64), ref, tol, tol));
    }
  }
  // gradients of every input against the composition's (f64)
  std::vector<Tensor> in = {test::rnd({3, 6}, 56), test::rnd({5, 6}, 57), test::rnd({5}, 58), test::rnd({2, 6}, 59),
                            test::rnd({5, 2}, 60)};
  Tensor r = test::rnd({3, 5}, 61);
  std::vector<Tensor> g[2];
  for (int fused = 0; fused < 2; ++fused) {
    std::vector<Tensor> p;
    for (auto& t : in) p.push_back(clone_raw(t).requires_grad_(true));
    Tensor y = fused ? ops::lora_linear(p[0], p[1], p[2], p[3], p[4], 2.0)
                     : ops::add(ops::add(ops::matmul(p[0], ops::transpose(p[1], 0, 1)), p[2]),
                                ops::mul(ops::matmul(ops::matmul(p[0], ops::transpose(p[3], 0, 1)), ops::transpose(p[4], 0, 1)), 2.0));
    g[fused] = grad({ops::sum(ops::mul(y, r))}, p);
  }
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(test::all_close(g[1][i], g[0][i], 1e-12, 1e-12)) << "input " << i;
  EXPECT_TRUE(test::throws_error([] { ops::lora_linear(test::rnd({2, 5}, 1), test::rnd({3, 5}, 2), Tensor(), test::rnd({2, 4}, 3), test::rnd({3, 2}, 4), 1.0); },
                                 {"lora_linear: shapes do not fit"}));
}

// BinaryOp::GeluTanhBwd (the GPU's one-pass GELU backward) is g·gelu'(x): on the CPU it must equal
// the composed rule mul(g, gelu_tanh_grad(x)) it replaces, in f64, broadcast g included.
TEST(ForwardKernels, GeluTanhBwdIsTheComposedGeluBackward) {
  Tensor g = test::rnd({5, 7}, 81), x = ops::mul(test::rnd({1, 7}, 82), 3.0);
  Tensor xe = ops::contiguous(ops::expand(x, {5, 7}));
  Tensor out = empty({5, 7}, DType::F64);
  get_kernel<kernels::BinaryKernel>(Device::cpu(), DType::F64)(
      kernels::BinaryOp::GeluTanhBwd, kernels::make_layout(g.shape(), g.strides()), g.data_ptr(),
      kernels::make_layout(xe.shape(), xe.strides()), xe.data_ptr(), out.data_ptr());
  Tensor ref = ops::mul(g, ops::detail::gelu_tanh_grad(xe));
  EXPECT_TRUE(test::all_close(out, ref, 1e-14, 1e-12));
  EXPECT_STREQ(kernels::binary_name(kernels::BinaryOp::GeluTanhBwd), "gelu_tanh_bwd");
  EXPECT_STREQ(kernels::binary_name(kernels::BinaryOp::Ge), "ge");  // the names after it still line up
}
