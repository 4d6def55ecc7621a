// Views, shape manipulation, concatenation and padding, with their derivative rules.
#include <algorithm>
#include <numeric>
#include <optional>

#include "autograd/ops_util.h"

namespace vgg::ops {

namespace {

// Strides that let `shape` view memory laid out as (old_shape, old_strides), if any exist.
std::optional<Strides> view_strides(const Shape& old_shape, const Strides& old_strides, const Shape& shape) {
  if (numel_of(old_shape) == 0 || old_shape.empty()) return contiguous_strides(shape);
  Strides st(shape.size());
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t base = old_strides.back(), tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(old_shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * base)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        st[view_d] = view_numel * base;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        base = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return st;
}

Shape infer_shape(const char* op, const Tensor& x, const Shape& shape) {
  Shape s = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      VGG_CHECK(infer < 0, op, ": only one dim can be -1 in ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      VGG_CHECK(s[i] >= 0, op, ": invalid size in ", shape_str(shape));
      known *= s[i];
    }
  }
  if (infer >= 0) {
    VGG_CHECK(known > 0 && x.numel() % known == 0, op, ": cannot reshape ", shape_str(x.shape()), " to ",
              shape_str(shape));
    s[infer] = x.numel() / known;
  }
  VGG_CHECK(numel_of(s) == x.numel(), op, ": cannot reshape ", shape_str(x.shape()), " (", x.numel(),
            " elements) to ", shape_str(shape));
  check_shape(s, op);
  return s;
}

// Records a node whose backward is `bw(g)`; the tangent is `fw(tx)` (these ops are linear).
template <typename F, typename G>
Tensor with_history(const char* name, const Tensor& x, Tensor y, F bw, G fw) {
  if (any_requires_grad({&x})) {
    auto node = record(name, {x}, {&y});
    node->backward = [bw](const Grads& g, const std::vector<bool>&) -> Grads { return {bw(g[0])}; };
  }
  detail::forward_rule(name, {&x}, y, [&](const std::vector<Tensor>& t) { return fw(t[0]); });
  return y;
}

}  // namespace

Tensor view(const Tensor& x, const Shape& shape0) {
  detail::check_defined("view", x);
  Shape shape = infer_shape("view", x, shape0);
  auto st = view_strides(x.shape(), x.strides(), shape);
  VGG_CHECK(st.has_value(), "view: cannot view ", describe(x), " with strides ", shape_str(x.strides()), " as ",
            shape_str(shape), " without a copy (use reshape)");
  Shape xs = x.shape();
  return with_history("view", x, as_strided_view(x, shape, *st, x.offset()),
                      [xs](const Tensor& g) { return reshape(g, xs); },
                      // the tangent's layout may differ from x's: reshape, not view
                      [&shape](const Tensor& t) { return reshape(t, shape); });
}

Tensor reshape(const Tensor& x, const Shape& shape0) {
  detail::check_defined("reshape", x);
  Shape shape = infer_shape("reshape", x, shape0);
  if (view_strides(x.shape(), x.strides(), shape)) return view(x, shape);
  return view(contiguous(x), shape);
}

Tensor permute(const Tensor& x, const Dims& order) {
  detail::check_defined("permute", x);
  const int64_t nd = x.dim();
  VGG_CHECK(static_cast<int64_t>(order.size()) == nd, "permute: order of ", order.size(), " dims for shape ",
            shape_str(x.shape()));
  Dims o(nd), inv(nd, -1);
  Shape s(nd);
  Strides st(nd);
  for (int64_t i = 0; i < nd; ++i) {
    o[i] = wrap_dim(order[i], nd, "permute");
    VGG_CHECK(inv[o[i]] < 0, "permute: dim ", o[i], " repeats in the order");
    inv[o[i]] = i;
    s[i] = x.shape()[o[i]];
    st[i] = x.strides()[o[i]];
  }
  return with_history("permute", x, as_strided_view(x, s, st, x.offset()),
                      [inv](const Tensor& g) { return permute(g, inv); },
                      [&o](const Tensor& t) { return permute(t, o); });
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  detail::check_defined("transpose", x);
  const int64_t nd = x.dim();
  Dims order(nd);
  std::iota(order.begin(), order.end(), 0);
  if (nd == 0) return permute(x, order);
  std::swap(order[wrap_dim(d0, nd, "transpose")], order[wrap_dim(d1, nd, "transpose")]);
  return permute(x, order);
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  detail::check_defined("narrow", x);
  VGG_CHECK(x.dim() > 0, "narrow: cannot narrow a 0-dim tensor");
  const int64_t d = wrap_dim(dim, x.dim(), "narrow");
  const int64_t n = x.shape()[d];
  VGG_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: range [", start, ", ", start + length,
            ") is out of bounds for dim ", d, " of ", shape_str(x.shape()));
  Shape s = x.shape();
  s[d] = length;
  const int64_t nd = x.dim();
  return with_history("narrow", x, as_strided_view(x, s, x.strides(), x.offset() + start * x.strides()[d]),
                      [=](const Tensor& g) {
                        std::vector<int64_t> pads(2 * (nd - d), 0);
                        pads[2 * (nd - 1 - d)] = start;
                        pads[2 * (nd - 1 - d) + 1] = n - start - length;
                        return pad(g, pads, 0.0);
                      },
                      [=](const Tensor& t) { return narrow(t, d, start, length); });
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end) {
  detail::check_defined("slice", x);
  const int64_t d = wrap_dim(dim, x.dim(), "slice");
  const int64_t n = x.shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  return narrow(x, d, start, end - start);
}

