// Shapes and strides (in elements). At most kMaxDims dimensions.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vgg {

constexpr int kMaxDims = 8;
using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

int64_t numel_of(const Shape& s);
Strides contiguous_strides(const Shape& s);
std::string shape_str(const Shape& s);
// Wraps a possibly negative dim into [0, ndim); throws naming `op` when out of range.
int64_t wrap_dim(int64_t d, int64_t ndim, const char* op);
// NumPy broadcasting of two shapes; throws naming `op` and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
void check_shape(const Shape& s, const char* op);  // ≤ 8 dims, no negative sizes

}  // namespace vgg
