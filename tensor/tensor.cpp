#include "tensor/tensor.h"

#include <cmath>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "tensor/factory.h"

namespace vgg {

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }

bool Tensor::is_contiguous() const {
  int64_t expect = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expect) return false;
    expect *= shape()[i];
  }
  return true;
}

void* Tensor::data_ptr() const {
  return static_cast<char*>(impl().storage->data) + impl().offset * static_cast<int64_t>(itemsize(dtype()));
}

namespace {
double read_elem(const void* p, DType t) {
  switch (t) {
    case DType::F32: return *static_cast<const float*>(p);
    case DType::F64: return *static_cast<const double*>(p);
    case DType::BF16: return static_cast<float>(*static_cast<const bf16*>(p));
    case DType::I32: return *static_cast<const int32_t*>(p);
    case DType::I64: return static_cast<double>(*static_cast<const int64_t*>(p));
    case DType::Bool: return *static_cast<const bool*>(p) ? 1.0 : 0.0;
  }
  return 0;
}
void write_elem(void* p, DType t, double v) {
  switch (t) {
    case DType::F32: *static_cast<float*>(p) = static_cast<float>(v); break;
    case DType::F64: *static_cast<double*>(p) = v; break;
    case DType::BF16: *static_cast<bf16*>(p) = bf16(static_cast<float>(v)); break;
    case DType::I32: *static_cast<int32_t*>(p) = static_cast<int32_t>(v); break;
    case DType::I64: *static_cast<int64_t*>(p) = static_cast<int64_t>(v); break;
    case DType::Bool: *static_cast<bool*>(p) = v != 0; break;
  }
}
}  // namespace

static const char* elem_ptr(const Tensor& t, const std::vector<int64_t>& idx, const char* op) {
  VGG_CHECK(t.device().is_cpu(), op, ": element access needs a CPU tensor, got ", t.device().str());
  VGG_CHECK(static_cast<int64_t>(idx.size()) == t.dim(), op, ": index has ", idx.size(), " entries for a tensor of shape ",
            shape_str(t.shape()));
  int64_t off = 0;
  for (size_t i = 0; i < idx.size(); ++i) {
    int64_t k = idx[i] < 0 ? idx[i] + t.shape()[i] : idx[i];
    VGG_CHECK(k >= 0 && k < t.shape()[i], op, ": index ", idx[i], " out of range for dim ", i, " of shape ",
              shape_str(t.shape()));
    off += k * t.strides()[i];
  }
  return static_cast<const char*>(t.data_ptr()) + off * static_cast<int64_t>(itemsize(t.dtype()));
}

double Tensor::item() const {
  VGG_CHECK(numel() == 1, "item: tensor of shape ", shape_str(shape()), " has ", numel(), " elements, expected 1");
  if (!device().is_cpu()) return to_device_raw(*this, Device::cpu()).item();  // one synchronous copy
  std::vector<int64_t> idx(dim(), 0);
  return read_elem(elem_ptr(*this, idx, "item"), dtype());
}

double Tensor::at(const std::vector<int64_t>& idx) const {
  if (!device().is_cpu()) return to_device_raw(*this, Device::cpu()).at(idx);
  return read_elem(elem_ptr(*this, idx, "at"), dtype());
}

void Tensor::set(const std::vector<int64_t>& idx, double v) {
  write_elem(const_cast<char*>(elem_ptr(*this, idx, "set")), dtype(), v);
  bump_version();
}

std::vector<double> Tensor::to_vector() const {
  if (!device().is_cpu()) return to_device_raw(*this, Device::cpu()).to_vector();
  std::vector<double> out;
  out.reserve(numel());
  int64_t n = numel();
  std::vector<int64_t> idx(dim(), 0);
  const char* base = static_cast<const char*>(data_ptr());
  size_t is = itemsize(dtype());
  for (int64_t k = 0; k < n; ++k) {
    int64_t off = 0;
    for (int64_t d = 0; d < dim(); ++d) off += idx[d] * strides()[d];
    out.push_back(read_elem(base + off * static_cast<int64_t>(is), dtype()));
    for (int64_t d = dim() - 1; d >= 0; --d) {
      if (++idx[d] < shape()[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

Tensor& Tensor::requires_grad_(bool on) {
  VGG_CHECK(is_leaf(), "requires_grad_: only leaf tensors can change requires_grad (use detach() first)");
  VGG_CHECK(!on || is_floating(dtype()), "requires_grad_: only floating-point tensors can require grad, got ",
            dtype_name(dtype()));
  impl().meta.requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return Tensor(impl().meta.grad); }
void Tensor::set_grad(const Tensor& g) {
  if (g.defined())
    VGG_CHECK(g.shape() == shape() && g.dtype() == dtype(), "set_grad: gradient ", describe(g),
              " does not match tensor ", describe(*this));
  impl().meta.grad = g.impl_ptr();
}

void Tensor::register_hook(TensorHook hook) {
  VGG_CHECK(requires_grad(), "register_hook: tensor does not require grad");
  VGG_CHECK(is_leaf(), "register_hook: hooks are supported on leaf tensors only");
  impl().meta.hooks.push_back(std::move(hook));
}

Tensor Tensor::detach() const {
  auto t = std::make_shared<TensorImpl>();
  t->storage = impl().storage;
  t->offset = impl().offset;
  t->shape = impl().shape;
  t->strides = impl().strides;
  t->dtype = impl().dtype;
  return Tensor(t);
}

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined";
  return std::string(dtype_name(t.dtype())) + shape_str(t.shape()) + " " + t.device().str();
}

std::string Tensor::str() const {
  std::ostringstream os;
  if (!defined()) return "Tensor(undefined)";
  os << "Tensor(" << describe(*this);
  if (requires_grad()) os << ", requires_grad";
  os << ")";
  if (!device().is_cpu()) return os.str();
  auto v = to_vector();
  os << " [";
  size_t shown = std::min<size_t>(v.size(), 16);
  os << std::setprecision(6);
  for (size_t i = 0; i < shown; ++i) os << (i ? ", " : "") << v[i];
  if (v.size() > shown) os << ", ... (" << v.size() << " values)";
  os << "]";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

Tensor empty(const Shape& shape, DType dtype, Device device) {
  check_shape(shape, "empty");
  auto t = std::make_shared<TensorImpl>();
  t->storage = std::make_shared<Storage>(static_cast<size_t>(numel_of(shape)) * itemsize(dtype), device);
  t->shape = shape;
  t->strides = contiguous_strides(shape);
  t->dtype = dtype;
  return Tensor(t);
}

Tensor as_strided_view(const Tensor& base, const Shape& shape, const Strides& strides, int64_t offset) {
  check_shape(shape, "view");
  auto t = std::make_shared<TensorImpl>();
  t->storage = base.storage();
  t->offset = offset;
  t->shape = shape;
  t->strides = strides;
  t->dtype = base.dtype();
  return Tensor(t);
}

}  // namespace vgg
