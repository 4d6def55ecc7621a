#include "vggflow/evaluate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <fstream>
#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "tensor/error.h"
#include "tensor/factory.h"
#include "tensor/safetensors.h"

namespace vgg::flow {

namespace {

std::pair<double, double> mean_std(const std::vector<double>& v) {
  double m = 0, s = 0;
  for (double x : v) m += x;
  m /= static_cast<double>(v.size());
  for (double x : v) s += (x - m) * (x - m);
  return {m, v.size() > 1 ? std::sqrt(s / static_cast<double>(v.size() - 1)) : 0.0};
}

std::vector<double> reward_values(const Reward& r, const Tensor& images) {
  NoGradGuard ng;
  std::vector<double> out;
  for (int64_t i = 0; i < images.size(0); i += 500) {
    std::vector<double> part = r(ops::narrow(images, 0, i, std::min<int64_t>(500, images.size(0) - i))).to_vector();
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

double mean_of(const std::vector<double>& v) { return mean_std(v).first; }

}  // namespace

EvalReference make_reference(const FlowModel& base, FeatureNet& fb, const ImageSet& test, const EvalOptions& o) {
  VGG_CHECK(o.per_prompt >= 2 && o.diversity_n >= 2 && o.diversity_n <= o.per_prompt,
            "evaluation: need 2 <= diversity samples <= samples per prompt, got ", o.diversity_n, " and ", o.per_prompt);
  const int64_t n = o.per_prompt, total = 10 * n;
  VGG_CHECK(2 * total <= test.n, "evaluation: ", n, " samples per prompt need ", 2 * total,
            " real test images for the FD floor, the test set has ", test.n);
  EvalReference ref;
  ref.opt = o;
  const std::vector<int64_t> ids = per_class_ids(n);
  ref.base_images_a = sample_images(base.velocity(), *base.prompts, ids, o.sampling, o.seed, 32, 80, o.device);
  Tensor b = sample_images(base.velocity(), *base.prompts, ids, o.sampling, o.seed + 1, 32, 80, o.device);
  Tensor ea = embed_all(fb, ref.base_images_a), eb = embed_all(fb, b);
  for (int64_t c = 0; c < 10; ++c) {
    ref.base_b.push_back(fit_gaussian(ops::narrow(eb, 0, c * n, n)));
    ref.fd_base_floor.push_back(frechet_distance(fit_gaussian(ops::narrow(ea, 0, c * n, n)), ref.base_b.back()));
  }
  // two disjoint random real subsets of the sample count
  Generator pg(o.seed + 2, 0);
  Tensor perm = randperm(test.n, pg);
  Tensor real = ops::index_select(test.images, 0, perm);
  Tensor ra = embed_all(fb, ops::narrow(real, 0, 0, total)), rb = embed_all(fb, ops::narrow(real, 0, total, total));
  ref.real_b = fit_gaussian(rb);
  ref.fd_real_floor = frechet_distance(fit_gaussian(ra), ref.real_b);
  ref.real_pixels = pixel_stats(ops::narrow(real, 0, 0, total));
  // the metrics' range: n real images of each class (in the random order above) scored as samples
  // are, and a collapsed model (every sample of a prompt the base's first: zero covariance)
  const std::vector<double> labels = ops::index_select(test.labels, 0, perm).to_vector();
  for (int64_t c = 0; c < 10; ++c) {
    std::vector<int64_t> rows;
    for (size_t i = 0; i < labels.size() && static_cast<int64_t>(rows.size()) < n; ++i)
      if (labels[i] == static_cast<double>(c)) rows.push_back(static_cast<int64_t>(i));
    VGG_CHECK(static_cast<int64_t>(rows.size()) == n, "evaluation: ", n, " samples per prompt need ", n,
              " real test images of class ", c, ", the test set has ", rows.size());
    const Tensor imgs = ops::index_select(real, 0, from_vector(rows, {n}));
    const Tensor ec = embed_all(fb, imgs);
    ref.real_fd_base += frechet_distance(fit_gaussian(ec), ref.base_b[static_cast<size_t>(c)]) / 10;
    ref.real_diversity += diversity(ops::narrow(ec, 0, 0, o.diversity_n)) / 10;
    ref.real_pixel_diversity += pixel_diversity(ops::narrow(imgs, 0, 0, o.diversity_n)) / 10;
    Gaussian one = fit_gaussian(ops::narrow(ea, 0, c * n, n));
    const std::vector<double> first = ops::narrow(ea, 0, c * n, 1).to_vector();
    one.mean = first;
    std::fill(one.cov.begin(), one.cov.end(), 0.0);
    ref.collapsed_fd_base += frechet_distance(one, ref.base_b[static_cast<size_t>(c)]) / 10;
  }
  return ref;
}

namespace {
uint64_t fnv1a_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  VGG_CHECK(in, "reference_key: cannot read ", path);
  uint64_t h = 1469598103934665603ull;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    for (std::streamsize i = 0; i < in.gcount(); ++i) h = (h ^ static_cast<unsigned char>(buf[i])) * 1099511628211ull;
  }
  return h;
}

Tensor gaussians_to(const std::vector<Gaussian>& gs, bool cov) {
  const int64_t d = gs.at(0).dim;
  std::vector<double> v;
  for (const Gaussian& g : gs) v.insert(v.end(), (cov ? g.cov : g.mean).begin(), (cov ? g.cov : g.mean).end());
  return cov ? from_vector(v, {static_cast<int64_t>(gs.size()), d, d}, opts(DType::F64))
             : from_vector(v, {static_cast<int64_t>(gs.size()), d}, opts(DType::F64));
}
}  // namespace

std::string reference_key(const EvalOptions& o, const std::vector<std::string>& files) {
  std::ostringstream k;
  k.precision(17);
  k << "eval-reference v2 n=" << o.per_prompt << " div=" << o.diversity_n << " seed=" << o.seed
    << " steps=" << o.sampling.steps << " shift=" << o.sampling.shift << " guidance=" << o.sampling.guidance;
  if (o.device.is_cuda()) k << " sampled-on-cuda";  // GPU kernels round differently from the CPU's
  std::vector<std::string> sorted = files;
  std::sort(sorted.begin(), sorted.end());
  for (const std::string& f : sorted) k << " " << std::hex << fnv1a_file(f) << std::dec;
  return k.str();
}

void save_reference(const std::string& path, const EvalReference& ref, const std::string& key) {
  std::vector<Gaussian> real = {ref.real_b};
  std::vector<std::pair<std::string, Tensor>> t = {
      {"base_b_mean", gaussians_to(ref.base_b, false)},
      {"base_b_cov", gaussians_to(ref.base_b, true)},
      {"fd_base_floor", from_vector(ref.fd_base_floor, {static_cast<int64_t>(ref.fd_base_floor.size())}, opts(DType::F64))},
      {"real_b_mean", gaussians_to(real, false)},
      {"real_b_cov", gaussians_to(real, true)},
      {"fd_real_floor", from_vector(std::vector<double>{ref.fd_real_floor}, {1}, opts(DType::F64))},
      {"real_pixels", from_vector(std::vector<double>{ref.real_pixels.near_black, ref.real_pixels.near_white,
                                                      ref.real_pixels.entropy_bits, ref.real_pixels.nonfinite},
                                  {4}, opts(DType::F64))},
      {"base_images_a", ref.base_images_a},
      {"reference_values", from_vector(std::vector<double>{ref.real_fd_base, ref.real_diversity, ref.real_pixel_diversity,
                                                           ref.collapsed_fd_base},
                                       {4}, opts(DType::F64))},
  };
  save_safetensors(path, t,
                   {{"key", key}, {"base_n", std::to_string(ref.base_b.at(0).n)}, {"real_n", std::to_string(ref.real_b.n)}});
}

namespace {
// a count from the cache's metadata: digits only, in [lo, hi]
bool parse_count(const std::map<std::string, std::string>& md, const char* key, int64_t lo, int64_t hi, int64_t* out) {
  auto it = md.find(key);
  if (it == md.end() || it->second.empty() || it->second.size() > 18) return false;
  for (char ch : it->second)
    if (ch < '0' || ch > '9') return false;
  *out = std::stoll(it->second);
  return *out >= lo && *out <= hi;
}
}  // namespace

// A cache that is not exactly what these options would compute (missing or malformed tensors, other
// sizes, metadata that is not a count, non-finite statistics) is not used: the reference is
// recomputed (and the cache rewritten by the caller), with one line on stderr saying why.
bool load_reference(const std::string& path, const std::string& key, const EvalOptions& o, EvalReference* ref) {
  if (!std::filesystem::exists(path)) return false;
  auto reject = [&](const std::string& why) {
    std::fprintf(stderr, "evaluation cache %s: %s; recomputing it\n", path.c_str(), why.c_str());
    return false;
  };
  try {
    SafetensorsFile f = load_safetensors(path);
    auto it = f.metadata.find("key");
    if (it == f.metadata.end() || it->second != key) return false;
    const int64_t n = o.per_prompt;
    int64_t base_n = 0, real_n = 0;
    if (!parse_count(f.metadata, "base_n", 2, int64_t{1} << 40, &base_n) || base_n != n)
      return reject("base_n is not the " + std::to_string(n) + " samples per prompt of these options");
    if (!parse_count(f.metadata, "real_n", 2, int64_t{1} << 40, &real_n) || real_n != 10 * n)
      return reject("real_n is not the " + std::to_string(10 * n) + " real images of these options");
    for (const char* name : {"base_b_mean", "base_b_cov", "fd_base_floor", "real_b_mean", "real_b_cov", "fd_real_floor",
                             "real_pixels", "base_images_a", "reference_values"})
      if (!f.contains(name)) return reject(std::string("no tensor ") + name);
    auto unpack = [&](const char* mean, const char* cov, int64_t count, int64_t nsamples, std::vector<Gaussian>* gs) {
      const Tensor& m = f.at(mean);
      const Tensor& c = f.at(cov);
      if (!(m.dim() == 2 && m.size(0) == count && m.size(1) >= 1 && c.dim() == 3 && c.size(0) == count &&
            c.size(1) == m.size(1) && c.size(2) == m.size(1) && is_floating(m.dtype()) && is_floating(c.dtype())))
        return false;
      const std::vector<double> mv = m.to_vector(), cv = c.to_vector();
      for (double v : mv)
        if (!std::isfinite(v)) return false;
      for (double v : cv)
        if (!std::isfinite(v)) return false;
      const auto d = static_cast<size_t>(m.size(1));
      gs->assign(static_cast<size_t>(count), Gaussian{});
      for (size_t i = 0; i < gs->size(); ++i) {
        Gaussian& g = (*gs)[i];
        g.dim = m.size(1), g.n = nsamples;
        g.mean.assign(mv.begin() + static_cast<std::ptrdiff_t>(i * d), mv.begin() + static_cast<std::ptrdiff_t>((i + 1) * d));
        g.cov.assign(cv.begin() + static_cast<std::ptrdiff_t>(i * d * d), cv.begin() + static_cast<std::ptrdiff_t>((i + 1) * d * d));
      }
      return true;
    };
    EvalReference r;
    r.opt = o;
    std::vector<Gaussian> real;
    if (!unpack("base_b_mean", "base_b_cov", 10, base_n, &r.base_b)) return reject("the base Gaussians are not 10 of one width");
    if (!unpack("real_b_mean", "real_b_cov", 1, real_n, &real)) return reject("the real-image Gaussian is malformed");
    if (real[0].dim != r.base_b[0].dim) return reject("the real and base feature widths differ");
    r.real_b = real[0];
    r.fd_base_floor = f.at("fd_base_floor").to_vector();
    const std::vector<double> fr = f.at("fd_real_floor").to_vector(), px = f.at("real_pixels").to_vector();
    if (r.fd_base_floor.size() != 10 || fr.size() != 1 || (px.size() != 3 && px.size() != 4))
      return reject("the floors or pixel statistics have the wrong sizes");
    for (double v : r.fd_base_floor)
      if (!std::isfinite(v)) return reject("a non-finite FD floor");
    for (double v : px)
      if (!std::isfinite(v)) return reject("non-finite pixel statistics");
    if (!std::isfinite(fr[0])) return reject("a non-finite FD floor");
    r.fd_real_floor = fr[0];
    r.real_pixels = {px[0], px[1], px[2], px.size() == 4 ? px[3] : 0.0};
    const Tensor& img = f.at("base_images_a");
    if (!(img.dim() == 4 && img.size(0) == 10 * n && is_floating(img.dtype()))) return reject("base_images_a has the wrong shape");
    r.base_images_a = img;
    const std::vector<double> rv = f.at("reference_values").to_vector();
    if (rv.size() != 4) return reject("reference_values is not 4 values");
    for (double v : rv)
      if (!std::isfinite(v)) return reject("non-finite reference values");
    r.real_fd_base = rv[0], r.real_diversity = rv[1], r.real_pixel_diversity = rv[2], r.collapsed_fd_base = rv[3];
    *ref = std::move(r);
    return true;
  } catch (const std::exception& e) {
    return reject(e.what());
  }
}

nlohmann::json evaluate_images(const Tensor& images, const RewardPair& rw, const EvalReference& ref) {
  const int64_t n = ref.opt.per_prompt;
  VGG_CHECK(images.dim() == 4 && images.size(0) == 10 * n, "evaluate_images: expected ", 10 * n, " images, got ",
            describe(images));
  nlohmann::json j;
  const std::vector<double> r = reward_values(*rw.reward, images), g = reward_values(*rw.gold, images);
  auto [rm, rs] = mean_std(r);
  auto [gm, gs] = mean_std(g);
  j["reward"] = rm, j["reward_std"] = rs, j["gold"] = gm, j["gold_std"] = gs;
  std::vector<double> rp, gp;
  for (int64_t c = 0; c < 10; ++c) {
    rp.push_back(mean_of(std::vector<double>(r.begin() + c * n, r.begin() + (c + 1) * n)));
    gp.push_back(mean_of(std::vector<double>(g.begin() + c * n, g.begin() + (c + 1) * n)));
  }
  j["reward_per_prompt"] = rp, j["gold_per_prompt"] = gp;
  Tensor e = embed_all(*rw.fb, images);
  std::vector<int64_t> labels = per_class_ids(n);
  j["fb_accuracy"] = class_accuracy(*rw.fb, images, from_vector(labels, {10 * n}));
  std::vector<double> div, pdiv, fd;
  for (int64_t c = 0; c < 10; ++c) {
    Tensor ec = ops::narrow(e, 0, c * n, n);
    div.push_back(diversity(ops::narrow(ec, 0, 0, ref.opt.diversity_n)));
    pdiv.push_back(pixel_diversity(ops::narrow(images, 0, c * n, ref.opt.diversity_n)));
    fd.push_back(frechet_distance(fit_gaussian(ec), ref.base_b[static_cast<size_t>(c)]));
  }
  j["diversity"] = mean_of(div), j["diversity_per_prompt"] = div;
  j["pixel_diversity"] = mean_of(pdiv), j["pixel_diversity_per_prompt"] = pdiv;
  j["reference"] = {{"real", {{"fd_base", ref.real_fd_base}, {"diversity", ref.real_diversity},
                              {"pixel_diversity", ref.real_pixel_diversity}}},
                    {"collapsed", {{"fd_base", ref.collapsed_fd_base}, {"diversity", 0.0}, {"pixel_diversity", 0.0}}}};
  j["fd_base"] = mean_of(fd), j["fd_base_per_prompt"] = fd;
  j["fd_base_floor"] = mean_of(ref.fd_base_floor), j["fd_base_floor_per_prompt"] = ref.fd_base_floor;
  j["fd_real"] = frechet_distance(fit_gaussian(e), ref.real_b);
  j["fd_real_floor"] = ref.fd_real_floor;
  const PixelStats p = pixel_stats(images);
  j["near_black"] = p.near_black, j["near_white"] = p.near_white, j["pixel_entropy"] = p.entropy_bits;
  j["nonfinite_pixels"] = p.nonfinite;
  j["real_near_black"] = ref.real_pixels.near_black, j["real_near_white"] = ref.real_pixels.near_white;
  j["real_pixel_entropy"] = ref.real_pixels.entropy_bits;
  j["samples_per_prompt"] = n;
  return j;
}

}  // namespace vgg::flow
