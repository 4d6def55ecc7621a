// Image ops (autograd/ops_image.cpp) beyond the op table and the golden files: properties of the
// interpolation matrices and the one-line refusals.
#include "autograd/ops.h"
#include "tensor/factory.h"
#include "tests/support/test_support.h"

using namespace vgg;
using test::all_close;
using test::rnd;
using test::throws_error;

TEST(ImageOps, ResizeMatricesArePartitionsOfUnityAndTheSameSizeIsTheIdentity) {
  for (auto mode : {ops::ResizeMode::Bilinear, ops::ResizeMode::Bicubic})
    for (bool aa : {false, true}) {
      for (auto [in, out] : std::vector<std::pair<int64_t, int64_t>>{{5, 9}, {13, 4}, {1024, 224}, {3, 1}, {1, 4}}) {
        Tensor m = ops::resize_matrix(in, out, mode, aa);
        ASSERT_EQ(m.shape(), (Shape{out, in}));
        EXPECT_TRUE(all_close(ops::sum(m, {1}), ones({out}, {DType::F64}), 1e-12, 0))
            << in << "->" << out << " aa " << aa;
      }
      Tensor id = ops::resize_matrix(7, 7, mode, aa);
      EXPECT_TRUE(all_close(id, eye(7, {DType::F64}), 1e-12, 0)) << "aa " << aa;
    }
  // resize2d to the same size returns the input
  Tensor x = rnd({2, 3, 5, 6}, 1);
  EXPECT_TRUE(all_close(ops::resize2d(x, 5, 6, ops::ResizeMode::Bicubic, true), x, 1e-12, 0));
}

TEST(ImageOps, BadInputsAreRefusedInOneLine) {
  Tensor x = rnd({2, 6, 4, 4}, 2);
  EXPECT_TRUE(throws_error([&] { ops::group_norm(x, 4); }, {"group_norm", "6 channels", "4 groups"}));
  EXPECT_TRUE(throws_error([&] { ops::group_norm(x, 3, rnd({5}, 3)); }, {"group_norm", "[6]", "[5]"}));
  EXPECT_TRUE(throws_error([&] { ops::group_norm(rnd({6}, 4), 3); }, {"group_norm", "[N, C, ...]"}));
  EXPECT_TRUE(throws_error([&] { ops::upsample_nearest2d(x, 0); }, {"upsample_nearest2d", "factor"}));
  EXPECT_TRUE(throws_error([&] { ops::resize2d(x, 0, 3, ops::ResizeMode::Bilinear); }, {"resize2d", "positive"}));
  EXPECT_TRUE(throws_error([&] { ops::resize2d(rnd({4}, 5), 2, 2, ops::ResizeMode::Bilinear); }, {"resize2d", "[..., H, W]"}));
}
