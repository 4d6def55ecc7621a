#include "vggflow/metrics.h"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace vgg::flow {

namespace {

using Mat = std::vector<double>;

Mat matmul_sq(const Mat& a, const Mat& b, int64_t n) {
  Mat c(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < n; ++k) {
      const double aik = a[static_cast<size_t>(i * n + k)];
      if (aik == 0.0) continue;
      for (int64_t j = 0; j < n; ++j) c[static_cast<size_t>(i * n + j)] += aik * b[static_cast<size_t>(k * n + j)];
    }
  return c;
}

std::vector<double> rows_f64(const Tensor& e, const char* what) {
  VGG_CHECK(e.dim() == 2 && e.size(0) >= 2 && is_floating(e.dtype()), what, ": embeddings must be a floating [N >= 2, D] tensor, got ",
            describe(e));
  return e.to_vector();
}

}  // namespace

std::vector<double> symmetric_eigen(std::vector<double> a, int64_t n, std::vector<double>* vectors) {
  VGG_CHECK(n >= 1 && static_cast<int64_t>(a.size()) == n * n, "symmetric_eigen: expected ", n * n, " values, got ", a.size());
  auto at = [&](Mat& m, int64_t i, int64_t j) -> double& { return m[static_cast<size_t>(i * n + j)]; };
  Mat v;
  if (vectors) {
    v.assign(static_cast<size_t>(n * n), 0.0);
    for (int64_t i = 0; i < n; ++i) at(v, i, i) = 1.0;
  }
  double total = 0;
  for (double x : a) total += x * x;
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i + 1; j < n; ++j) off += at(a, i, j) * at(a, i, j);
    if (off <= 1e-30 * total || off == 0.0) break;
    for (int64_t p = 0; p < n; ++p)
      for (int64_t q = p + 1; q < n; ++q) {
        const double apq = at(a, p, q);
        if (std::abs(apq) < 1e-300) continue;
        // rotation that zeroes a[p][q] (Golub & Van Loan, symmetric Schur decomposition)
        const double theta = (at(a, q, q) - at(a, p, p)) / (2.0 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1.0));
        const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
        for (int64_t k = 0; k < n; ++k) {  // columns p, q
          const double akp = at(a, k, p), akq = at(a, k, q);
          at(a, k, p) = c * akp - s * akq;
          at(a, k, q) = s * akp + c * akq;
        }
        for (int64_t k = 0; k < n; ++k) {  // rows p, q
          const double apk = at(a, p, k), aqk = at(a, q, k);
          at(a, p, k) = c * apk - s * aqk;
          at(a, q, k) = s * apk + c * aqk;
        }
        if (vectors)
          for (int64_t k = 0; k < n; ++k) {
            const double vkp = at(v, k, p), vkq = at(v, k, q);
            at(v, k, p) = c * vkp - s * vkq;
            at(v, k, q) = s * vkp + c * vkq;
          }
      }
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  std::sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return at(a, x, x) < at(a, y, y); });
  std::vector<double> ev(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ev[static_cast<size_t>(i)] = at(a, order[static_cast<size_t>(i)], order[static_cast<size_t>(i)]);
  if (vectors) {
    vectors->assign(static_cast<size_t>(n * n), 0.0);
    for (int64_t k = 0; k < n; ++k)
      for (int64_t i = 0; i < n; ++i)
        (*vectors)[static_cast<size_t>(k * n + i)] = at(v, k, order[static_cast<size_t>(i)]);
  }
  return ev;
}

Gaussian fit_gaussian(const Tensor& e) {
  const std::vector<double> x = rows_f64(e, "fit_gaussian");
  Gaussian g;
  g.n = e.size(0), g.dim = e.size(1);
  const auto n = static_cast<size_t>(g.n), d = static_cast<size_t>(g.dim);
  g.mean.assign(d, 0.0);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) g.mean[j] += x[i * d + j];
  for (double& m : g.mean) m /= static_cast<double>(n);
  g.cov.assign(d * d, 0.0);
  std::vector<double> c(d);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < d; ++j) c[j] = x[i * d + j] - g.mean[j];
    for (size_t j = 0; j < d; ++j)
      for (size_t k = j; k < d; ++k) g.cov[j * d + k] += c[j] * c[k];
  }
  for (size_t j = 0; j < d; ++j)
    for (size_t k = j; k < d; ++k) {
      g.cov[j * d + k] /= static_cast<double>(n - 1);
      g.cov[k * d + j] = g.cov[j * d + k];
    }
  return g;
}