Tensor expand(const Tensor& x, const Shape& shape0) {
  detail::check_defined("expand", x);
  Shape shape = shape0;
  const size_t lead = shape.size() >= x.shape().size() ? shape.size() - x.shape().size() : 0;
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] == -1) {
      VGG_CHECK(i >= lead, "expand: -1 is not allowed for a new leading dim in ", shape_str(shape0));
      shape[i] = x.shape()[i - lead];
    }
  check_shape(shape, "expand");
  Tensor y = expand_raw(x, shape, "expand");
  if (shape == x.shape()) y = x.detach();
  Shape xs = x.shape();
  return with_history("expand", x, y, [xs](const Tensor& g) { return sum_to(g, xs); },
                      [&shape](const Tensor& t) { return expand(t, shape); });
}

Tensor squeeze(const Tensor& x) {
  detail::check_defined("squeeze", x);
  Shape s;
  for (auto v : x.shape())
    if (v != 1) s.push_back(v);
  return reshape(x, s);
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  detail::check_defined("squeeze", x);
  if (x.dim() == 0) return reshape(x, {});
  const int64_t d = wrap_dim(dim, x.dim(), "squeeze");
  if (x.shape()[d] != 1) return x;
  Shape s = x.shape();
  s.erase(s.begin() + d);
  return reshape(x, s);
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  detail::check_defined("unsqueeze", x);
  const int64_t d = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape s = x.shape();
  s.insert(s.begin() + d, 1);
  return reshape(x, s);
}

Tensor flatten(const Tensor& x, int64_t start_dim, int64_t end_dim) {
  detail::check_defined("flatten", x);
  if (x.dim() == 0) return reshape(x, {1});
  const int64_t s0 = wrap_dim(start_dim, x.dim(), "flatten"), e0 = wrap_dim(end_dim, x.dim(), "flatten");
  VGG_CHECK(s0 <= e0, "flatten: start_dim ", start_dim, " is after end_dim ", end_dim);
  Shape s(x.shape().begin(), x.shape().begin() + s0);
  int64_t m = 1;
  for (int64_t d = s0; d <= e0; ++d) m *= x.shape()[d];
  s.push_back(m);
  s.insert(s.end(), x.shape().begin() + e0 + 1, x.shape().end());
  return reshape(x, s);
}

Tensor contiguous(const Tensor& x) {
  detail::check_defined("contiguous", x);
  if (x.is_contiguous()) return x;
  return clone(x);
}

Tensor clone(const Tensor& x) {
  detail::check_defined("clone", x);
  return with_history("clone", x, clone_raw(x), [](const Tensor& g) { return g; }, [](const Tensor& t) { return t; });
}

Tensor to(const Tensor& x, DType dtype) {
  detail::check_defined("to", x);
  if (x.dtype() == dtype) return x;
  VGG_CHECK(!(x.requires_grad() && grad_enabled()) || is_floating(dtype), "to: cannot convert ", describe(x),
            " that requires grad to non-float dtype ", dtype_name(dtype));
  DType from = x.dtype();
  // a non-floating result is piecewise constant: no tangent
  return with_history("to_dtype", x, cast_raw(x, dtype), [from](const Tensor& g) { return to(g, from); },
                      [dtype](const Tensor& t) { return is_floating(dtype) ? to(t, dtype) : Tensor(); });
}

