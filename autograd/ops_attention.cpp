// Attention: the naive form (composed of differentiable ops) and the tiled online-softmax
// kernel with its own backward kernel and a composed JVP rule.
#include <atomic>
#include <cstdlib>
#include <string>

#include "autograd/ops_util.h"
#include "kernels/attention.h"

namespace vgg::ops {

namespace {

std::atomic<AttentionJvp>& jvp_mode() {
  static std::atomic<AttentionJvp> m{[] {
    const char* e = std::getenv("VGG_ATTENTION_JVP");
    return e && std::string(e) == "composed" ? AttentionJvp::Composed : AttentionJvp::Fused;
  }()};
  return m;
}

kernels::AttnArgs attn_args(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  const int64_t nd = q.dim();
  Shape batch(q.shape().begin(), q.shape().end() - 2);
  return {numel_of(batch), q.shape()[nd - 2], k.shape()[nd - 2], q.shape()[nd - 1], v.shape()[nd - 1], scale};
}

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
    if (jvp_mode().load() == AttentionJvp::Fused && has_kernel<kernels::AttnJvpKernel>(q.device(), q.dtype()) &&
        has_kernel<kernels::AttnJvpBwdKernel>(q.device(), q.dtype()))
      return attention_jvp(q, k, v, t[0], t[1], t[2], scale);
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

// the checks of attention(): same device and dtype, floating, [..., Sq, D], [..., Sk, D], [..., Sk, Dv]
void check_attention(const char* op, const Tensor& q, const Tensor& k, const Tensor& v) {
  detail::check_same(op, q, k);
  detail::check_same(op, q, v);
  detail::check_float(op, q);
  const int64_t nd = q.dim();
  VGG_CHECK(nd >= 2 && k.dim() == nd && v.dim() == nd, op, ": q, k, v must have the same rank >= 2, got ",
            shape_str(q.shape()), ", ", shape_str(k.shape()), ", ", shape_str(v.shape()));
  bool ok = q.shape()[nd - 1] == k.shape()[nd - 1] && k.shape()[nd - 2] == v.shape()[nd - 2];
  for (int64_t d = 0; ok && d < nd - 2; ++d) ok = q.shape()[d] == k.shape()[d] && q.shape()[d] == v.shape()[d];
  VGG_CHECK(ok, op, ": incompatible shapes q ", shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ",
            shape_str(v.shape()), " (need q [..., Sq, D], k [..., Sk, D], v [..., Sk, Dv])");
  VGG_CHECK(k.shape()[nd - 2] > 0, op, ": key length is 0 in k ", shape_str(k.shape()));
}

}  // namespace

void set_attention_jvp(AttentionJvp mode) { jvp_mode().store(mode); }
AttentionJvp attention_jvp_mode() { return jvp_mode().load(); }

Tensor attention_jvp(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& tq, const Tensor& tk,
                     const Tensor& tv, double scale) {
  check_attention("attention_jvp", q, k, v);
  const char* names[3] = {"tq", "tk", "tv"};
  const Tensor* primal[3] = {&q, &k, &v};
  const Tensor* tan[3] = {&tq, &tk, &tv};
  for (int i = 0; i < 3; ++i)
    if (tan[i]->defined()) {
      detail::check_same("attention_jvp", *primal[i], *tan[i]);
      VGG_CHECK(tan[i]->shape() == primal[i]->shape(), "attention_jvp: tangent ", names[i], " ",
                shape_str(tan[i]->shape()), " must have its primal's shape ", shape_str(primal[i]->shape()));
    }
  VGG_CHECK(has_kernel<kernels::AttnJvpKernel>(q.device(), q.dtype()) &&
                has_kernel<kernels::AttnJvpBwdKernel>(q.device(), q.dtype()),
            "attention_jvp: no fused kernel for ", describe(q), " (use AttentionJvp::Composed)");
  const kernels::AttnArgs a = attn_args(q, k, v, scale);
  auto cont = [](const Tensor& t) { return t.defined() ? contiguous_raw(t) : Tensor(); };
  Tensor qc = cont(q), kc = cont(k), vc = cont(v), tqc = cont(tq), tkc = cont(tk), tvc = cont(tv);
  auto ptr = [](const Tensor& t) -> const void* { return t.defined() ? t.data_ptr() : nullptr; };
  Shape os(q.shape().begin(), q.shape().end() - 1);
  os.push_back(a.dv);
  Shape ls(q.shape().begin(), q.shape().end() - 1);
  const DType st = q.dtype() == DType::F64 ? DType::F64 : DType::F32;
  Tensor o = empty(os, q.dtype(), q.device()), to = empty(os, q.dtype(), q.device());
  Tensor lse = empty(ls, st, q.device()), mu = empty(ls, st, q.device());
  if (o.numel() > 0)
    get_kernel<kernels::AttnJvpKernel>(q.device(), q.dtype())(a, qc.data_ptr(), kc.data_ptr(), vc.data_ptr(), ptr(tqc),
                                                              ptr(tkc), ptr(tvc), o.data_ptr(), to.data_ptr(),
                                                              lse.data_ptr(), mu.data_ptr());
  if (any_requires_grad({&q, &k, &v, &tq, &tk, &tv})) {
    auto node = record("attention_jvp", {q, k, v, tq, tk, tv}, {&to});
    SavedTensor sq(qc, false), sk(kc, false), sv(vc, false), so(to, true);
    SavedTensor stq, stk, stv;
    if (tqc.defined()) stq = SavedTensor(tqc, false);
    if (tkc.defined()) stk = SavedTensor(tkc, false);
    if (tvc.defined()) stv = SavedTensor(tvc, false);
    node->backward = [=](const Grads& g, const std::vector<bool>& needs) -> Grads {
      detail::no_double_backward("attention_jvp", "AttentionJvp::Composed");
      if (!g[0].defined()) return Grads(6);
      const char* op = "attention_jvp";
      Tensor qv = sq.unpack(op), kv = sk.unpack(op), vv = sv.unpack(op), tov = so.unpack(op);
      Tensor tqv = stq.defined() ? stq.unpack(op) : Tensor(), tkv = stk.defined() ? stk.unpack(op) : Tensor(),
             tvv = stv.defined() ? stv.unpack(op) : Tensor();
      Tensor dto = contiguous_raw(g[0]);
      const Tensor* like[6] = {&qv, &kv, &vv, &tqv, &tkv, &tvv};
      Grads out(6);
      for (int i = 0; i < 6; ++i)
        if (needs[i] && like[i]->defined()) out[i] = empty(like[i]->shape(), like[i]->dtype(), like[i]->device());
      auto in = [](const Tensor& t) -> const void* { return t.defined() ? t.data_ptr() : nullptr; };
      auto res = [](Tensor& t) -> void* { return t.defined() ? t.data_ptr() : nullptr; };
      kernels::AttnJvpGrads args{in(qv),  in(kv),  in(vv),     in(tqv),      in(tkv),      in(tvv),
                                 in(o),   in(tov), in(lse),    in(mu),       nullptr,      dto.data_ptr(),
                                 res(out[0]), res(out[1]), res(out[2]), res(out[3]), res(out[4]), res(out[5])};
      get_kernel<kernels::AttnJvpBwdKernel>(qv.device(), qv.dtype())(a, args);
      return out;
    };
  }
  detail::forward_rule("attention_jvp", {&q, &k, &v, &tq, &tk, &tv}, to, [&](const std::vector<Tensor>&) -> Tensor {
    VGG_FAIL("attention_jvp: forward mode over the fused JVP is not supported (use AttentionJvp::Composed)");
  });
  return to;
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, AttentionImpl impl) {
  check_attention("attention", q, k, v);
  if (impl == AttentionImpl::Naive) {
    Tensor s = mul(matmul(q, transpose(k, -1, -2)), scale);
    return matmul(softmax(s, -1), v);
  }
  return tiled(q, k, v, scale);
}

}  // namespace vgg::ops
