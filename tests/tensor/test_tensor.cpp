// Tensor layer: dtypes, shapes, views, creation, element access, printing, devices.
#include <cmath>
#include <map>
#include <string>

#include "kernels/softmax.h"
#include "tensor/dispatch.h"
#include "tests/support/test_support.h"

using namespace vgg;
using vgg::test::throws_error;

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(bf16(1.0f).bits, 0x3f80);
  // 1 + 2^-8 lies exactly between two bf16 values: ties go to the even mantissa (1.0)
  EXPECT_EQ(bf16(1.00390625f).bits, 0x3f80);
  // 1 + 3*2^-8 is a tie between 1+2^-7 (odd) and 1+2^-6 (even)
  EXPECT_EQ(static_cast<float>(bf16(1.01171875f)), 1.015625f);
  EXPECT_EQ(static_cast<float>(bf16(1.0f + 1.5f / 256)), 1.0078125f);  // above the tie: rounds up
  EXPECT_TRUE(std::isnan(static_cast<float>(bf16(NAN))));
  EXPECT_TRUE(std::isinf(static_cast<float>(bf16(INFINITY))));
  EXPECT_EQ(static_cast<float>(bf16(-2.5f)), -2.5f);
}

TEST(DType, NamesAndSizes) {
  EXPECT_EQ(itemsize(DType::BF16), 2u);
  EXPECT_EQ(itemsize(DType::F64), 8u);
  EXPECT_EQ(dtype_from_name("float32"), DType::F32);
  EXPECT_EQ(dtype_from_name("bf16"), DType::BF16);
  EXPECT_TRUE(throws_error([] { dtype_from_name("f17"); }, {"unknown dtype", "f17"}));
}

TEST(Shape, Broadcast) {
  EXPECT_EQ(broadcast_shapes({3, 1, 5}, {4, 5}, "t"), (Shape{3, 4, 5}));
  EXPECT_EQ(broadcast_shapes({}, {2}, "t"), (Shape{2}));
  EXPECT_TRUE(throws_error([] { broadcast_shapes({3, 2}, {4, 2}, "add"); }, {"add", "[3, 2]", "[4, 2]"}));
  EXPECT_TRUE(throws_error([] { empty({1, 1, 1, 1, 1, 1, 1, 1, 1}); }, {"more than 8 dims"}));
  EXPECT_TRUE(throws_error([] { empty({2, -1}); }, {"negative"}));
}