double frechet_distance(const Gaussian& a, const Gaussian& b) {
  VGG_CHECK(a.dim == b.dim && a.dim > 0, "frechet_distance: embedding sizes differ (", a.dim, " vs ", b.dim, ")");
  const int64_t n = a.dim;
  double dmu = 0, tr = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = a.mean[static_cast<size_t>(i)] - b.mean[static_cast<size_t>(i)];
    dmu += d * d;
    tr += a.cov[static_cast<size_t>(i * n + i)] + b.cov[static_cast<size_t>(i * n + i)];
  }
  // Tr((Σa Σb)^{1/2}) = Σ √eig(Σa^{1/2} Σb Σa^{1/2}), a symmetric PSD product
  Mat v;
  std::vector<double> ev = symmetric_eigen(a.cov, n, &v);
  Mat root(static_cast<size_t>(n * n), 0.0);
  for (int64_t k = 0; k < n; ++k) {
    const double s = std::sqrt(std::max(ev[static_cast<size_t>(k)], 0.0));
    if (s == 0.0) continue;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        root[static_cast<size_t>(i * n + j)] += s * v[static_cast<size_t>(i * n + k)] * v[static_cast<size_t>(j * n + k)];
  }
  Mat m = matmul_sq(matmul_sq(root, b.cov, n), root, n);
  for (int64_t i = 0; i < n; ++i)  // symmetrise the rounding
    for (int64_t j = i + 1; j < n; ++j) {
      const double s = 0.5 * (m[static_cast<size_t>(i * n + j)] + m[static_cast<size_t>(j * n + i)]);
      m[static_cast<size_t>(i * n + j)] = m[static_cast<size_t>(j * n + i)] = s;
    }
  double cross = 0;
  for (double l : symmetric_eigen(std::move(m), n)) cross += std::sqrt(std::max(l, 0.0));
  return std::max(dmu + tr - 2.0 * cross, 0.0);
}

double frechet_distance(const Tensor& ea, const Tensor& eb) {
  return frechet_distance(fit_gaussian(ea), fit_gaussian(eb));
}

double diversity(const Tensor& e) {
  const std::vector<double> x = rows_f64(e, "diversity");
  const auto n = static_cast<size_t>(e.size(0)), d = static_cast<size_t>(e.size(1));
  std::vector<double> u(x.size());
  for (size_t i = 0; i < n; ++i) {
    double s = 0;
    for (size_t j = 0; j < d; ++j) s += x[i * d + j] * x[i * d + j];
    const double inv = 1.0 / std::sqrt(s + 1e-24);
    for (size_t j = 0; j < d; ++j) u[i * d + j] = x[i * d + j] * inv;
  }
  double total = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t k = i + 1; k < n; ++k) {
      double s = 0;
      for (size_t j = 0; j < d; ++j) {
        const double t = u[i * d + j] - u[k * d + j];
        s += t * t;
      }
      total += s;
    }
  return total / (static_cast<double>(n * (n - 1)) / 2.0);
}

double pixel_diversity(const Tensor& images) {
  VGG_CHECK(images.dim() >= 2 && images.size(0) >= 2 && is_floating(images.dtype()),
            "pixel_diversity: expected floating images [N >= 2, ...], got ", describe(images));
  const int64_t n = images.size(0), d = images.numel() / n;
  // Σ_{i<j} ‖x_i − x_j‖² = n·Σ‖x_i‖² − ‖Σ x_i‖², per pixel (so rounding stays local)
  const std::vector<double> x = images.to_vector();
  double total = 0;
  for (int64_t j = 0; j < d; ++j) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double v = x[static_cast<size_t>(i * d + j)];
      s += v, s2 += v * v;
    }
    total += static_cast<double>(n) * s2 - s * s;
  }
  return std::max(0.0, total) / (static_cast<double>(n * (n - 1)) / 2.0) / static_cast<double>(d);
}

PixelStats pixel_stats(const Tensor& images) {
  VGG_CHECK(images.numel() > 0 && is_floating(images.dtype()), "pixel_stats: expected floating images, got ",
            describe(images));
  const std::vector<double> x = images.to_vector();
  constexpr int kBins = 32;
  std::vector<double> hist(kBins, 0.0);
  PixelStats s;
  double finite = 0;
  for (double v : x) {
    if (!std::isfinite(v)) {  // NaN survives a clamp and would index the histogram anywhere
      s.nonfinite += 1;
      continue;
    }
    finite += 1;
    const double u = std::clamp((v + 1.0) * 0.5, 0.0, 1.0);
    if (u < 0.02) s.near_black += 1;
    if (u > 0.98) s.near_white += 1;
    hist[static_cast<size_t>(std::min(kBins - 1, static_cast<int>(u * kBins)))] += 1;
  }
  const auto n = static_cast<double>(x.size());
  s.near_black /= n, s.near_white /= n, s.nonfinite /= n;
  for (double h : hist)
    if (h > 0) s.entropy_bits -= (h / finite) * std::log2(h / finite);
  return s;
}

