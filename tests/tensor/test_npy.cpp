// .npy round trips and rejection of bad files.
#include <cstdio>
#include <fstream>

#include "tensor/npy.h"
#include "tests/support/test_support.h"

using namespace vgg;

namespace {
std::string tmp_path(const std::string& name) {
  return std::string(::testing::TempDir()) + "/vgg_npy_" + name;
}
}  // namespace

TEST(Npy, RoundTripAllDtypes) {
  for (DType dt : {DType::F32, DType::F64, DType::I32, DType::I64, DType::Bool}) {
    Tensor x = ops::to(test::rnd({3, 4}, 3) * 3.0, dt);
    std::string p = tmp_path(dtype_name(dt));
    save_npy(p, ops::transpose(x, 0, 1));  // non-contiguous input is written in logical order
    Tensor y = load_npy(p);
    EXPECT_EQ(y.dtype(), dt);
    EXPECT_EQ(y.shape(), (Shape{4, 3}));
    EXPECT_EQ(y.to_vector(), ops::transpose(x, 0, 1).to_vector());
    std::remove(p.c_str());
  }
  Tensor s = scalar_tensor(2.5, {DType::F64});
  save_npy(tmp_path("scalar"), s);
  EXPECT_EQ(load_npy(tmp_path("scalar")).item(), 2.5);
  Tensor v = arange(0, 5, 1, {DType::I64});
  save_npy(tmp_path("vec"), v);
  EXPECT_EQ(load_npy(tmp_path("vec")).shape(), (Shape{5}));
}

TEST(Npy, RejectsBadFiles) {
  EXPECT_TRUE(test::throws_error([] { load_npy("/nonexistent/x.npy"); }, {"cannot open", "/nonexistent/x.npy"}));
  std::string p = tmp_path("bad");
  { std::ofstream(p) << "hello world, not numpy"; }
  EXPECT_TRUE(test::throws_error([&] { load_npy(p); }, {"not a .npy file"}));
  // truncated data
  Tensor x = zeros({100}, {DType::F64});
  save_npy(p, x);
  {
    std::ifstream in(p, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), {});
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(all.data(), static_cast<std::streamsize>(all.size() - 16));
  }
  EXPECT_TRUE(test::throws_error([&] { load_npy(p); }, {"truncated", "offset"}));
  std::remove(p.c_str());
}
