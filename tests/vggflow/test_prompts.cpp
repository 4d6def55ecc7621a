// The prompt encoder of the embedded default: shapes, gradients reach only the used rows,
// prompt dropout rate, names.
#include "autograd/engine.h"
#include "tests/support/test_support.h"
#include "vggflow/prompts.h"

namespace vgg::test {
namespace {

const std::vector<std::string> kClasses = {"t-shirt/top", "trouser", "pullover", "dress", "coat",
                                           "sandal",      "shirt",   "sneaker",  "bag",   "ankle boot"};

TEST(Prompts, EncodeShapesAndGradients) {
  Generator g(3);
  flow::PromptEncoder enc(11, 7, 64, 32, {DType::F64, Device::cpu(), &g});
  EXPECT_EQ(enc.empty_id(), 10);
  Tensor ids = from_vector(std::vector<int64_t>{2, 10, 2}, {3});
  flow::Conditioning c = enc.encode(ids);
  EXPECT_EQ(c.context.shape(), (Shape{3, 7, 64}));
  EXPECT_EQ(c.pooled.shape(), (Shape{3, 32}));
  EXPECT_TRUE(all_close(ops::narrow(c.context, 0, 0, 1), ops::narrow(c.context, 0, 2, 1), 0, 0));
  auto gr = grad({ops::add(ops::sum(c.context), ops::sum(c.pooled))}, {enc.tokens, enc.pooled});
  EXPECT_EQ(gr[1].at({2, 0}), 2.0);   // used twice
  EXPECT_EQ(gr[1].at({10, 5}), 1.0);  // the empty prompt once
  EXPECT_EQ(gr[1].at({0, 0}), 0.0);   // unused rows get nothing
  EXPECT_TRUE(throws_error([&] { enc.encode(from_vector(std::vector<int64_t>{11}, {1})); }, {"prompt id 11"}));
}

TEST(Prompts, DropoutRateAndNames) {
  Generator g(1);
  flow::PromptEncoder enc(11, 2, 4, 4);
  Tensor ids = full({20000}, 3.0, opts(DType::I64));
  Tensor d = enc.drop(ids, 0.1, g);
  int64_t dropped = 0;
  for (double v : d.to_vector()) {
    dropped += v == 10;
    ASSERT_TRUE(v == 10 || v == 3);
  }
  EXPECT_NEAR(static_cast<double>(dropped) / 20000.0, 0.1, 0.01);
  EXPECT_EQ(flow::prompt_id("bag", kClasses), 8);
  EXPECT_EQ(flow::prompt_id("", kClasses), 10);
  EXPECT_TRUE(throws_error([&] { flow::prompt_id("hat", kClasses); }, {"unknown prompt \"hat\"", "\"ankle boot\""}));
}

}  // namespace
}  // namespace vgg::test
