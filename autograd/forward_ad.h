// Forward-mode automatic differentiation: dual tensors and Jacobian-vector products.
//
//   {
//     fwad::DualLevel level;                       // tangents exist only inside this scope
//     Tensor x = fwad::make_dual(x0, v);            // x0's data and reverse history, tangent v
//     Tensor y = f(x);                              // every op also computes its output tangent
//     Tensor jv = fwad::tangent(y);                 // J_f(x0)·v (undefined when y ignores x)
//   }
//   auto [ys, jvs] = fwad::jvp(f, {x0}, {v});       // the same in one call
//
// How it works. The tangent lives on the tensor's autograd meta together with the id of the
// level it was attached in; a tangent of any other level (a closed scope) is never read. Each op
// in vgg::ops computes its primal output with its kernel, records its reverse node as usual and
// then, when a level is open and an input carries a tangent, applies its JVP rule: elementwise
// ops multiply the tangent by the derivative (their reverse rule applied to the tangent), linear
// ops (views, reshape, cat, sum, index ops, pad, im2col, pooling, …) apply themselves to it,
// bilinear ones (mul, matmul) use the product rule, and softmax, log_softmax, layer_norm,
// rms_norm, the extrema and the tiled attention kernel have their own rules. Composite ops
// (mean, var, norm, conv2d, embedding, naive attention, …) get theirs through their parts.
// A missing input tangent is zero and its term is skipped.
//
// Rules are written with the differentiable ops and run with reverse recording on, so a tangent
// has reverse-mode history: a loss built from tangents can be differentiated with vgg::grad
// (reverse-over-forward), including with respect to tensors the tangents were made from.
// While a rule runs, tangents are not propagated (no tangents of tangents).
//
// What throws (vgg::Error, one line): make_dual outside a level, or with a tangent whose
// shape, dtype or device differs from the primal's, or on a non-floating primal; opening a level
// while one is open on the same thread (levels do not nest); the in-place ops (add_, mul_,
// copy_, zero_) on a tensor that carries a tangent or with a source that carries one.
//
// Not supported: forward-over-reverse. vgg::grad / vgg::backward run inside a level compute
// ordinary gradients without tangents (the reverse engine pauses propagation). jvp() throws
// when its function ran a backward pass and returned an output without a tangent, since that
// is the shape of a JVP-of-a-gradient request; use double backward (create_graph) instead.
//
// Other ops: detach() drops the tangent; to(dtype) casts it (a non-floating target dtype has
// none); to(device) moves it; comparisons, sign, argmax/argmin and where's condition carry none.
#pragma once
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace vgg::fwad {

// RAII: opens a dual level on this thread. Levels do not nest: opening a second one throws.
// On exit, every tangent attached inside becomes invisible (it is released with its tensor).
class DualLevel {
 public:
  DualLevel();
  ~DualLevel();
  DualLevel(const DualLevel&) = delete;
  DualLevel& operator=(const DualLevel&) = delete;
  uint64_t id() const { return id_; }

 private:
  uint64_t id_;
};

// True while a dual level is open on this thread.
bool level_open();

// A new handle that aliases primal's data and keeps its reverse-mode history (a differentiable
// identity), carrying `tangent` (same shape, dtype and device; floating point).
Tensor make_dual(const Tensor& primal, const Tensor& tangent);

// The tangent of t at the open level; undefined when it has none (or no level is open).
Tensor tangent(const Tensor& t);
bool has_tangent(const Tensor& t);

// (outputs, output tangents) of fn at primals along tangents. Opens its own level (so it cannot
// be called inside one). An undefined tangent means "this input is held fixed" (also for
// non-floating inputs such as indices). Outputs that do not depend on the inputs get zeros.
using MultiFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;
std::pair<std::vector<Tensor>, std::vector<Tensor>> jvp(const MultiFn& fn, const std::vector<Tensor>& primals,
                                                        const std::vector<Tensor>& tangents);

// RAII: pauses tangent propagation on this thread (ops neither read nor produce tangents;
// reverse recording is unaffected). JVP rules and the reverse engine run under it.
class PauseGuard {
 public:
  PauseGuard();
  ~PauseGuard();
  PauseGuard(const PauseGuard&) = delete;
  PauseGuard& operator=(const PauseGuard&) = delete;

 private:
  bool prev_;
};

namespace detail {
// True when a level is open and propagation is not paused: the one test every op makes.
bool propagating();
// The current level's tangent of t, without checks (undefined when none).
Tensor tangent_of(const Tensor& t);
// Attaches t as y's tangent at the current level; checks shape, dtype and device (naming op).
void set_tangent(const char* op, const Tensor& y, const Tensor& t);
// A handle on t's data with t's reverse history and no tangent: rules that use their own
// output go through it, so that the tangent's graph never holds the output (no cycle).
Tensor history_alias(const Tensor& t);
// The in-place ops' check: throws "<op>: in-place op on a dual tensor is not supported".
void check_not_dual(const char* op, const Tensor& t);
// Called by the reverse engine when it runs while a level is open.
void note_backward();
}  // namespace detail

}  // namespace vgg::fwad
