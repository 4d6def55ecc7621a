// Philox RNG: known-answer vectors, statistics, and independence from thread count.
#include <omp.h>

#include <cmath>

#include "kernels/rng.h"
#include "tests/support/test_support.h"

using namespace vgg;

TEST(Philox, KnownAnswerVectors) {
  // Random123 known-answer tests for philox4x32_10
  auto z = kernels::philox4x32_10(0, 0, 0, 0, 0, 0);
  EXPECT_EQ(z.v[0], 0x6627e8d5u);
  EXPECT_EQ(z.v[1], 0xe169c58du);
  EXPECT_EQ(z.v[2], 0xbc57ac4cu);
  EXPECT_EQ(z.v[3], 0x9b00dbd8u);
  auto f = kernels::philox4x32_10(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
  EXPECT_EQ(f.v[0], 0x408f276du);
  EXPECT_EQ(f.v[1], 0x41c83b0eu);
  EXPECT_EQ(f.v[2], 0xa20bc7c6u);
  EXPECT_EQ(f.v[3], 0x6d5451fdu);
  auto p = kernels::philox4x32_10(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u);
  EXPECT_EQ(p.v[0], 0xd16cfe09u);
  EXPECT_EQ(p.v[1], 0x94fdccebu);
  EXPECT_EQ(p.v[2], 0x5001e420u);
  EXPECT_EQ(p.v[3], 0x24126ea1u);
}

TEST(Rng, SameNumbersForAnyThreadCount) {
  const int saved = omp_get_max_threads();
  std::vector<double> ref;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    Generator g(42);
    auto v = randn({100003}, {DType::F32}, &g).to_vector();
    if (ref.empty())
      ref = v;
    else
      EXPECT_EQ(v, ref) << "threads " << threads;
  }
  omp_set_num_threads(saved);
}

TEST(Rng, DrawsAreASequenceOfBlocks) {
  // two draws of 6 then 10 values equal one draw of 8 + 12 split at block boundaries
  Generator g1(7), g2(7);
  auto a = rand({6}, {DType::F64}, &g1).to_vector();  // consumes 2 blocks (8 values)
  auto b = rand({10}, {DType::F64}, &g1).to_vector();
  auto all = rand({20}, {DType::F64}, &g2).to_vector();
  for (int i = 0; i < 6; ++i) EXPECT_EQ(a[i], all[i]);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(b[i], all[8 + i]);
  Generator g3(8);
  EXPECT_NE(rand({4}, {DType::F64}, &g3).to_vector(), std::vector<double>(all.begin(), all.begin() + 4));
}

TEST(Rng, Statistics) {
  Generator g(1);
  auto n = randn({200000}, {DType::F64}, &g).to_vector();
  double m = 0, s = 0;
  for (double v : n) m += v;
  m /= n.size();
  for (double v : n) s += (v - m) * (v - m);
  s = std::sqrt(s / n.size());
  EXPECT_NEAR(m, 0.0, 0.01);
  EXPECT_NEAR(s, 1.0, 0.01);
  auto u = rand({200000}, {DType::F32}, &g).to_vector();
  double um = 0, lo = 1, hi = 0;
  for (double v : u) {
    um += v;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  EXPECT_NEAR(um / u.size(), 0.5, 0.005);
  EXPECT_GE(lo, 0.0);
  EXPECT_LT(hi, 1.0);
  auto r = randint(-3, 4, {70000}, {DType::I64}, &g).to_vector();
  std::vector<int> counts(7, 0);
  for (double v : r) {
    ASSERT_GE(v, -3);
    ASSERT_LT(v, 4);
    counts[static_cast<int>(v) + 3]++;
  }
  for (int c : counts) EXPECT_NEAR(c, 10000, 500);
  EXPECT_TRUE(test::throws_error([] { randint(3, 3, {2}); }, {"randint", "low"}));
  EXPECT_TRUE(test::throws_error([] { randn({2}, {DType::I32}); }, {"randn", "floating"}));
}

TEST(Rng, DefaultGeneratorIsSeedable) {
  manual_seed(5);
  auto a = randn({8}).to_vector();
  manual_seed(5);
  auto b = randn({8}).to_vector();
  EXPECT_EQ(a, b);
}
