// Bad shapes, dtypes and devices: every op throws vgg::Error naming the op and the shapes.
#include "tests/support/test_support.h"

using namespace vgg;
using test::throws_error;

namespace {
Tensor f(Shape s) { return zeros(s); }
Tensor d(Shape s) { return zeros(s, {DType::F64}); }
}  // namespace

TEST(Errors, ElementwiseShapesAndDtypes) {
  EXPECT_TRUE(throws_error([] { ops::add(f({2, 3}), f({4})); }, {"add", "[2, 3]", "[4]", "broadcastable"}));
  EXPECT_TRUE(throws_error([] { ops::mul(f({2}), d({2})); }, {"mul", "dtype mismatch", "f32[2]", "f64[2]"}));
  EXPECT_TRUE(throws_error([] { ops::maximum(f({3}), f({2})); }, {"maximum", "[3]", "[2]"}));
  EXPECT_TRUE(throws_error([] { ops::lt(f({3}), zeros({3}, {DType::I32})); }, {"lt", "dtype mismatch"}));
  EXPECT_TRUE(throws_error([] { ops::exp(zeros({2}, {DType::I64})); }, {"exp", "floating", "i64[2]"}));
  EXPECT_TRUE(throws_error([] { ops::where(f({2}), f({2}), f({2})); }, {"where", "bool"}));
  EXPECT_TRUE(throws_error([] { ops::where(ops::gt(f({2}), f({2})), f({2}), f({3})); }, {"where", "[2]", "[3]"}));
  EXPECT_TRUE(throws_error([] { ops::clamp(f({2}), 1, 0); }, {"clamp", "above"}));
  EXPECT_TRUE(throws_error([] { ops::add(Tensor(), f({2})); }, {"add", "undefined"}));
}

TEST(Errors, ReductionsAndShapes) {
  EXPECT_TRUE(throws_error([] { ops::sum(f({2, 3}), {2}); }, {"sum", "dim 2", "out of range"}));
  EXPECT_TRUE(throws_error([] { ops::sum(f({2, 3}), {1, -1}); }, {"sum", "repeats"}));
  EXPECT_TRUE(throws_error([] { ops::var(f({1}), {0}); }, {"var", "degrees of freedom"}));
  EXPECT_TRUE(throws_error([] { ops::norm(f({2}), 3.0); }, {"norm", "p = 3"}));
  EXPECT_TRUE(throws_error([] { ops::cat({f({2, 3}), f({3, 3})}, 1); }, {"cat", "[3, 3]", "[2, 3]"}));
  EXPECT_TRUE(throws_error([] { ops::cat({f({2}), d({2})}, 0); }, {"cat", "dtype mismatch"}));
  EXPECT_TRUE(throws_error([] { ops::stack({f({2}), f({3})}, 0); }, {"stack", "[3]", "[2]"}));
  EXPECT_TRUE(throws_error([] { ops::split(f({5}), std::vector<int64_t>{2, 2}, 0); }, {"split", "sum to 4"}));
  EXPECT_TRUE(throws_error([] { ops::pad(f({2}), {1}); }, {"pad", "even"}));
  EXPECT_TRUE(throws_error([] { ops::pad(f({2}), {-1, 0}); }, {"pad", "negative"}));
  EXPECT_TRUE(throws_error([] { ops::transpose(f({2, 3}), 0, 2); }, {"transpose", "out of range"}));
}

