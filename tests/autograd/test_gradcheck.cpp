// f64 gradcheck and gradgradcheck for the op table's cases that carry them (tests/support/op_table.cpp);
// fused ops whose backward is not differentiable (the tiled attention kernel, the fused LoRA
// linear) must refuse double backward.
#include <cmath>

#include "autograd/ops_util.h"
#include "tests/support/op_table.h"
#include "tests/support/test_support.h"

using namespace vgg;
using test::rnd;
using test::rnd_uniform;

namespace {

using test::OpCase;

// the op table's cases (tests/support/op_table.cpp) that carry these checks
std::vector<OpCase> grad_cases() { return test::op_cases_with(test::kGrad); }
std::vector<OpCase> gradgrad_cases() {
  std::vector<OpCase> r;
  for (const auto& c : test::op_cases())
    if (c.checks & (test::kGradGrad | test::kRefusesGradGrad)) r.push_back(c);
  return r;
}

class GradcheckOps : public ::testing::TestWithParam<OpCase> {};
class GradGradcheckOps : public ::testing::TestWithParam<OpCase> {};

}  // namespace

TEST_P(GradcheckOps, MatchesCentralDifferences) {
  const OpCase& c = GetParam();
  EXPECT_GRADCHECK(gradcheck(c.fn, c.inputs(), c.grad_opt));
}

TEST_P(GradGradcheckOps, SecondDerivativesMatch) {
  const OpCase& c = GetParam();
  if (c.checks & test::kRefusesGradGrad) {
    // fused kernels must refuse double backward, never return a gradient without history
    auto in = c.inputs();
    for (auto& t : in) t.requires_grad_(true);
    Tensor y = c.fn(in);
    EXPECT_TRUE(test::throws_error([&] { grad({ops::sum(y)}, in, {}, /*create_graph=*/true); },
                                   {"double backward", "not supported"}));
    return;
  }
  EXPECT_GRADCHECK(gradgradcheck(c.fn, c.inputs(), c.grad_opt));
}

static std::string case_name(const ::testing::TestParamInfo<OpCase>& i) { return i.param.name; }
INSTANTIATE_TEST_SUITE_P(Gradcheck, GradcheckOps, ::testing::ValuesIn(grad_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(GradGrad, GradGradcheckOps, ::testing::ValuesIn(gradgrad_cases()), case_name);
