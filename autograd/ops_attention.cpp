// Attention: the naive form (composed of differentiable ops) and the tiled online-softmax
// kernel with its own backward kernel and a composed JVP rule.
#include "autograd/ops_util.h"
#include "kernels/attention.h"

namespace vgg::ops {

namespace {

Tensor tiled(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  const int64_t nd = q.dim();
  Shape batch(q.shape().begin(), q.shape().end() - 2);
  kernels::AttnArgs a{numel_of(batch), q.shape()[nd - 2], k.shape()[nd - 2], q.shape()[nd - 1], v.shape()[nd - 1],
                      scale};
  Tensor qc = contiguous_raw(q), kc = contiguous_raw(k), vc = contiguous_raw(v);
  Shape os = batch;
  os.insert(os.end(), {a.sq, a.dv});
  Shape ls = batch;
  ls.push_back(a.sq);
  Tensor o = empty(os, q.dtype(), q.device());
  Tensor lse = empty(ls, q.dtype() == DType::F64 ? DType::F64 : DType::F32, q.device());
  if (o.numel() > 0)
    get_kernel<kernels::AttnFwdKernel>(q.device(), q.dtype())(a, qc.data_ptr(), kc.data_ptr(),
                                                                            vc.data_ptr(), o.data_ptr(), lse.data_ptr());
  if (any_requires_grad({&q, &k, &v})) {
    auto node = record("attention", {q, k, v}, {&o});
    SavedTensor sq(qc, false), sk(kc, false), sv(vc, false), so(o, true);
    Tensor lse_saved = lse;
    node->backward = [=](const Grads& g, const std::vector<bool>&) -> Grads {
      detail::no_double_backward("attention (tiled)", "AttentionImpl::Naive");
      Tensor qv = sq.unpack("attention"), kv = sk.unpack("attention"), vv = sv.unpack("attention");
      Tensor ov = so.unpack("attention"), go = contiguous_raw(g[0]);
      Tensor dq = empty(qv.shape(), qv.dtype(), qv.device()), dk = empty(kv.shape(), kv.dtype(), kv.device()),
             dv = empty(vv.shape(), vv.dtype(), vv.device());
      get_kernel<kernels::AttnBwdKernel>(qv.device(), qv.dtype())(
          a, qv.data_ptr(), kv.data_ptr(), vv.data_ptr(), ov.data_ptr(), lse_saved.data_ptr(), go.data_ptr(),
          dq.data_ptr(), dk.data_ptr(), dv.data_ptr());
      return {dq, dk, dv};
    };
  }
  // JVP: with S = s·QKᵀ, P = softmax(S), O = PV,
  //   tS = s·(tQ·Kᵀ + Q·tKᵀ),  tP = P∘(tS − rowsum(P∘tS)),  tO = tP·V + P·tV
  //      = (P∘tS)·V − rowsum(P∘tS)∘O + P·tV,
  // composed of differentiable ops (O is the kernel's output, so reverse mode through the
  // tangent reaches the kernel's backward once). P is materialised: O(Sq·Sk) memory per head.
  detail::forward_rule("attention", {&q, &k, &v}, o, [&](const std::vector<Tensor>& t) {
    Tensor kt = transpose(k, -1, -2);
    Tensor p = softmax(mul(matmul(q, kt), scale), -1);
    Tensor to;
    if (t[0].defined() || t[1].defined()) {
      Tensor ts = detail::add_terms(t[0].defined() ? matmul(t[0], kt) : Tensor(),
                                    t[1].defined() ? matmul(q, transpose(t[1], -1, -2)) : Tensor());
      Tensor pts = mul(p, mul(ts, scale));
      to = sub(matmul(pts, v), mul(sum(pts, {-1}, true), fwad::detail::history_alias(o)));
    }
    if (t[2].defined()) to = detail::add_terms(to, matmul(p, t[2]));
    return to;
  });
  return o;
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, AttentionImpl impl) {
  detail::check_same("attention", q, k);
  detail::check_same("attention", q, v);
  detail::check_float("attention", q);
  const int64_t nd = q.dim();
  VGG_CHECK(nd >= 2 && k.dim() == nd && v.dim() == nd, "attention: q, k, v must have the same rank >= 2, got ",
            shape_str(q.shape()), ", ", shape_str(k.shape()), ", ", shape_str(v.shape()));
  bool ok = q.shape()[nd - 1] == k.shape()[nd - 1] && k.shape()[nd - 2] == v.shape()[nd - 2];
  for (int64_t d = 0; ok && d < nd - 2; ++d) ok = q.shape()[d] == k.shape()[d] && q.shape()[d] == v.shape()[d];
  VGG_CHECK(ok, "attention: incompatible shapes q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ",
            shape_str(v.shape()), " (need q [..., Sq, D], k [..., Sk, D], v [..., Sk, Dv])");
  VGG_CHECK(k.shape()[nd - 2] > 0, "attention: key length is 0 in k ", shape_str(k.shape()));
  if (impl == AttentionImpl::Naive) {
    Tensor s = mul(matmul(q, transpose(k, -1, -2)), scale);
    return matmul(softmax(s, -1), v);
  }
  return tiled(q, k, v, scale);
}

}  // namespace vgg::ops