TEST(Errors, LinalgAndNn) {
  EXPECT_TRUE(throws_error([] { ops::matmul(f({2, 3}), f({4, 5})); }, {"matmul", "[2, 3]", "[4, 5]", "3 != 4"}));
  EXPECT_TRUE(throws_error([] { ops::matmul(f({2, 2, 3}), f({3, 3, 4})); }, {"matmul", "broadcastable"}));
  EXPECT_TRUE(throws_error([] { ops::matmul(f({2, 3}), d({3, 4})); }, {"matmul", "dtype mismatch"}));
  EXPECT_TRUE(throws_error([] { ops::matmul(zeros({2, 2}, {DType::I32}), zeros({2, 2}, {DType::I32})); },
                           {"matmul", "floating"}));
  EXPECT_TRUE(throws_error([] { ops::softmax(f({2, 3}), 2); }, {"softmax", "dim 2"}));
  EXPECT_TRUE(throws_error([] { ops::layer_norm(f({2, 3}), {4}); }, {"layer_norm", "normalized_shape [4]", "[2, 3]"}));
  EXPECT_TRUE(throws_error([] { ops::layer_norm(f({2, 3}), {3}, f({4})); }, {"layer_norm", "weight", "[4]"}));
  EXPECT_TRUE(throws_error([] { ops::layer_norm(f({2, 3}), {3}, d({3})); }, {"layer_norm", "dtype mismatch"}));
  EXPECT_TRUE(throws_error([] { ops::rms_norm(f({2, 3}), {3}, f({2})); }, {"rms_norm", "weight", "[2]"}));
  EXPECT_TRUE(throws_error([] { ops::index_select(f({2, 3}), 0, f({1})); }, {"index_select", "i64 or i32"}));
  EXPECT_TRUE(throws_error([] { ops::embedding(f({3}), zeros({1}, {DType::I64})); }, {"embedding", "[num_embeddings"}));
  EXPECT_TRUE(throws_error([] { ops::scatter_add(f({2, 3}), 1, zeros({2, 2}, {DType::I64}), f({2, 3})); },
                           {"scatter_add", "source shape"}));
}

TEST(Errors, ConvPoolAttention) {
  EXPECT_TRUE(throws_error([] { ops::conv2d(f({1, 3, 8, 8}), f({4, 2, 3, 3})); }, {"conv2d", "input channels"}));
  EXPECT_TRUE(throws_error([] { ops::conv2d(f({3, 8, 8}), f({4, 3, 3, 3})); }, {"conv2d", "[N, C, H, W]", "[3, 8, 8]"}));
  EXPECT_TRUE(throws_error([] { ops::conv2d(f({1, 1, 2, 2}), f({1, 1, 3, 3})); }, {"conv2d", "larger than"}));
  EXPECT_TRUE(throws_error([] { ops::conv2d(f({1, 1, 4, 4}), f({2, 1, 3, 3}), f({3})); }, {"conv2d", "bias", "[3]"}));
  EXPECT_TRUE(throws_error([] { ops::conv2d(f({1, 1, 4, 4}), f({1, 1, 3, 3}), {}, {0, 1, 0, 0}); }, {"stride"}));
  EXPECT_TRUE(throws_error([] { ops::avg_pool2d(f({1, 1, 4, 4}), 5, 5); }, {"avg_pool2d", "larger than"}));
  EXPECT_TRUE(throws_error([] { ops::attention(f({2, 4, 8}), f({2, 5, 7}), f({2, 5, 8}), 1.0); },
                           {"attention", "[2, 4, 8]", "[2, 5, 7]"}));
  EXPECT_TRUE(throws_error([] { ops::attention(f({2, 4, 8}), f({2, 0, 8}), f({2, 0, 8}), 1.0); },
                           {"attention", "key length is 0"}));
  EXPECT_TRUE(throws_error([] { ops::attention(f({4, 8}), d({5, 8}), f({5, 8}), 1.0); }, {"attention", "dtype"}));
}

TEST(Errors, DevicesAreChecked) {
  // a CUDA tensor cannot be created without a usable GPU; the error names the device
  if (cuda_device_count() == 0)
    EXPECT_TRUE(throws_error([] { ops::to(f({2}), Device::cuda(0)); }, {"cuda:0", "not available"}));
  EXPECT_TRUE(throws_error([] { ops::to(f({2}), Device::cuda(7)); }, {"cuda:7"}));
}
