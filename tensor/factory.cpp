#include "tensor/factory.h"

#include <cmath>

#include "kernels/elementwise.h"
#include "kernels/rng.h"
#include "tensor/dispatch.h"
#include "tensor/storage.h"

namespace vgg {

Generator& default_generator() {
  static Generator g(0);
  return g;
}
void manual_seed(uint64_t seed) { default_generator() = Generator(seed); }

Tensor full(const Shape& shape, double value, TensorOptions o) {
  Tensor t = empty(shape, o.dtype, o.device);
  get_kernel<kernels::FillKernel>(o.device, o.dtype)(t.numel(), t.data_ptr(), value);
  return t;
}
Tensor zeros(const Shape& shape, TensorOptions o) { return full(shape, 0.0, o); }
Tensor ones(const Shape& shape, TensorOptions o) { return full(shape, 1.0, o); }
Tensor scalar_tensor(double value, TensorOptions o) { return full({}, value, o); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), {t.dtype(), t.device()}); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), {t.dtype(), t.device()}); }
Tensor full_like(const Tensor& t, double v) { return full(t.shape(), v, {t.dtype(), t.device()}); }

static Tensor from_host_f64(const std::vector<double>& v, const Shape& shape, TensorOptions o) {
  check_shape(shape, "from_vector");
  VGG_CHECK(static_cast<int64_t>(v.size()) == numel_of(shape), "from_vector: ", v.size(),
            " values do not fill shape ", shape_str(shape), " (", numel_of(shape), " elements)");
  Tensor host = empty(shape, DType::F64);
  std::copy(v.begin(), v.end(), host.data<double>());
  return to_device_raw(cast_raw(host, o.dtype), o.device);
}

Tensor from_vector(const std::vector<double>& v, const Shape& shape, TensorOptions o) {
  return from_host_f64(v, shape, o);
}
Tensor from_vector(const std::vector<float>& v, const Shape& shape, TensorOptions o) {
  return from_host_f64(std::vector<double>(v.begin(), v.end()), shape, o);
}
Tensor from_vector(const std::vector<int64_t>& v, const Shape& shape, TensorOptions o) {
  check_shape(shape, "from_vector");
  VGG_CHECK(static_cast<int64_t>(v.size()) == numel_of(shape), "from_vector: ", v.size(),
            " values do not fill shape ", shape_str(shape), " (", numel_of(shape), " elements)");
  Tensor host = empty(shape, DType::I64);
  std::copy(v.begin(), v.end(), host.data<int64_t>());
  return to_device_raw(cast_raw(host, o.dtype), o.device);
}

Tensor arange(double start, double end, double step, TensorOptions o) {
  VGG_CHECK(step != 0 && std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
            "arange: invalid range start=", start, " end=", end, " step=", step);
  int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((end - start) / step)));
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = start + static_cast<double>(i) * step;
  return from_host_f64(v, {n}, o);
}

Tensor linspace(double start, double end, int64_t steps, TensorOptions o) {
  VGG_CHECK(steps >= 0, "linspace: steps must be >= 0, got ", steps);
  std::vector<double> v(steps);
  for (int64_t i = 0; i < steps; ++i)
    v[i] = steps == 1 ? start : start + (end - start) * static_cast<double>(i) / static_cast<double>(steps - 1);
  return from_host_f64(v, {steps}, o);
}

Tensor eye(int64_t n, TensorOptions o) {
  VGG_CHECK(n >= 0, "eye: n must be >= 0, got ", n);
  std::vector<double> v(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i) v[i * n + i] = 1.0;
  return from_host_f64(v, {n, n}, o);
}

static Tensor draw(kernels::RandKind kind, const Shape& shape, double a, double b, TensorOptions o, Generator* g) {
  Generator& gen = g ? *g : default_generator();
  Tensor t = empty(shape, o.dtype, o.device);
  kernels::RandArgs r{kind, gen.seed, gen.subsequence, gen.take(t.numel()), a, b};
  get_kernel<kernels::RandKernel>(o.device, o.dtype)(r, t.numel(), t.data_ptr());
  return t;
}

