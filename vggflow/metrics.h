// Evaluation metrics of the embedded default (docs/flow.md, "Metrics"). All of them work on
// embeddings of a feature network (F_B for evaluation, so the reward network F_A never grades
// its own hacks) or on raw pixels, and are computed in float64 on the CPU.
//
//   frechet_distance   ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}), the FID formula on
//                      any embedding; covariances with the unbiased 1/(n − 1) normalisation.
//   diversity          mean over the n(n − 1)/2 pairs of ‖ê_i − ê_j‖² with ê = e/‖e‖ (0 = all
//                      identical, 2 = orthogonal on average). Twice the "Σ‖e_i − e_j‖²/(2n(n−1))"
//                      batch variance of the reference design.
//   pixel_diversity    mean over the n(n − 1)/2 pairs of images of their mean squared pixel
//                      difference (0 = all identical; at most 4 for images in [−1, 1]): a diversity
//                      no feature network grades.
//   pixel_stats        hacking detectors: fractions of near-black (< 2% intensity) and near-white
//                      (> 98%) pixels and the entropy in bits of a 32-bin intensity histogram.
//   fit_ridge          ridge regression (unpenalised intercept) for the aesthetic probes.
#pragma once
#include <vector>

#include "tensor/tensor.h"
#include "vggflow/nets.h"

namespace vgg::flow {

// Mean and covariance of the rows of e [N, D] (N ≥ 2).
struct Gaussian {
  int64_t dim = 0, n = 0;
  std::vector<double> mean, cov;  // [D], [D·D] row-major
};
Gaussian fit_gaussian(const Tensor& e);
double frechet_distance(const Gaussian& a, const Gaussian& b);
double frechet_distance(const Tensor& ea, const Tensor& eb);

// Eigenvalues (ascending) of the symmetric n×n matrix a (row-major) by cyclic Jacobi rotations;
// the eigenvectors, as columns of an n×n row-major matrix, when `vectors` is given.
std::vector<double> symmetric_eigen(std::vector<double> a, int64_t n, std::vector<double>* vectors = nullptr);

double diversity(const Tensor& e);
double pixel_diversity(const Tensor& images);  // images [N >= 2, ...]

struct PixelStats {
  double near_black = 0, near_white = 0, entropy_bits = 0;
  double nonfinite = 0;  // fraction of NaN/±inf pixels (left out of the other statistics)
};
// images in [−1, 1], any shape; non-finite pixels are counted, not binned (fractions are of all
// pixels, the entropy of the finite ones)
PixelStats pixel_stats(const Tensor& images);

// The network's embeddings of images [N, 1, 32, 32] in chunks, without a graph: [N, E] f32.
Tensor embed_all(FeatureNet& net, const Tensor& images, int64_t chunk = 500);
// Fraction of images the network classifies as labels[i].
double class_accuracy(FeatureNet& net, const Tensor& images, const Tensor& labels, int64_t chunk = 500);

// w, b minimising Σ (x_i·w + b − y_i)² + λ‖w‖² for X [N, D], y [N]; r2 = 1 − SSE/SST on (X, y).
struct RidgeFit {
  std::vector<double> w;
  double b = 0, r2 = 0;
};
RidgeFit fit_ridge(const Tensor& x, const Tensor& y, double lambda);
// 1 − SSE/SST of predictions against targets.
double r_squared(const Tensor& pred, const Tensor& target);

}  // namespace vgg::flow
