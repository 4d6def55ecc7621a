// matmul with NumPy semantics over a batched GEMM kernel.
#include "autograd/ops_util.h"
#include "kernels/matmul.h"

namespace vgg::ops {

namespace {

// Describes operand t ([..batch, rows, cols], already expanded to the batch shape) for the
// GEMM kernel, copying it when its batch dims or matrix layout cannot be expressed by strides.
struct Operand {
  Tensor t;
  bool trans = false;
  int64_t ld = 0, batch_stride = 0;
};

Operand operand(Tensor t) {
  const int64_t nd = t.dim();
  auto matrix_ok = [&](const Tensor& x) {
    const int64_t r = x.shape()[nd - 2], c = x.shape()[nd - 1];
    if (x.strides()[nd - 1] == 1 && (r == 1 || x.strides()[nd - 2] >= std::max<int64_t>(c, 1))) return 1;
    if (x.strides()[nd - 2] == 1 && (c == 1 || x.strides()[nd - 1] >= std::max<int64_t>(r, 1))) return 2;
    return 0;
  };
  auto batch_stride = [&](const Tensor& x, int64_t& bs) {
    bs = 0;
    int64_t expect = -1;
    for (int64_t d = nd - 3; d >= 0; --d) {
      if (x.shape()[d] == 1) continue;
      if (expect < 0) {
        bs = x.strides()[d];
      } else if (x.strides()[d] != expect) {
        return false;
      }
      expect = x.strides()[d] * x.shape()[d];
      if (x.strides()[d] == 0) expect = 0;
    }
    return true;
  };
  int64_t bs = 0;
  int kind = matrix_ok(t);
  if (kind == 0 || !batch_stride(t, bs)) {
    t = contiguous_raw(t);
    kind = 1;
    batch_stride(t, bs);
  }
  Operand o;
  o.t = t;
  o.trans = kind == 2;
  o.ld = kind == 1 ? std::max<int64_t>(t.strides()[nd - 2], std::max<int64_t>(t.shape()[nd - 1], 1))
                   : std::max<int64_t>(t.strides()[nd - 1], std::max<int64_t>(t.shape()[nd - 2], 1));
  o.batch_stride = bs;
  return o;
}

// a [..., m, k] @ b [..., k, n], both at least 2-D (+ bias [n] on every row when defined).
Tensor mm_raw(const Tensor& a, const Tensor& b, const Tensor& bias = Tensor()) {
  const int64_t m = a.shape()[a.dim() - 2], k = a.shape()[a.dim() - 1], n = b.shape()[b.dim() - 1];
  Shape ab(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(ab, bb, "matmul");
  Shape as = batch, bs = batch, os = batch;
  as.insert(as.end(), {m, k});
  bs.insert(bs.end(), {k, n});
  os.insert(os.end(), {m, n});
  Operand A = operand(expand_raw(a, as, "matmul")), B = operand(expand_raw(b, bs, "matmul"));
  Tensor c = empty(os, a.dtype(), a.device());
  if (c.numel() == 0) return c;
  kernels::GemmArgs g;
  g.batch = numel_of(batch);
  g.m = m;
  g.n = n;
  g.k = k;
  g.trans_a = A.trans;
  g.trans_b = B.trans;
  g.lda = A.ld;
  g.ldb = B.ld;
  g.ldc = std::max<int64_t>(n, 1);
  g.stride_a = A.batch_stride;
  g.stride_b = B.batch_stride;
  g.stride_c = m * n;
  Tensor bc = bias.defined() ? contiguous_raw(bias) : Tensor();
  if (bc.defined()) g.bias = bc.data_ptr();
  get_kernel<kernels::GemmKernel>(a.device(), a.dtype())(g, A.t.data_ptr(), B.t.data_ptr(), c.data_ptr());
  return c;
}

Tensor mm(const Tensor& a, const Tensor& b) {
  Tensor y = mm_raw(a, b);
  if (any_requires_grad({&a, &b})) {
    auto node = record("matmul", {a, b}, {&y});
    SavedTensor sa(a, false), sb(b, false);
    Shape as = a.shape(), bs = b.shape();
    node->backward = [=](const Grads& g, const std::vector<bool>& needs) -> Grads {
      Tensor ga, gb;
      if (needs[0]) ga = sum_to(matmul(g[0], transpose(sb.unpack("matmul"), -1, -2)), as);
      if (needs[1]) gb = sum_to(matmul(transpose(sa.unpack("matmul"), -1, -2), g[0]), bs);
      return {ga, gb};
    };
  }
  // the product rule: ta·b + a·tb (each term already has the output's batch shape)
  detail::forward_rule("matmul", {&a, &b}, y, [&](const std::vector<Tensor>& t) {
    return detail::add_terms(t[0].defined() ? matmul(t[0], b) : Tensor(), t[1].defined() ? matmul(a, t[1]) : Tensor());
  });
  return y;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  detail::check_same("matmul", a, b);
  detail::check_float("matmul", a);
  VGG_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: 0-dim operands ", describe(a), " and ", describe(b));
  const int64_t ka = a.shape().back(), kb = b.dim() == 1 ? b.shape()[0] : b.shape()[b.dim() - 2];
  VGG_CHECK(ka == kb, "matmul: shapes ", shape_str(a.shape()), " and ", shape_str(b.shape()),
            " cannot be multiplied (", ka, " != ", kb, ")");
  if (a.dim() == 1 && b.dim() == 1) return reshape(mm(unsqueeze(a, 0), unsqueeze(b, 1)), {});
  if (a.dim() == 1) return squeeze(matmul(unsqueeze(a, 0), b), -2);
  if (b.dim() == 1) return squeeze(matmul(a, unsqueeze(b, 1)), -1);
  if (b.dim() == 2 && a.dim() > 2) {
    // [..., m, k] @ [k, n]: one GEMM over all rows (and a single weight gradient GEMM)
    Shape out(a.shape().begin(), a.shape().end() - 1);
    out.push_back(b.shape()[1]);
    return reshape(mm(reshape(a, {-1, ka}), b), out);
  }
  return mm(a, b);
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  detail::check_same("linear", x, w);
  detail::check_float("linear", x);
  VGG_CHECK(w.dim() == 2 && x.dim() >= 1 && x.shape().back() == w.size(1), "linear: input ", describe(x),
            " must end in the weight's ", w.dim() == 2 ? w.size(1) : -1, " input features (weight ", describe(w), ")");
  if (b.defined()) {
    detail::check_same("linear", x, b);
    VGG_CHECK(b.shape() == Shape{w.size(0)}, "linear: bias ", describe(b), " must be [", w.size(0), "]");
  }
  const int64_t in = w.size(1), out = w.size(0);
  // composed: without a bias, on the CPU (the reference numbers), or with nothing to multiply
  if (!b.defined() || !x.device().is_cuda() || in == 0) {
    Tensor y = matmul(x, transpose(w, 0, 1));
    return b.defined() ? add(y, b) : y;
  }
  Shape os(x.shape().begin(), x.shape().end() - 1);
  os.push_back(out);
  Tensor x2 = reshape(x, {-1, in});
  Tensor y = reshape(mm_raw(x2, transpose(w, 0, 1), b), os);
  if (any_requires_grad({&x, &w, &b})) {
    auto node = record("linear", {x, w, b}, {&y});
    SavedTensor sx(x, false), sw(w, false);
    Shape xs = x.shape();
    node->backward = [=](const Grads& g, const std::vector<bool>& needs) -> Grads {
      Tensor g2 = reshape(g[0], {-1, out}), gx, gw, gb;
      if (needs[0]) gx = reshape(matmul(g2, sw.unpack("linear")), xs);
      if (needs[1]) gw = matmul(transpose(g2, 0, 1), reshape(sx.unpack("linear"), {-1, in}));
      if (needs[2]) gb = sum(g2, {0});
      return {gx, gw, gb};
    };
  }
  // t_y = t_x·wᵀ + x·t_wᵀ + t_b
  detail::forward_rule("linear", {&x, &w, &b}, y, [&](const std::vector<Tensor>& t) {
    Tensor ty = detail::add_terms(t[0].defined() ? linear(t[0], w) : Tensor(), t[1].defined() ? linear(x, t[1]) : Tensor());
    if (t[2].defined()) ty = detail::add_terms(ty, detail::fit(t[2], y.shape()));
    return ty;
  });
  return y;
}

}  // namespace vgg::ops
