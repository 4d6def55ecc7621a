// Reductions and their derivative rules.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/ops_util.h"
#include "kernels/reduce.h"

namespace vgg::ops {

using kernels::ReduceOp;

namespace {

struct ReducePlan {
  std::vector<int64_t> dims;  // sorted, unique
  Shape keep_shape;           // with 1s
  Shape out_shape;            // keepdim applied
  int64_t r = 1;
};

ReducePlan plan(const char* op, const Tensor& x, const Dims& dims0, bool keepdim) {
  detail::check_defined(op, x);
  ReducePlan p;
  const int64_t nd = x.dim();
  if (dims0.empty()) {
    for (int64_t d = 0; d < nd; ++d) p.dims.push_back(d);
  } else {
    for (auto d : dims0) p.dims.push_back(wrap_dim(d, nd, op));
    std::sort(p.dims.begin(), p.dims.end());
    VGG_CHECK(std::adjacent_find(p.dims.begin(), p.dims.end()) == p.dims.end(), op, ": dim list repeats a dim");
    if (nd == 0) p.dims.clear();
  }
  p.keep_shape = x.shape();
  for (auto d : p.dims) {
    p.r *= x.shape()[d];
    p.keep_shape[d] = 1;
  }
  if (keepdim) {
    p.out_shape = p.keep_shape;
  } else {
    for (int64_t d = 0; d < nd; ++d)
      if (!std::binary_search(p.dims.begin(), p.dims.end(), d)) p.out_shape.push_back(x.shape()[d]);
  }
  return p;
}

Tensor reduce_raw(ReduceOp op, const char* name, const Tensor& x, const ReducePlan& p) {
  const bool arg = op == ReduceOp::ArgMax || op == ReduceOp::ArgMin;
  Tensor out = empty(p.out_shape, arg ? DType::I64 : x.dtype(), x.device());
  if (out.numel() == 0) return out;
  if (p.r == 0) {
    VGG_CHECK(op == ReduceOp::Sum, name, ": reduction over an empty dim of shape ", shape_str(x.shape()));
    fill_(out, 0.0);
    return out;
  }
  const int64_t nd = x.dim();
  bool block = x.is_contiguous() && !p.dims.empty();
  for (size_t i = 1; i < p.dims.size(); ++i) block = block && p.dims[i] == p.dims[i - 1] + 1;
  int64_t outer = 1, inner = 1;
  Tensor src = x;
  if (p.dims.empty()) {
    src = contiguous_raw(x);
  } else if (block) {
    for (int64_t d = 0; d < p.dims.front(); ++d) outer *= x.shape()[d];
    for (int64_t d = p.dims.back() + 1; d < nd; ++d) inner *= x.shape()[d];
  } else {
    Dims order;
    for (int64_t d = 0; d < nd; ++d)
      if (!std::binary_search(p.dims.begin(), p.dims.end(), d)) {
        order.push_back(d);
        outer *= x.shape()[d];
      }
    for (auto d : p.dims) order.push_back(d);
    src = contiguous_raw(permute(x.detach(), order));
  }
  get_kernel<kernels::ReduceKernel>(x.device(), x.dtype())(op, outer, p.r, inner, src.data_ptr(),
                                                                  out.data_ptr());
  return out;
}

// ties share the gradient equally
Tensor extremum(ReduceOp op, const char* name, const Tensor& x, const Dims& dims, bool keepdim) {
  VGG_CHECK(x.dtype() != DType::Bool, name, ": bool tensors are not supported");
  ReducePlan p = plan(name, x, dims, keepdim);
  Tensor y = reduce_raw(op, name, x, p);
  if (any_requires_grad({&x})) {
    auto node = record(name, {x}, {&y});
    SavedTensor sx(x, false), sy(y, true);
    Shape keep = p.keep_shape;
    Dims rd = p.dims;
    node->backward = [=](const Grads& g, const std::vector<bool>&) -> Grads {
      Tensor xv = sx.unpack(name).detach(), yv = sy.unpack(name).detach();
      Tensor mask = cast_raw(eq(xv, reshape(yv, keep)), xv.dtype());
      Tensor count = sum(mask, rd, true);
      return {mul(reshape(g[0], keep), div(mask, count))};
    };
  }
  // the tangent of the selected element; ties average their tangents (the reverse rule's
  // transpose: it shares the gradient equally)
  detail::forward_rule(name, {&x}, y, [&](const std::vector<Tensor>& t) {
    Tensor mask = cast_raw(eq(x.detach(), reshape(y.detach(), p.keep_shape)), x.dtype());
    Tensor w = div(mask, sum(mask, p.dims, true));
    return sum(mul(t[0], w), p.dims, keepdim);
  });
  return y;
}

}  // namespace

Tensor sum(const Tensor& x, const Dims& dims, bool keepdim) {
  VGG_CHECK(!x.defined() || x.dtype() != DType::Bool, "sum: bool tensors are not supported (cast first)");
  ReducePlan p = plan("sum", x, dims, keepdim);
  Tensor y = reduce_raw(ReduceOp::Sum, "sum", x, p);
  if (any_requires_grad({&x})) {
    auto node = record("sum", {x}, {&y});
    Shape keep = p.keep_shape, xs = x.shape();
    node->backward = [keep, xs](const Grads& g, const std::vector<bool>&) -> Grads {
      return {expand(reshape(g[0], keep), xs)};
    };
  }
  detail::forward_rule("sum", {&x}, y, [&](const std::vector<Tensor>& t) { return sum(t[0], dims, keepdim); });
  return y;
}

Tensor mean(const Tensor& x, const Dims& dims, bool keepdim) {
  detail::check_float("mean", x);
  ReducePlan p = plan("mean", x, dims, keepdim);
  VGG_CHECK(p.r > 0, "mean: reduction over an empty dim of shape ", shape_str(x.shape()));
  return mul(sum(x, dims, keepdim), 1.0 / static_cast<double>(p.r));
}

Tensor var(const Tensor& x, const Dims& dims, int64_t correction, bool keepdim) {
  detail::check_float("var", x);
  ReducePlan p = plan("var", x, dims, keepdim);
  VGG_CHECK(p.r - correction > 0, "var: ", p.r, " elements with correction ", correction, " leave no degrees of freedom");
  Tensor d = sub(x, mean(x, dims, true));
  return mul(sum(square(d), dims, keepdim), 1.0 / static_cast<double>(p.r - correction));
}

Tensor amax(const Tensor& x, const Dims& dims, bool keepdim) { return extremum(ReduceOp::Max, "amax", x, dims, keepdim); }
Tensor amin(const Tensor& x, const Dims& dims, bool keepdim) { return extremum(ReduceOp::Min, "amin", x, dims, keepdim); }
Tensor max(const Tensor& x, int64_t dim, bool keepdim) { return extremum(ReduceOp::Max, "max", x, {dim}, keepdim); }
Tensor min(const Tensor& x, int64_t dim, bool keepdim) { return extremum(ReduceOp::Min, "min", x, {dim}, keepdim); }

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return reduce_raw(ReduceOp::ArgMax, "argmax", x, plan("argmax", x, {dim}, keepdim));
}
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  return reduce_raw(ReduceOp::ArgMin, "argmin", x, plan("argmin", x, {dim}, keepdim));
}

Tensor norm(const Tensor& x, double p, const Dims& dims, bool keepdim) {
  detail::check_float("norm", x);
  if (p == 2.0) return sqrt(sum(square(x), dims, keepdim));
  if (p == 1.0) return sum(abs(x), dims, keepdim);
  if (std::isinf(p) && p > 0) return amax(abs(x), dims, keepdim);
  VGG_FAIL("norm: p = ", p, " is not supported (use 1, 2 or INFINITY)");
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  VGG_CHECK(shape.size() <= x.shape().size(), "sum_to: cannot reduce ", shape_str(x.shape()), " to ", shape_str(shape));
  const size_t lead = x.shape().size() - shape.size();
  Dims dims;
  for (size_t i = 0; i < lead; ++i) dims.push_back(static_cast<int64_t>(i));
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == x.shape()[lead + i]) continue;
    VGG_CHECK(shape[i] == 1, "sum_to: cannot reduce ", shape_str(x.shape()), " to ", shape_str(shape));
    dims.push_back(static_cast<int64_t>(lead + i));
  }
  if (dims.empty()) return reshape(x, shape);
  return reshape(sum(x, dims, true), shape);
}

}  // namespace vgg::ops
