#include "tensor/shape.h"

#include <algorithm>
#include <sstream>

#include "tensor/error.h"

namespace vgg {

int64_t numel_of(const Shape& s) {
  int64_t n = 1;
  for (auto v : s) n *= v;
  return n;
}

Strides contiguous_strides(const Shape& s) {
  Strides st(s.size());
  int64_t acc = 1;
  for (int i = static_cast<int>(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t wrap_dim(int64_t d, int64_t ndim, const char* op) {
  int64_t n = std::max<int64_t>(ndim, 1);
  VGG_CHECK(d >= -n && d < n, op, ": dim ", d, " is out of range for a tensor with ", ndim, " dims");
  return d < 0 ? d + n : d;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    VGG_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
              " are not broadcastable");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

void check_shape(const Shape& s, const char* op) {
  VGG_CHECK(static_cast<int>(s.size()) <= kMaxDims, op, ": shape ", shape_str(s), " has more than ", kMaxDims,
            " dims");
  for (auto v : s) VGG_CHECK(v >= 0, op, ": shape ", shape_str(s), " has a negative size");
  // the contiguous strides (the product of the sizes, zeros counted as 1) and the byte count must fit
  // in 64 bits: an empty [0, 2^62, 2^62] would otherwise overflow them
  int64_t acc = 1;
  bool overflow = false;
  for (auto v : s) overflow = overflow || __builtin_mul_overflow(acc, std::max<int64_t>(v, 1), &acc);
  VGG_CHECK(!overflow && acc <= (int64_t{1} << 59), op, ": shape ", shape_str(s),
            " is too large (its strides or byte count overflow 64 bits)");
}

}  // namespace vgg
