// The small shape/stride description that every kernel contract takes beside raw pointers.
// Strides are in elements; pointers passed to kernels already include the tensor offset.
#pragma once
#include <cstdint>

#include "tensor/shape.h"

namespace vgg::kernels {

struct Layout {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t stride[kMaxDims] = {};
};

// elements a strided operand touches (broadcast dims, stride 0, count once)
inline double touched_elements(const Layout& l) {
  double n = 1;
  for (int i = 0; i < l.ndim; ++i)
    if (l.stride[i] != 0) n *= static_cast<double>(l.shape[i]);
  return n;
}
inline double layout_numel(const Layout& l) {
  double n = 1;
  for (int i = 0; i < l.ndim; ++i) n *= static_cast<double>(l.shape[i]);
  return n;
}

inline Layout make_layout(const Shape& shape, const Strides& strides) {
  Layout l;
  l.ndim = static_cast<int>(shape.size());
  for (int i = 0; i < l.ndim; ++i) {
    l.shape[i] = shape[i];
    l.stride[i] = strides[i];
  }
  return l;
}

}  // namespace vgg::kernels