TEST(Tensor, CreationAndAccess) {
  Tensor z = zeros({2, 3});
  EXPECT_EQ(z.numel(), 6);
  EXPECT_TRUE(z.is_contiguous());
  EXPECT_EQ(z.strides(), (Strides{3, 1}));
  for (double v : z.to_vector()) EXPECT_EQ(v, 0.0);
  Tensor f = full({2}, 2.5, {DType::F64});
  EXPECT_EQ(f.at({1}), 2.5);
  Tensor a = arange(0, 5);
  EXPECT_EQ(a.to_vector(), (std::vector<double>{0, 1, 2, 3, 4}));
  EXPECT_EQ(arange(1, 2, 0.25, {DType::F64}).to_vector(), (std::vector<double>{1, 1.25, 1.5, 1.75}));
  Tensor l = linspace(0, 1, 5, {DType::F64});
  EXPECT_EQ(l.to_vector(), (std::vector<double>{0, 0.25, 0.5, 0.75, 1}));
  Tensor e = eye(3, {DType::I32});
  EXPECT_EQ(e.at({1, 1}), 1);
  EXPECT_EQ(e.at({1, 2}), 0);
  Tensor v = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(v.dtype(), DType::F32);
  EXPECT_EQ(v.at({1, 0}), 4);
  EXPECT_EQ(v.at({-1, -1}), 6);
  EXPECT_TRUE(throws_error([&] { v.at({2, 0}); }, {"out of range"}));
  EXPECT_TRUE(throws_error([&] { v.item(); }, {"item", "6 elements"}));
  EXPECT_TRUE(throws_error([] { from_vector(std::vector<double>{1, 2, 3}, {2, 2}); }, {"from_vector", "[2, 2]"}));
  Tensor s = scalar_tensor(7, {DType::I64});
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.item(), 7);
  const int64_t before = v.version();
  v.set({0, 0}, 9);
  EXPECT_EQ(v.at({0, 0}), 9);
  EXPECT_EQ(v.version(), before + 1);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor x = from_vector(std::vector<double>{0, 1, 2, 3, 4, 5}, {2, 3}, {DType::F64});
  Tensor t = ops::transpose(x, 0, 1);
  EXPECT_EQ(t.shape(), (Shape{3, 2}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.at({2, 1}), 5);
  EXPECT_EQ(t.storage(), x.storage());
  Tensor n = ops::narrow(x, 1, 1, 2);
  EXPECT_EQ(n.to_vector(), (std::vector<double>{1, 2, 4, 5}));
  Tensor e = ops::expand(ops::unsqueeze(ops::narrow(x, 0, 0, 1), 0), {2, 1, 3});
  EXPECT_EQ(e.strides()[0], 0);
  EXPECT_EQ(e.to_vector(), (std::vector<double>{0, 1, 2, 0, 1, 2}));
  x.set({0, 1}, 10);  // visible through every view
  EXPECT_EQ(t.at({1, 0}), 10);
  EXPECT_EQ(n.at({0, 0}), 10);
  Tensor c = ops::contiguous(t);
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_NE(c.storage(), x.storage());
  EXPECT_EQ(c.to_vector(), t.to_vector());
  // view of a transposed tensor that cannot be expressed without a copy
  EXPECT_TRUE(throws_error([&] { ops::view(t, {6}); }, {"view", "reshape"}));
  Tensor r = ops::reshape(t, {6});
  EXPECT_EQ(r.to_vector(), (std::vector<double>{0, 3, 10, 4, 2, 5}));
  // view that merges only compatible dims works without a copy
  Tensor p = ops::permute(ops::reshape(arange(0, 24, 1, {DType::F64}), {2, 3, 4}), {1, 0, 2});
  Tensor pv = ops::view(p, {3, 2, 2, 2});
  EXPECT_EQ(pv.storage(), p.storage());
  EXPECT_EQ(pv.at({1, 1, 0, 1}), p.at({1, 1, 1}));
  EXPECT_EQ(ops::flatten(ops::reshape(arange(0, 24), {2, 3, 4}), 1).shape(), (Shape{2, 12}));
  EXPECT_EQ(ops::squeeze(zeros({1, 3, 1})).shape(), (Shape{3}));
  EXPECT_EQ(ops::squeeze(zeros({1, 3, 1}), -1).shape(), (Shape{1, 3}));
  EXPECT_EQ(ops::slice(arange(0, 10), 0, -3, 100).to_vector(), (std::vector<double>{7, 8, 9}));
  EXPECT_EQ(ops::reshape(arange(0, 6), {-1, 2}).shape(), (Shape{3, 2}));
  EXPECT_TRUE(throws_error([] { ops::reshape(arange(0, 6), {4, -1}); }, {"reshape", "[6]", "[4, -1]"}));
  EXPECT_TRUE(throws_error([] { ops::permute(zeros({2, 3}), {0, 0}); }, {"permute", "repeats"}));
  EXPECT_TRUE(throws_error([] { ops::narrow(zeros({2, 3}), 1, 2, 2); }, {"narrow", "out of bounds"}));
  EXPECT_TRUE(throws_error([] { ops::expand(zeros({2, 3}), {4, 3}); }, {"expand", "[2, 3]", "[4, 3]"}));
}

TEST(Tensor, CastAndCopy) {
  Tensor x = from_vector(std::vector<double>{1.5, -2.25, 3.0}, {3}, {DType::F64});
  Tensor i = ops::to(x, DType::I32);
  EXPECT_EQ(i.to_vector(), (std::vector<double>{1, -2, 3}));
  Tensor b = ops::to(x, DType::BF16);
  EXPECT_EQ(b.to_vector(), (std::vector<double>{1.5, -2.25, 3.0}));
  Tensor bo = ops::to(x, DType::Bool);
  EXPECT_EQ(bo.to_vector(), (std::vector<double>{1, 1, 1}));
  Tensor dst = zeros({2, 3}, {DType::F64});
  copy_into(dst, x);  // broadcast rows
  EXPECT_EQ(dst.to_vector(), (std::vector<double>{1.5, -2.25, 3, 1.5, -2.25, 3}));
  Tensor d = x.detach();
  EXPECT_EQ(d.storage(), x.storage());
  EXPECT_FALSE(d.requires_grad());
}

