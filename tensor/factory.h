// Creation, copy and conversion without autograd history. The differentiable versions of
// contiguous/to live in vgg::ops.
#pragma once
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace vgg {

struct TensorOptions {
  DType dtype = DType::F32;
  Device device = Device::cpu();
};
inline TensorOptions opts(DType d, Device dev = Device::cpu()) { return {d, dev}; }

Tensor zeros(const Shape& shape, TensorOptions o = {});
Tensor ones(const Shape& shape, TensorOptions o = {});
Tensor full(const Shape& shape, double value, TensorOptions o = {});
Tensor scalar_tensor(double value, TensorOptions o = {});  // 0-dim
Tensor arange(double start, double end, double step = 1.0, TensorOptions o = {});
Tensor linspace(double start, double end, int64_t steps, TensorOptions o = {});
Tensor eye(int64_t n, TensorOptions o = {});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);

// Values are converted to the requested dtype (default: f32 for double, the matching type otherwise).
Tensor from_vector(const std::vector<double>& values, const Shape& shape, TensorOptions o = {});
Tensor from_vector(const std::vector<float>& values, const Shape& shape, TensorOptions o = {});
Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape, TensorOptions o = {DType::I64});

// Philox draws; the generator advances. Without a generator, the default one is used.
Tensor rand(const Shape& shape, TensorOptions o = {}, Generator* g = nullptr);   // U[0, 1)
Tensor randn(const Shape& shape, TensorOptions o = {}, Generator* g = nullptr);  // N(0, 1)
Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions o = {DType::I64}, Generator* g = nullptr);
Tensor uniform(const Shape& shape, double low, double high, TensorOptions o = {}, Generator* g = nullptr);

// dst (any strides) <- src broadcast to dst's shape, converting dtype. Bumps dst's version.
void copy_into(const Tensor& dst, const Tensor& src);
void fill_(const Tensor& t, double value);  // in place; bumps the version
Tensor clone_raw(const Tensor& t);                // contiguous copy, same dtype
Tensor contiguous_raw(const Tensor& t);           // t itself when already contiguous
Tensor cast_raw(const Tensor& t, DType dtype);    // contiguous copy in dtype (t itself when equal)
Tensor to_device_raw(const Tensor& t, Device d);  // copy to another device (t itself when equal)
// Broadcast view (stride 0) of t to `shape`; throws naming `op` when not broadcastable.
Tensor expand_raw(const Tensor& t, const Shape& shape, const char* op);

}  // namespace vgg
