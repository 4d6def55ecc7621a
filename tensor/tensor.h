// Tensor: a cheap shared handle to {storage, offset, shape, strides, dtype, device, autograd meta}.
// This layer knows nothing about differentiation rules; autograd/ fills the meta fields.
// Views created here (as_strided_view) share storage and carry no autograd history;
// the differentiable view ops live in vgg::ops (autograd/ops.h).
#pragma once
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/shape.h"
#include "tensor/storage.h"

namespace vgg {

struct Node;  // autograd/node.h
class Tensor;
using TensorHook = std::function<Tensor(const Tensor&)>;

struct AutogradMeta {
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;         // null for leaves
  int output_nr = 0;                     // which output of grad_fn this tensor is
  std::weak_ptr<Node> grad_accumulator;  // leaves: the node that writes .grad
  std::shared_ptr<struct TensorImpl> grad;
  std::vector<TensorHook> hooks;  // leaves: run on the incoming gradient before accumulation
  // Forward mode (autograd/forward_ad.h): the tangent and the dual level it belongs to; a
  // tangent whose level is not the one open on the calling thread is never read.
  std::shared_ptr<struct TensorImpl> fw_grad;
  uint64_t fw_level = 0;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Strides strides;
  DType dtype = DType::F32;
  AutogradMeta meta;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Strides& strides() const { return impl().strides; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;
  int64_t stride(int64_t d) const;
  int64_t offset() const { return impl().offset; }
  int64_t numel() const { return numel_of(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device; }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }

  // Pointer to the first element (storage base + offset).
  void* data_ptr() const;
  template <typename T>
  T* data() const {
    VGG_CHECK(dtype_of<T>::value == dtype(), "data<", dtype_name(dtype_of<T>::value), ">() called on a ",
              dtype_name(dtype()), " tensor");
    return static_cast<T*>(data_ptr());
  }

  // Element access (CPU; for tests and small host-side logic). Values go through double.
  double item() const;
  double at(const std::vector<int64_t>& idx) const;
  void set(const std::vector<int64_t>& idx, double v);  // bumps the version
  std::vector<double> to_vector() const;                // row-major order

  // Autograd meta.
  bool requires_grad() const { return impl().meta.requires_grad; }
  // Marks a leaf as requiring grad; throws for non-leaves and non-float dtypes.
  Tensor& requires_grad_(bool on = true);
  const std::shared_ptr<Node>& grad_fn() const { return impl().meta.grad_fn; }
  int output_nr() const { return impl().meta.output_nr; }
  bool is_leaf() const { return impl().meta.grad_fn == nullptr; }
  Tensor grad() const;
  void set_grad(const Tensor& g);
  void register_hook(TensorHook hook);  // leaves only

  // Version counter shared by all views of the storage.
  int64_t version() const { return impl().storage->version; }
  void bump_version() const { ++impl().storage->version; }

  // A new handle on the same data with no autograd history (requires_grad = false).
  Tensor detach() const;
  bool same_impl(const Tensor& o) const { return impl_ == o.impl_; }

  TensorImpl& impl() const {
    VGG_CHECK(impl_ != nullptr, "operation on an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  std::string str() const;  // shape, dtype, device and (truncated) values

 private:
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);
std::string describe(const Tensor& t);  // "f32[2, 3] cpu" for error messages

// Raw construction (no autograd).
Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
Tensor as_strided_view(const Tensor& base, const Shape& shape, const Strides& strides, int64_t offset);

}  // namespace vgg