TEST(Tensor, PrintShowsShapeDtypeAndValues) {
  Tensor x = from_vector(std::vector<double>{1, 2}, {2}, {DType::F64});
  std::string s = x.str();
  EXPECT_NE(s.find("f64[2] cpu"), std::string::npos) << s;
  EXPECT_NE(s.find("1, 2"), std::string::npos) << s;
  Tensor big = zeros({40});
  EXPECT_NE(big.str().find("40 values"), std::string::npos);
}

TEST(Device, ParseAndCudaStub) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_EQ(Device::parse("cuda:1"), Device::cuda(1));
  EXPECT_TRUE(throws_error([] { Device::parse("gpu"); }, {"invalid device", "gpu"}));
  EXPECT_TRUE(throws_error([] { Device::parse("cuda:x"); }, {"invalid device"}));
  if (cuda_device_count() == 0) {
    // without a usable GPU (or without CUDA) a CUDA tensor is refused with the reason
    EXPECT_TRUE(throws_error([] { zeros({2}, {DType::F32, Device::cuda(0)}); }, {"cuda:0", "not available"}));
  }
}

TEST(Dispatch, MissingKernelNamesOpDeviceAndDtype) {
  // the registry is typed: an op that does not exist, or a kernel of the wrong signature, does not
  // compile; what remains at run time is a dtype or device without an implementation
  EXPECT_TRUE(throws_error([] { get_kernel<kernels::SoftmaxKernel>(Device::cuda(0), DType::I64); },
                           {"op 'softmax'", "CUDA", "i64"}));
  EXPECT_TRUE(throws_error([] { get_kernel<kernels::SoftmaxKernel>(Device::cpu(), DType::Bool); },
                           {"op 'softmax'", "CPU", "bool"}));
  EXPECT_TRUE(has_kernel<kernels::SoftmaxKernel>(Device::cpu(), DType::F32));
  EXPECT_TRUE(has_kernel<kernels::SoftmaxKernel>(Device::fake(), DType::F32));  // the fake device runs the CPU's
  EXPECT_NE(find_kernel("softmax", DeviceType::CPU, DType::F32), nullptr);
  EXPECT_EQ(find_kernel("no_such_op", DeviceType::CPU, DType::F32), nullptr);
  // every registration is listed once per (op, device, dtype)
  int softmax_cpu = 0;
  for (const auto& e : registered_kernels())
    if (std::string(e.op) == "softmax" && e.dev == DeviceType::CPU) ++softmax_cpu;
  EXPECT_EQ(softmax_cpu, 3);
}

TEST(Profile, TimesEveryKernelCallWithItsBytes) {
  profile::set_enabled(true);
  profile::reset();
  Tensor a = full({64, 32}, 1.0), b = full({1, 32}, 2.0);  // two fills
  Tensor c = ops::mul(a, b);                               // one broadcast binary
  (void)ops::sum(c, {0}, false);                           // one reduction
  profile::set_enabled(false);
  (void)ops::mul(a, b);  // not counted
  std::map<std::string, profile::Row> by_op;
  for (const auto& r : profile::rows()) by_op[r.op] = r;
  ASSERT_TRUE(by_op.count("binary:mul") && by_op.count("fill") && by_op.count("reduce"));
  EXPECT_EQ(by_op["binary:mul"].calls, 1);
  EXPECT_EQ(by_op["binary:mul"].dev, DeviceType::CPU);
  EXPECT_DOUBLE_EQ(by_op["binary:mul"].bytes, (64 * 32 + 32 + 64 * 32) * 4.0);  // a, the broadcast row once, out
  EXPECT_EQ(by_op["fill"].calls, 2);
  EXPECT_DOUBLE_EQ(by_op["fill"].bytes, (64 * 32 + 32) * 4.0);
  EXPECT_DOUBLE_EQ(by_op["reduce"].bytes, (64 * 32 + 32) * 4.0);
  EXPECT_GE(by_op["binary:mul"].ms, 0.0);
  const std::string t = profile::table();
  EXPECT_NE(t.find("| binary:mul | cpu | f32 | 1 |"), std::string::npos) << t;
  EXPECT_NE(t.find("kernel calls"), std::string::npos);
  profile::reset();
  EXPECT_TRUE(profile::table().empty());
}