Tensor to(const Tensor& x, Device device) {
  detail::check_defined("to", x);
  if (x.device() == device) return x;
  Device from = x.device();
  return with_history("to_device", x, to_device_raw(x, device), [from](const Tensor& g) { return to(g, from); },
                      [device](const Tensor& t) { return to(t, device); });
}

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value) {
  detail::check_defined("pad", x);
  VGG_CHECK(pads.size() % 2 == 0 && static_cast<int64_t>(pads.size()) <= 2 * x.dim(), "pad: ", pads.size(),
            " pad values for a tensor of shape ", shape_str(x.shape()), " (need an even count <= 2*dims)");
  for (auto p : pads) VGG_CHECK(p >= 0, "pad: negative padding ", p, " is not supported (use narrow)");
  const int64_t nd = x.dim();
  Shape s = x.shape();
  int64_t offset = 0;
  Strides out_st;
  for (size_t k = 0; k < pads.size() / 2; ++k) s[nd - 1 - k] += pads[2 * k] + pads[2 * k + 1];
  Tensor y = full(s, value, {x.dtype(), x.device()});
  out_st = y.strides();
  for (size_t k = 0; k < pads.size() / 2; ++k) offset += pads[2 * k] * out_st[nd - 1 - k];
  copy_into(as_strided_view(y, x.shape(), out_st, offset), x);
  Shape xs = x.shape();
  return with_history("pad", x, y, [pads, xs](const Tensor& g) {
    Tensor r = g;
    const int64_t n = static_cast<int64_t>(xs.size());
    for (size_t k = 0; k < pads.size() / 2; ++k) r = narrow(r, n - 1 - static_cast<int64_t>(k), pads[2 * k], xs[n - 1 - k]);
    return r;
  }, [&pads](const Tensor& t) { return pad(t, pads, 0.0); });  // the padding value is a constant
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  VGG_CHECK(!xs.empty(), "cat: needs at least one tensor");
  const Tensor& x0 = xs[0];
  detail::check_defined("cat", x0);
  const int64_t nd = x0.dim();
  VGG_CHECK(nd > 0, "cat: cannot concatenate 0-dim tensors (use stack)");
  const int64_t d = wrap_dim(dim, nd, "cat");
  Shape s = x0.shape();
  s[d] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    detail::check_same("cat", x0, xs[i]);
    bool ok = xs[i].dim() == nd;
    for (int64_t k = 0; ok && k < nd; ++k) ok = k == d || xs[i].shape()[k] == x0.shape()[k];
    VGG_CHECK(ok, "cat: tensor ", i, " has shape ", shape_str(xs[i].shape()), ", incompatible with ",
              shape_str(x0.shape()), " along dim ", d);
    s[d] += xs[i].shape()[d];
  }
  Tensor y = empty(s, x0.dtype(), x0.device());
  std::vector<int64_t> offs, lens;
  int64_t off = 0;
  for (const Tensor& t : xs) {
    copy_into(as_strided_view(y, t.shape(), y.strides(), off * y.strides()[d]), t);
    offs.push_back(off);
    lens.push_back(t.shape()[d]);
    off += t.shape()[d];
  }
  if (any_requires_grad(xs)) {
    auto node = record("cat", xs, {&y});
    node->backward = [offs, lens, d](const Grads& g, const std::vector<bool>& needs) -> Grads {
      Grads r(offs.size());
      for (size_t i = 0; i < offs.size(); ++i)
        if (needs[i]) r[i] = narrow(g[0], d, offs[i], lens[i]);
      return r;
    };
  }
  // the tangents concatenated, zeros standing in for inputs without one
  detail::forward_rule("cat", xs, y, [&](const std::vector<Tensor>& t) {
    std::vector<Tensor> parts;
    for (size_t i = 0; i < xs.size(); ++i) parts.push_back(t[i].defined() ? t[i] : zeros_like(xs[i]));
    return cat(parts, d);
  });
  return y;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  detail::check_defined("split", x);
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (auto v : sizes) {
    VGG_CHECK(v >= 0, "split: negative size ", v);
    total += v;
  }
  VGG_CHECK(total == x.shape()[d], "split: sizes sum to ", total, " but dim ", d, " of ", shape_str(x.shape()),
            " has ", x.shape()[d]);
  std::vector<Tensor> out;
  int64_t off = 0;
  for (auto v : sizes) {
    out.push_back(narrow(x, d, off, v));
    off += v;
  }
  return out;
}

std::vector<Tensor> split(const Tensor& x, int64_t chunk_size, int64_t dim) {
  detail::check_defined("split", x);
  VGG_CHECK(chunk_size > 0, "split: chunk size must be positive, got ", chunk_size);
  const int64_t n = x.shape()[wrap_dim(dim, x.dim(), "split")];
  std::vector<int64_t> sizes;
  for (int64_t o = 0; o < n; o += chunk_size) sizes.push_back(std::min(chunk_size, n - o));
  return split(x, sizes, dim);
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  detail::check_defined("chunk", x);
  VGG_CHECK(chunks > 0, "chunk: number of chunks must be positive, got ", chunks);
  const int64_t n = x.shape()[wrap_dim(dim, x.dim(), "chunk")];
  return split(x, std::max<int64_t>(1, (n + chunks - 1) / chunks), dim);
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  VGG_CHECK(!xs.empty(), "stack: needs at least one tensor");
  detail::check_defined("stack", xs[0]);
  const int64_t d = wrap_dim(dim, xs[0].dim() + 1, "stack");
  std::vector<Tensor> u;
  for (size_t i = 0; i < xs.size(); ++i) {
    detail::check_defined("stack", xs[i]);
    VGG_CHECK(xs[i].shape() == xs[0].shape(), "stack: tensor ", i, " has shape ", shape_str(xs[i].shape()),
              ", expected ", shape_str(xs[0].shape()));
    u.push_back(unsqueeze(xs[i], d));
  }
  return cat(u, d);
}

}  // namespace vgg::ops
