// Direct reward-maximisation baselines on the same Euler sampler (docs/methods.md; Part B of the
// method reference):
//   ReFL     (Xu et al. 2023, as VGG-Flow ran it): roll the current model out without a graph to a
//            random step k among the last 25% of the steps, then one guided velocity evaluation
//            with gradients and the reward of its one-step prediction x̂₁ = x_k + (1 − t_k)·v_θ:
//            L = −mean φ(r(x̂₁)), φ = ReLU (VGG-Flow's "for stable training") or identity.
//   DRaFT-K  (Clark et al. 2024): roll out without a graph to step N − K, keep the graph for the
//            last K steps, L = −mean φ(r(x₁)).
//   DRaFT-LV (K = 1, lower variance): x₁ without a graph, re-noised n times to the last step's
//            time, one graph-carrying step from each: L = −Σᵢ mean φ(r(x̂⁽ⁱ⁾)).
// Gradients reach θ through the guided velocity; the unconditional branch is stop-gradiented in
// ReFL and DRaFT-LV (as in VGG-Flow's matching loss) and kept in DRaFT-K's unrolled steps.
#pragma once
#include "vggflow/methods/common.h"

namespace vgg::flow::methods {

struct BaselineStats {
  double reward = 0;  // mean r at the point the loss is taken
  double out_of_range = 0;  // the fraction of that point's elements outside [−1, 1]
  int64_t step = 0;   // ReFL's k, DRaFT's first graph step
};

Tensor refl_loss(const Policy& p, const Reward& reward, int64_t batch, int64_t steps, double shift, bool relu,
                 Generator& gen, BaselineStats* stats);
Tensor draft_loss(const Policy& p, const Reward& reward, int64_t batch, int64_t steps, double shift, int64_t k,
                  bool relu, Generator& gen, BaselineStats* stats);
// DRaFT-K's K drawn uniformly in [1, k_max] (one draw from gen): the VGG-Flow paper's DRaFT
// baseline truncates the graph at a random time 1 − K·Δt.
int64_t draw_draft_k(int64_t k_max, Generator& gen);
Tensor draft_lv_loss(const Policy& p, const Reward& reward, int64_t batch, int64_t steps, double shift, int64_t n,
                     bool relu, Generator& gen, BaselineStats* stats);

}  // namespace vgg::flow::methods
