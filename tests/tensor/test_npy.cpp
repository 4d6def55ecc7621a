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

namespace {
// a .npy file with the given header dict and raw data bytes (version 1.0)
std::string write_npy(const std::string& name, const std::string& dict, const std::string& data) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64 != 0) h += ' ';
  h += '\n';
  std::string p = tmp_path(name);
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write("\x93NUMPY\x01\x00", 8);
  const uint16_t hl = static_cast<uint16_t>(h.size());
  out.write(reinterpret_cast<const char*>(&hl), 2);
  out << h << data;
  return p;
}
}  // namespace

// A header is checked against the file before anything is allocated: a 128-byte file cannot make the
// reader ask for 16 GB, an overflowing shape product cannot leave a 16-byte buffer behind a huge
// tensor, and bool elements are 0 or 1 (regressions of the hostile-input review).
TEST(Npy, HeaderIsCheckedAgainstTheFileBeforeAllocating) {
  const std::string eight(8, '\0');
  std::string p = write_npy("huge", "{'descr': '<f8', 'fortran_order': False, 'shape': (2000000000,), }", eight);
  EXPECT_TRUE(test::throws_error([&] { load_npy(p); }, {"truncated", "16000000000", "the file has 8"}));
  p = write_npy("overflow", "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 2), }", eight);
  EXPECT_TRUE(test::throws_error([&] { load_npy(p); }, {"overflows"}));
  p = write_npy("overflow_bytes", "{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,), }", eight);
  EXPECT_TRUE(test::throws_error([&] { load_npy(p); }, {"byte size overflows"}));
  p = write_npy("negative", "{'descr': '<f8', 'fortran_order': False, 'shape': (-1, 2), }", eight);
  EXPECT_TRUE(test::throws_error([&] { load_npy(p); }, {"negative dimension"}));
  p = write_npy("bool2", "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", std::string("\x01\x02\x00", 3));
  EXPECT_TRUE(test::throws_error([&] { load_npy(p); }, {"bool element 1", "byte value 2"}));
  p = write_npy("bool_ok", "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", std::string("\x01\x00\x01", 3));
  EXPECT_EQ(load_npy(p).to_vector(), (std::vector<double>{1, 0, 1}));
  p = write_npy("dims", "{'descr': '<f8', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", eight);
  EXPECT_TRUE(test::throws_error([&] { load_npy(p); }, {"9 dims"}));
}