Tensor embed_all(FeatureNet& net, const Tensor& images, int64_t chunk) {
  NoGradGuard ng;
  std::vector<Tensor> parts;
  for (int64_t i = 0; i < images.size(0); i += chunk)
    parts.push_back(net.embed(ops::narrow(images, 0, i, std::min(chunk, images.size(0) - i))));
  return ops::to(ops::cat(parts, 0), DType::F32);
}

double class_accuracy(FeatureNet& net, const Tensor& images, const Tensor& labels, int64_t chunk) {
  VGG_CHECK(labels.dim() == 1 && labels.size(0) == images.size(0), "class_accuracy: ", describe(labels),
            " labels for ", describe(images));
  NoGradGuard ng;
  int64_t right = 0;
  for (int64_t i = 0; i < images.size(0); i += chunk) {
    const int64_t b = std::min(chunk, images.size(0) - i);
    Tensor pred = ops::argmax(net.logits(ops::narrow(images, 0, i, b)), 1);
    right += static_cast<int64_t>(
        ops::sum(ops::to(ops::eq(pred, ops::to(ops::narrow(labels, 0, i, b), DType::I64)), DType::I64)).item());
  }
  return static_cast<double>(right) / static_cast<double>(images.size(0));
}

RidgeFit fit_ridge(const Tensor& x, const Tensor& y, double lambda) {
  VGG_CHECK(x.dim() == 2 && y.dim() == 1 && x.size(0) == y.size(0) && x.size(0) >= 2, "fit_ridge: X ", describe(x),
            " and y ", describe(y), " must be [N, D] and [N]");
  VGG_CHECK(lambda >= 0, "fit_ridge: lambda must be >= 0, got ", lambda);
  const std::vector<double> xv = x.to_vector(), yv = y.to_vector();
  const auto n = static_cast<size_t>(x.size(0)), d = static_cast<size_t>(x.size(1));
  // centre X and y: the intercept is then ȳ − x̄·w and is not penalised
  std::vector<double> mx(d, 0.0);
  double my = 0;
  for (size_t i = 0; i < n; ++i) {
    my += yv[i];
    for (size_t j = 0; j < d; ++j) mx[j] += xv[i * d + j];
  }
  my /= static_cast<double>(n);
  for (double& m : mx) m /= static_cast<double>(n);
  std::vector<double> a(d * d, 0.0), rhs(d, 0.0), c(d);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < d; ++j) c[j] = xv[i * d + j] - mx[j];
    const double yc = yv[i] - my;
    for (size_t j = 0; j < d; ++j) {
      rhs[j] += c[j] * yc;
      for (size_t k = j; k < d; ++k) a[j * d + k] += c[j] * c[k];
    }
  }
  for (size_t j = 0; j < d; ++j) {
    a[j * d + j] += lambda;
    for (size_t k = 0; k < j; ++k) a[j * d + k] = a[k * d + j];
  }
  // solve through the eigendecomposition (robust when XᵀX is singular and λ = 0: pseudo-inverse)
  std::vector<double> v;
  std::vector<double> ev = symmetric_eigen(a, static_cast<int64_t>(d), &v);
  const double tol = 1e-12 * std::max(1.0, std::abs(ev.back()));
  RidgeFit fit;
  fit.w.assign(d, 0.0);
  for (size_t k = 0; k < d; ++k) {
    if (ev[k] <= tol) continue;
    double p = 0;
    for (size_t j = 0; j < d; ++j) p += v[j * d + k] * rhs[j];
    p /= ev[k];
    for (size_t j = 0; j < d; ++j) fit.w[j] += p * v[j * d + k];
  }
  fit.b = my;
  for (size_t j = 0; j < d; ++j) fit.b -= mx[j] * fit.w[j];
  std::vector<double> pred(n);
  for (size_t i = 0; i < n; ++i) {
    double p = fit.b;
    for (size_t j = 0; j < d; ++j) p += xv[i * d + j] * fit.w[j];
    pred[i] = p;
  }
  fit.r2 = r_squared(from_vector(pred, {static_cast<int64_t>(n)}, opts(DType::F64)), y);
  return fit;
}

double r_squared(const Tensor& pred, const Tensor& target) {
  VGG_CHECK(pred.numel() == target.numel() && pred.numel() >= 2, "r_squared: ", describe(pred), " vs ", describe(target));
  const std::vector<double> p = pred.to_vector(), t = target.to_vector();
  double mean = 0;
  for (double v : t) mean += v;
  mean /= static_cast<double>(t.size());
  double sse = 0, sst = 0;
  for (size_t i = 0; i < t.size(); ++i) sse += (p[i] - t[i]) * (p[i] - t[i]), sst += (t[i] - mean) * (t[i] - mean);
  return sst > 0 ? 1.0 - sse / sst : 0.0;
}

}  // namespace vgg::flow
