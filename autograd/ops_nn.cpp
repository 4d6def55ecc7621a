// softmax, normalisation layers and indexing ops with their derivative rules.
#include "autograd/ops_util.h"
#include "kernels/index.h"
#include "kernels/norm.h"
#include "kernels/softmax.h"

namespace vgg::ops {

namespace {

struct OuterInner {
  int64_t outer = 1, n = 1, inner = 1;
};
OuterInner split_at(const Shape& s, int64_t d) {
  OuterInner r;
  for (int64_t i = 0; i < d; ++i) r.outer *= s[i];
  r.n = s.empty() ? 1 : s[d];
  for (size_t i = d + 1; i < s.size(); ++i) r.inner *= s[i];
  return r;
}

Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  detail::check_float(name, x);
  const int64_t d = wrap_dim(dim, x.dim(), name);
  Tensor xc = contiguous_raw(x);
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  OuterInner oi = split_at(x.shape(), d);
  if (y.numel() > 0)
    get_kernel<kernels::SoftmaxKernel>(x.device(), x.dtype())(log, oi.outer, oi.n, oi.inner, xc.data_ptr(),
                                                                      y.data_ptr());
  if (any_requires_grad({&x})) {
    auto node = record(name, {x}, {&y});
    SavedTensor sy(y, true);
    const int64_t rd = x.dim() == 0 ? 0 : d;
    node->backward = [sy, rd, log, name](const Grads& g, const std::vector<bool>&) -> Grads {
      Tensor yv = sy.unpack(name);
      if (log) return {sub(g[0], mul(exp(yv), sum(g[0], {rd}, true)))};
      return {mul(yv, sub(g[0], sum(mul(g[0], yv), {rd}, true)))};
    };
  }
  // softmax: ty = y·(t − Σ y·t); log_softmax: ty = t − Σ softmax·t
  detail::forward_rule(name, {&x}, y, [&](const std::vector<Tensor>& t) {
    const int64_t rd = x.dim() == 0 ? 0 : d;
    Tensor yv = fwad::detail::history_alias(y);
    if (log) return sub(t[0], sum(mul(exp(yv), t[0]), {rd}, true));
    return mul(yv, sub(t[0], sum(mul(yv, t[0]), {rd}, true)));
  });
  return y;
}

Dims trailing_dims(const char* op, const Tensor& x, const Shape& ns) {
  VGG_CHECK(!ns.empty() && ns.size() <= x.shape().size() &&
                std::equal(ns.begin(), ns.end(), x.shape().end() - static_cast<int64_t>(ns.size())),
            op, ": normalized_shape ", shape_str(ns), " does not match the trailing dims of ", describe(x));
  Dims d;
  for (size_t i = 0; i < ns.size(); ++i) d.push_back(-1 - static_cast<int64_t>(i));
  return d;
}

void check_param(const char* op, const char* what, const Tensor& p, const Tensor& x, const Shape& ns) {
  if (!p.defined()) return;
  detail::check_same(op, x, p);
  VGG_CHECK(p.shape() == ns, op, ": ", what, " has shape ", shape_str(p.shape()), ", expected ", shape_str(ns));
}

void check_index_range(const char* op, const Tensor& idx0, int64_t n, int64_t dim) {
  const Tensor idx = idx0.device().is_cpu() ? idx0 : to_device_raw(idx0, Device::cpu());  // device indices: checked on a copy
  const int64_t* p = idx.data<int64_t>();
  for (int64_t i = 0; i < idx.numel(); ++i)
    VGG_CHECK(p[i] >= 0 && p[i] < n, op, ": index ", p[i], " is out of range for dim ", dim, " of size ", n);
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

Tensor layer_norm(const Tensor& x, const Shape& ns, const Tensor& w, const Tensor& b, double eps) {
  detail::check_float("layer_norm", x);
  Dims dims = trailing_dims("layer_norm", x, ns);
  check_param("layer_norm", "weight", w, x, ns);
  check_param("layer_norm", "bias", b, x, ns);
  VGG_CHECK(eps >= 0, "layer_norm: eps must be >= 0, got ", eps);
  const int64_t n = numel_of(ns);
  Tensor xc = contiguous_raw(x);
  Tensor wc = w.defined() ? contiguous_raw(w) : w, bc = b.defined() ? contiguous_raw(b) : b;
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  if (y.numel() > 0)
    get_kernel<kernels::LayerNormKernel>(x.device(), x.dtype())(
        x.numel() / n, n, xc.data_ptr(), wc.defined() ? wc.data_ptr() : nullptr,
        bc.defined() ? bc.data_ptr() : nullptr, eps, y.data_ptr());
  if (any_requires_grad({&x, &w, &b})) {
    auto node = record("layer_norm", {x, w, b}, {&y});
    SavedTensor sx(x, false), sw(w, false);
    node->backward = [=](const Grads& g, const std::vector<bool>& needs) -> Grads {
      // Recomputed with differentiable ops so that double backward works.
      Tensor xv = sx.unpack("layer_norm");
      Tensor xm = sub(xv, mean(xv, dims, true));
      Tensor rstd = rsqrt(add(mean(square(xm), dims, true), eps));
      Tensor xhat = mul(xm, rstd);
      Tensor gw, gb, gx;
      if (needs[1]) gw = sum_to(mul(g[0], xhat), ns);
      if (needs[2]) gb = sum_to(g[0], ns);
      if (needs[0]) {
        Tensor gh = w.defined() ? mul(g[0], sw.unpack("layer_norm")) : g[0];
        gx = mul(rstd, sub(sub(gh, mean(gh, dims, true)), mul(xhat, mean(mul(gh, xhat), dims, true))));
      }
      return {gx, gw, gb};
    };
  }
  // y = x̂·w + b with x̂ = (x − μ)·rstd, whose Jacobian is symmetric:
  // tx̂ = rstd·(tx − mean(tx) − x̂·mean(tx·x̂)); ty = tx̂·w + x̂·tw + tb
  detail::forward_rule("layer_norm", {&x, &w, &b}, y, [&](const std::vector<Tensor>& t) {
    Tensor xm = sub(x, mean(x, dims, true));
    Tensor rstd = rsqrt(add(mean(square(xm), dims, true), eps));
    Tensor xhat = mul(xm, rstd);
    Tensor ty;
    if (t[0].defined()) {
      Tensor th = mul(rstd, sub(sub(t[0], mean(t[0], dims, true)), mul(xhat, mean(mul(t[0], xhat), dims, true))));
      ty = w.defined() ? mul(th, w) : th;
    }
    if (t[1].defined()) ty = detail::add_terms(ty, mul(xhat, t[1]));
    if (t[2].defined()) ty = detail::add_terms(ty, detail::fit(t[2], x.shape()));
    return ty;
  });
  return y;
}

Tensor layer_norm_modulate(const Tensor& x, const Tensor& scale, const Tensor& shift, double eps) {
  detail::check_float("layer_norm_modulate", x);
  detail::check_same("layer_norm_modulate", x, scale);
  detail::check_same("layer_norm_modulate", x, shift);
  VGG_CHECK(x.dim() == 3 && scale.dim() == 2 && scale.shape() == shift.shape() && scale.size(0) == x.size(0) &&
                scale.size(1) == x.size(2),
            "layer_norm_modulate: need x [B, T, D] and scale, shift [B, D], got ", describe(x), ", ", describe(scale),
            ", ", describe(shift));
  VGG_CHECK(eps >= 0, "layer_norm_modulate: eps must be >= 0, got ", eps);
  const Dims last = {2};
  Tensor xc = contiguous_raw(x), sc = contiguous_raw(scale), hc = contiguous_raw(shift);
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  if (y.numel() > 0)
    get_kernel<kernels::LayerNormModulateKernel>(x.device(), x.dtype())(
        x.size(0), x.size(1), x.size(2), xc.data_ptr(), sc.data_ptr(), hc.data_ptr(), eps, y.data_ptr());
  // x̂ = (x − μ)·rstd with differentiable ops (recomputed: the backward and the JVP need it)
  auto normalised = [last, eps](const Tensor& xv, Tensor* rstd) {
    Tensor xm = sub(xv, mean(xv, last, true));
    *rstd = rsqrt(add(mean(square(xm), last, true), eps));
    return mul(xm, *rstd);
  };
  if (any_requires_grad({&x, &scale, &shift})) {
    auto node = record("layer_norm_modulate", {x, scale, shift}, {&y});
    SavedTensor sx(x, false), ss(scale, false);
    node->backward = [=](const Grads& g, const std::vector<bool>& needs) -> Grads {
      // the fused kernel where the device has one and no graph of the backward is wanted
      if (!grad_enabled() && has_kernel<kernels::LayerNormModulateBwdKernel>(g[0].device(), g[0].dtype()) &&
          g[0].size(2) <= kernels::kLayerNormModulateBwdMaxWidth) {
        Tensor xv = contiguous_raw(sx.unpack("layer_norm_modulate")), sv = contiguous_raw(ss.unpack("layer_norm_modulate"));
        Tensor gc = contiguous_raw(g[0]), gx, gs, gh;
        if (needs[0]) gx = empty(xv.shape(), xv.dtype(), xv.device());
        if (needs[1] || needs[2]) {
          gs = empty(sv.shape(), sv.dtype(), sv.device());
          gh = empty(sv.shape(), sv.dtype(), sv.device());
        }
        get_kernel<kernels::LayerNormModulateBwdKernel>(gc.device(), gc.dtype())(
            xv.size(0), xv.size(1), xv.size(2), xv.data_ptr(), sv.data_ptr(), gc.data_ptr(), eps,
            needs[0] ? gx.data_ptr() : nullptr, gs.defined() ? gs.data_ptr() : nullptr, gh.defined() ? gh.data_ptr() : nullptr);
        return {gx, needs[1] ? gs : Tensor(), needs[2] ? gh : Tensor()};
      }
      Tensor rstd, xhat = normalised(sx.unpack("layer_norm_modulate"), &rstd);
      Tensor gx, gs, gh;
      if (needs[1]) gs = sum(mul(g[0], xhat), {1});
      if (needs[2]) gh = sum(g[0], {1});
      if (needs[0]) {
        Tensor gm = mul(g[0], add(unsqueeze(ss.unpack("layer_norm_modulate"), 1), 1.0));
        gx = mul(rstd, sub(sub(gm, mean(gm, last, true)), mul(xhat, mean(mul(gm, xhat), last, true))));
      }
      return {gx, gs, gh};
    };
  }
  // ty = tx̂·(1 + s) + x̂·ts + th, tx̂ = rstd·(tx − mean(tx) − x̂·mean(tx·x̂)) (layer_norm's JVP)
  detail::forward_rule("layer_norm_modulate", {&x, &scale, &shift}, y, [&](const std::vector<Tensor>& t) {
    Tensor rstd, xhat = normalised(x, &rstd);
    Tensor ty;
    if (t[0].defined()) {
      Tensor th = mul(rstd, sub(sub(t[0], mean(t[0], last, true)), mul(xhat, mean(mul(t[0], xhat), last, true))));
      ty = mul(th, add(unsqueeze(scale, 1), 1.0));
    }
    if (t[1].defined()) ty = detail::add_terms(ty, mul(xhat, unsqueeze(t[1], 1)));
    if (t[2].defined()) ty = detail::add_terms(ty, detail::fit(unsqueeze(t[2], 1), x.shape()));
    return ty;
  });
  return y;
}

Tensor gated_residual(const Tensor& x, const Tensor& gate, const Tensor& y) {
  detail::check_float("gated_residual", x);
  detail::check_same("gated_residual", x, gate);
  detail::check_same("gated_residual", x, y);
  VGG_CHECK(x.dim() == 3 && y.shape() == x.shape() && gate.dim() == 2 && gate.size(0) == x.size(0) &&
                gate.size(1) == x.size(2),
            "gated_residual: need x, y [B, T, D] and gate [B, D], got ", describe(x), ", ", describe(gate), ", ",
            describe(y));
  Tensor xc = contiguous_raw(x), gc = contiguous_raw(gate), yc = contiguous_raw(y);
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0)
    get_kernel<kernels::GatedResidualKernel>(x.device(), x.dtype())(
        x.size(0), x.size(1), x.size(2), xc.data_ptr(), gc.data_ptr(), yc.data_ptr(), out.data_ptr());
  if (any_requires_grad({&x, &gate, &y})) {
    auto node = record("gated_residual", {x, gate, y}, {&out});
    SavedTensor sg(gate, false), sy(y, false);
    node->backward = [=](const Grads& g, const std::vector<bool>& needs) -> Grads {
      Tensor gx, gg, gy;
      if (needs[0]) gx = g[0];
      // the fused kernel where the device has one and no graph of the backward is wanted
      if (!grad_enabled() && (needs[1] || needs[2]) &&
          has_kernel<kernels::GatedResidualBwdKernel>(g[0].device(), g[0].dtype())) {
        Tensor gc = contiguous_raw(g[0]), gv = contiguous_raw(sg.unpack("gated_residual"));
        Tensor yv = contiguous_raw(sy.unpack("gated_residual"));
        if (needs[1]) gg = empty(gv.shape(), gv.dtype(), gv.device());
        if (needs[2]) gy = empty(gc.shape(), gc.dtype(), gc.device());
        get_kernel<kernels::GatedResidualBwdKernel>(gc.device(), gc.dtype())(
            gc.size(0), gc.size(1), gc.size(2), gc.data_ptr(), gv.data_ptr(), yv.data_ptr(),
            needs[2] ? gy.data_ptr() : nullptr, needs[1] ? gg.data_ptr() : nullptr);
        return {gx, gg, gy};
      }
      if (needs[1]) gg = sum(mul(g[0], sy.unpack("gated_residual")), {1});
      if (needs[2]) gy = mul(g[0], unsqueeze(sg.unpack("gated_residual"), 1));
      return {gx, gg, gy};
    };
  }
  // t_out = t_x + t_gate·y + gate·t_y
  detail::forward_rule("gated_residual", {&x, &gate, &y}, out, [&](const std::vector<Tensor>& t) {
    Tensor to;
    if (t[0].defined()) to = t[0];
    if (t[1].defined()) to = detail::add_terms(to, mul(unsqueeze(t[1], 1), y));
    if (t[2].defined()) to = detail::add_terms(to, mul(unsqueeze(gate, 1), t[2]));
    return detail::fit(to, x.shape());
  });
  return out;
}

Tensor rms_norm(const Tensor& x, const Shape& ns, const Tensor& w, double eps) {
  detail::check_float("rms_norm", x);
  Dims dims = trailing_dims("rms_norm", x, ns);
  check_param("rms_norm", "weight", w, x, ns);
  VGG_CHECK(eps >= 0, "rms_norm: eps must be >= 0, got ", eps);
  const int64_t n = numel_of(ns);
  Tensor xc = contiguous_raw(x);
  Tensor wc = w.defined() ? contiguous_raw(w) : w;
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  if (y.numel() > 0)
    get_kernel<kernels::RmsNormKernel>(x.device(), x.dtype())(
        x.numel() / n, n, xc.data_ptr(), wc.defined() ? wc.data_ptr() : nullptr, eps, y.data_ptr());
  if (any_requires_grad({&x, &w})) {
    auto node = record("rms_norm", {x, w}, {&y});
    SavedTensor sx(x, false), sw(w, false);
    node->backward = [=](const Grads& g, const std::vector<bool>& needs) -> Grads {
      Tensor xv = sx.unpack("rms_norm");
      Tensor rstd = rsqrt(add(mean(square(xv), dims, true), eps));
      Tensor xhat = mul(xv, rstd);
      Tensor gw, gx;
      if (needs[1]) gw = sum_to(mul(g[0], xhat), ns);
      if (needs[0]) {
        Tensor gh = w.defined() ? mul(g[0], sw.unpack("rms_norm")) : g[0];
        gx = mul(rstd, sub(gh, mul(xhat, mean(mul(gh, xhat), dims, true))));
      }
      return {gx, gw};
    };
  }
  // y = x̂·w with x̂ = x·rstd: tx̂ = rstd·(tx − x̂·mean(tx·x̂)); ty = tx̂·w + x̂·tw
  detail::forward_rule("rms_norm", {&x, &w}, y, [&](const std::vector<Tensor>& t) {
    Tensor rstd = rsqrt(add(mean(square(x), dims, true), eps));
    Tensor xhat = mul(x, rstd);
    Tensor ty;
    if (t[0].defined()) {
      Tensor th = mul(rstd, sub(t[0], mul(xhat, mean(mul(t[0], xhat), dims, true))));
      ty = w.defined() ? mul(th, w) : th;
    }
    if (t[1].defined()) ty = detail::add_terms(ty, mul(xhat, t[1]));
    return ty;
  });
  return y;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  detail::check_defined("index_select", x);
  VGG_CHECK(x.dim() > 0, "index_select: cannot index a 0-dim tensor");
  const int64_t d = wrap_dim(dim, x.dim(), "index_select");
  Tensor idx = detail::index_i64("index_select", index);
  VGG_CHECK(idx.dim() <= 1, "index_select: index must be 1-D, got ", describe(index));
  check_index_range("index_select", idx, x.shape()[d], d);
  OuterInner oi = split_at(x.shape(), d);
  Shape s = x.shape();
  s[d] = idx.numel();
  Tensor xc = contiguous_raw(x);
  Tensor y = empty(s, x.dtype(), x.device());
  if (y.numel() > 0)
    get_kernel<kernels::IndexSelectKernel>(x.device(), x.dtype())(
        oi.outer, oi.n, oi.inner, xc.data_ptr(), idx.data<int64_t>(), idx.numel(), y.data_ptr());
  if (any_requires_grad({&x})) {
    auto node = record("index_select", {x}, {&y});
    Shape xs = x.shape();
    node->backward = [xs, d, idx](const Grads& g, const std::vector<bool>&) -> Grads {
      return {index_add(zeros(xs, {g[0].dtype(), g[0].device()}), d, idx, g[0])};
    };
  }
  detail::forward_rule("index_select", {&x}, y,
                       [&](const std::vector<Tensor>& t) { return index_select(t[0], d, idx); });
  return y;
}

Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  detail::check_same("index_add", x, src);
  VGG_CHECK(x.dim() > 0, "index_add: cannot index a 0-dim tensor");
  const int64_t d = wrap_dim(dim, x.dim(), "index_add");
  Tensor idx = detail::index_i64("index_add", index);
  VGG_CHECK(idx.dim() <= 1, "index_add: index must be 1-D, got ", describe(index));
  check_index_range("index_add", idx, x.shape()[d], d);
  Shape s = x.shape();
  s[d] = idx.numel();
  VGG_CHECK(src.shape() == s, "index_add: source has shape ", shape_str(src.shape()), ", expected ", shape_str(s));
  OuterInner oi = split_at(x.shape(), d);
  Tensor y = clone_raw(x), sc = contiguous_raw(src);
  if (src.numel() > 0)
    get_kernel<kernels::IndexAddKernel>(x.device(), x.dtype())(oi.outer, oi.n, oi.inner, y.data_ptr(),
                                                                        idx.data<int64_t>(), idx.numel(), sc.data_ptr());
  if (any_requires_grad({&x, &src})) {
    auto node = record("index_add", {x, src}, {&y});
    node->backward = [d, idx](const Grads& g, const std::vector<bool>& needs) -> Grads {
      return {needs[0] ? g[0] : Tensor(), needs[1] ? index_select(g[0], d, idx) : Tensor()};
    };
  }
  // linear in (x, src)
  detail::forward_rule("index_add", {&x, &src}, y, [&](const std::vector<Tensor>& t) {
    if (!t[1].defined()) return t[0];
    return index_add(t[0].defined() ? t[0] : zeros(x.shape(), {x.dtype(), x.device()}), d, idx, t[1]);
  });
  return y;
}