Tensor rand(const Shape& shape, TensorOptions o, Generator* g) {
  VGG_CHECK(is_floating(o.dtype), "rand: dtype must be floating, got ", dtype_name(o.dtype));
  return draw(kernels::RandKind::Uniform, shape, 0.0, 1.0, o, g);
}
Tensor uniform(const Shape& shape, double lo, double hi, TensorOptions o, Generator* g) {
  VGG_CHECK(is_floating(o.dtype), "uniform: dtype must be floating, got ", dtype_name(o.dtype));
  VGG_CHECK(lo < hi, "uniform: low (", lo, ") must be below high (", hi, ")");
  return draw(kernels::RandKind::Uniform, shape, lo, hi, o, g);
}
Tensor randn(const Shape& shape, TensorOptions o, Generator* g) {
  VGG_CHECK(is_floating(o.dtype), "randn: dtype must be floating, got ", dtype_name(o.dtype));
  return draw(kernels::RandKind::Normal, shape, 0.0, 1.0, o, g);
}
Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions o, Generator* g) {
  VGG_CHECK(low < high, "randint: low (", low, ") must be below high (", high, ")");
  VGG_CHECK(o.dtype != DType::Bool, "randint: dtype bool is not supported");
  return draw(kernels::RandKind::RandInt, shape, static_cast<double>(low), static_cast<double>(high), o, g);
}

Tensor expand_raw(const Tensor& t, const Shape& shape, const char* op) {
  VGG_CHECK(shape.size() >= t.shape().size(), op, ": cannot broadcast ", shape_str(t.shape()), " to ",
            shape_str(shape));
  Strides st(shape.size(), 0);
  size_t lead = shape.size() - t.shape().size();
  for (size_t i = 0; i < t.shape().size(); ++i) {
    int64_t s = t.shape()[i], d = shape[lead + i];
    VGG_CHECK(s == d || s == 1, op, ": cannot broadcast ", shape_str(t.shape()), " to ", shape_str(shape));
    st[lead + i] = s == 1 ? 0 : t.strides()[i];  // size-1 dims broadcast with stride 0
  }
  return as_strided_view(t, shape, st, t.offset());
}

namespace {

// Host <-> device: the host side converts (dtype, broadcasting, any strides) with the CPU copy
// kernel, the bytes move contiguously (device_copy_bytes: pinned staging in the CUDA backend), and
// a non-contiguous device side goes through the device's own copy kernel.
void copy_across(const Tensor& dst, const Tensor& src) {
  VGG_CHECK(src.device().is_cpu() || dst.device().is_cpu(), "copy: ", src.device().str(), " -> ", dst.device().str(),
            " (between two GPUs) is not supported");
  if (src.device().is_cpu()) {
    Tensor host = empty(dst.shape(), dst.dtype(), Device::cpu());
    copy_into(host, src);
    Tensor dev = dst.is_contiguous() ? dst : empty(dst.shape(), dst.dtype(), dst.device());
    device_copy_bytes(dev.data_ptr(), dev.device(), host.data_ptr(), Device::cpu(),
                      static_cast<size_t>(host.numel()) * itemsize(host.dtype()));
    if (!dst.is_contiguous()) copy_into(dst, dev);
    dst.bump_version();
  } else {
    Tensor dev = src.is_contiguous() ? src : clone_raw(src);
    Tensor host = empty(dev.shape(), dev.dtype(), Device::cpu());
    device_copy_bytes(host.data_ptr(), Device::cpu(), dev.data_ptr(), dev.device(),
                      static_cast<size_t>(host.numel()) * itemsize(host.dtype()));
    copy_into(dst, host);
  }
}

}  // namespace

void copy_into(const Tensor& dst, const Tensor& src) {
  if (dst.device() != src.device()) return copy_across(dst, src);
  Tensor s = expand_raw(src, dst.shape(), "copy");
  auto dl = kernels::make_layout(dst.shape(), dst.strides());
  auto sl = kernels::make_layout(s.shape(), s.strides());
  get_kernel<kernels::CopyKernel>(dst.device(), dst.dtype())(dl, dst.data_ptr(), sl, s.data_ptr(), s.dtype());
  dst.bump_version();
}

void fill_(const Tensor& t, double value) { copy_into(t, scalar_tensor(value, {t.dtype(), t.device()})); }

Tensor clone_raw(const Tensor& t) {
  Tensor out = empty(t.shape(), t.dtype(), t.device());
  copy_into(out, t);
  return out;
}
Tensor contiguous_raw(const Tensor& t) { return t.is_contiguous() ? t : clone_raw(t); }
Tensor cast_raw(const Tensor& t, DType dtype) {
  if (t.dtype() == dtype) return t;
  Tensor out = empty(t.shape(), dtype, t.device());
  copy_into(out, t);
  return out;
}
Tensor to_device_raw(const Tensor& t, Device d) {
  if (t.device() == d) return t;
  Tensor out = empty(t.shape(), t.dtype(), d);  // throws clearly when d is unavailable
  copy_into(out, t);
  return out;
}

}  // namespace vgg
