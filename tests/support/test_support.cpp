#include "tests/support/test_support.h"

#include <cmath>
#include <sstream>

namespace vgg::test {

Tensor rnd(const Shape& shape, uint64_t seed, DType dtype) {
  Generator g(seed);
  return randn(shape, {dtype}, &g);
}

Tensor rnd_uniform(const Shape& shape, double lo, double hi, uint64_t seed, DType dtype) {
  Generator g(seed);
  return uniform(shape, lo, hi, {dtype}, &g);
}

Tensor noncontig(const Tensor& t) {
  Shape big = t.shape();
  big.push_back(2);
  Tensor buf = full(big, NAN, {t.dtype(), t.device()});
  Strides st = contiguous_strides(t.shape());
  for (auto& s : st) s *= 2;
  Tensor v = as_strided_view(buf, t.shape(), st, 1);
  copy_into(v, t);
  return v;
}

::testing::AssertionResult all_close(const Tensor& a, const Tensor& ref, double atol, double rtol) {
  if (!a.defined() || !ref.defined()) return ::testing::AssertionFailure() << "undefined tensor";
  if (a.shape() != ref.shape())
    return ::testing::AssertionFailure() << "shape " << shape_str(a.shape()) << " vs reference "
                                         << shape_str(ref.shape());
  auto av = a.to_vector(), rv = ref.to_vector();
  double worst = -1;
  size_t wi = 0;
  bool ok = true;
  for (size_t i = 0; i < av.size(); ++i) {
    double err = std::abs(av[i] - rv[i]);
    bool good = err <= atol + rtol * std::abs(rv[i]) || (std::isnan(av[i]) && std::isnan(rv[i])) ||
                (std::isinf(av[i]) && av[i] == rv[i]);
    if (!good) {
      ok = false;
      double excess = std::isnan(err) ? INFINITY : err - rtol * std::abs(rv[i]);
      if (excess > worst) {
        worst = excess;
        wi = i;
      }
    }
  }
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "element " << wi << ": " << av[wi] << " vs reference " << rv[wi]
                                       << " (atol " << atol << ", rtol " << rtol << ")";
}

double grad_abs_sum(const std::vector<Tensor>& params) {
  double s = 0;
  for (const auto& p : params)
    if (p.grad().defined()) s += ops::sum(ops::abs(ops::to(p.grad(), DType::F64))).item();
  return s;
}

std::string data_path(const std::string& relative) { return std::string(VGG_TEST_DATA_DIR) + "/" + relative; }

}  // namespace vgg::test