namespace {
void check_gather_index(const char* op, const Tensor& x, const Tensor& idx, int64_t d) {
  bool ok = idx.dim() == x.dim();
  for (int64_t k = 0; ok && k < x.dim(); ++k) ok = k == d || idx.shape()[k] == x.shape()[k];
  VGG_CHECK(ok, op, ": index shape ", shape_str(idx.shape()), " must equal input shape ", shape_str(x.shape()),
            " except along dim ", d);
  check_index_range(op, idx, x.shape()[d], d);
}
}  // namespace

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  detail::check_defined("gather", x);
  VGG_CHECK(x.dim() > 0, "gather: cannot index a 0-dim tensor");
  const int64_t d = wrap_dim(dim, x.dim(), "gather");
  Tensor idx = detail::index_i64("gather", index);
  check_gather_index("gather", x, idx, d);
  OuterInner oi = split_at(x.shape(), d);
  Tensor xc = contiguous_raw(x);
  Tensor y = empty(idx.shape(), x.dtype(), x.device());
  if (y.numel() > 0)
    get_kernel<kernels::GatherKernel>(x.device(), x.dtype())(oi.outer, oi.n, oi.inner, xc.data_ptr(),
                                                                   idx.data<int64_t>(), idx.shape()[d], y.data_ptr());
  if (any_requires_grad({&x})) {
    auto node = record("gather", {x}, {&y});
    Shape xs = x.shape();
    node->backward = [xs, d, idx](const Grads& g, const std::vector<bool>&) -> Grads {
      return {scatter_add(zeros(xs, {g[0].dtype(), g[0].device()}), d, idx, g[0])};
    };
  }
  detail::forward_rule("gather", {&x}, y, [&](const std::vector<Tensor>& t) { return gather(t[0], d, idx); });
  return y;
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  detail::check_same("scatter_add", x, src);
  VGG_CHECK(x.dim() > 0, "scatter_add: cannot index a 0-dim tensor");
  const int64_t d = wrap_dim(dim, x.dim(), "scatter_add");
  Tensor idx = detail::index_i64("scatter_add", index);
  check_gather_index("scatter_add", x, idx, d);
  VGG_CHECK(src.shape() == idx.shape(), "scatter_add: source shape ", shape_str(src.shape()),
            " must equal index shape ", shape_str(idx.shape()));
  OuterInner oi = split_at(x.shape(), d);
  Tensor y = clone_raw(x), sc = contiguous_raw(src);
  if (src.numel() > 0)
    get_kernel<kernels::ScatterAddKernel>(x.device(), x.dtype())(
        oi.outer, oi.n, oi.inner, y.data_ptr(), idx.data<int64_t>(), idx.shape()[d], sc.data_ptr());
  if (any_requires_grad({&x, &src})) {
    auto node = record("scatter_add", {x, src}, {&y});
    node->backward = [d, idx](const Grads& g, const std::vector<bool>& needs) -> Grads {
      return {needs[0] ? g[0] : Tensor(), needs[1] ? gather(g[0], d, idx) : Tensor()};
    };
  }
  // linear in (x, src)
  detail::forward_rule("scatter_add", {&x, &src}, y, [&](const std::vector<Tensor>& t) {
    if (!t[1].defined()) return t[0];
    return scatter_add(t[0].defined() ? t[0] : zeros(x.shape(), {x.dtype(), x.device()}), d, idx, t[1]);
  });
  return y;
}

Tensor embedding(const Tensor& weight, const Tensor& index) {
  detail::check_defined("embedding", weight);
  VGG_CHECK(weight.dim() == 2, "embedding: weight must be [num_embeddings, dim], got ", describe(weight));
  detail::check_defined("embedding", index, "index");
  Shape out = index.shape();
  out.push_back(weight.shape()[1]);
  return reshape(index_select(weight, 0, reshape(index.detach(), {-1})), out);
}

}  // namespace vgg::ops
