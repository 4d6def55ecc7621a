// Metrics: eigenvalues, Fréchet distance against closed forms, diversity, pixel detectors, ridge
// regression, the synthetic quality score, model folders, and the evaluation protocol's
// invariant that a model equal to the base sits exactly at the FD noise floor.
#include <cmath>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "autograd/gradcheck.h"
#include "tensor/safetensors.h"
#include "tests/support/test_support.h"
#include "tests/vggflow/small_model.h"
#include "vggflow/evaluate.h"

namespace vgg::test {
namespace {

// Q diag(d) Qᵀ with Q from Gram–Schmidt of a random matrix
std::vector<double> rotated(const std::vector<double>& d, uint64_t seed, std::vector<double>* q_out = nullptr) {
  const auto n = d.size();
  std::vector<double> q = rnd({static_cast<int64_t>(n), static_cast<int64_t>(n)}, seed).to_vector();
  for (size_t k = 0; k < n; ++k) {  // columns
    for (size_t j = 0; j < k; ++j) {
      double dot = 0;
      for (size_t i = 0; i < n; ++i) dot += q[i * n + k] * q[i * n + j];
      for (size_t i = 0; i < n; ++i) q[i * n + k] -= dot * q[i * n + j];
    }
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += q[i * n + k] * q[i * n + k];
    for (size_t i = 0; i < n; ++i) q[i * n + k] /= std::sqrt(s);
  }
  std::vector<double> a(n * n, 0.0);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j)
      for (size_t k = 0; k < n; ++k) a[i * n + j] += q[i * n + k] * d[k] * q[j * n + k];
  if (q_out) *q_out = q;
  return a;
}

TEST(Metrics, SymmetricEigenRecoversSpectrumAndVectors) {
  std::vector<double> d = {3.0, -1.5, 0.0, 7.25, 0.5, 2.0, 1e-3};
  std::vector<double> a = rotated(d, 11), v;
  std::vector<double> ev = flow::symmetric_eigen(a, 7, &v);
  std::vector<double> sorted = d;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < 7; ++i) EXPECT_NEAR(ev[i], sorted[i], 1e-12);
  // A v_k = λ_k v_k
  for (size_t k = 0; k < 7; ++k)
    for (size_t i = 0; i < 7; ++i) {
      double av = 0;
      for (size_t j = 0; j < 7; ++j) av += a[i * 7 + j] * v[j * 7 + k];
      EXPECT_NEAR(av, ev[k] * v[i * 7 + k], 1e-11);
    }
  EXPECT_TRUE(throws_error([] { flow::symmetric_eigen({1, 2, 3}, 2); }, {"symmetric_eigen", "expected 4 values"}));
}

flow::Gaussian gaussian(std::vector<double> mean, std::vector<double> cov) {
  flow::Gaussian g;
  g.dim = static_cast<int64_t>(mean.size());
  g.n = 100;
  g.mean = std::move(mean);
  g.cov = std::move(cov);
  return g;
}

TEST(Metrics, FrechetDistanceClosedForms) {
  // 1-D: (μ1 − μ2)² + (σ1 − σ2)²
  EXPECT_NEAR(flow::frechet_distance(gaussian({1.0}, {4.0}), gaussian({-0.5}, {0.25})), 2.25 + 2.25, 1e-12);
  // Σ2 = c²Σ1 (same eigenvectors, non-diagonal): ‖Δμ‖² + (1 − c)² TrΣ1
  std::vector<double> d = {2.0, 0.5, 1.0, 3.0, 0.1};
  std::vector<double> s1 = rotated(d, 5), s2 = s1;
  for (double& x : s2) x *= 0.36;  // c = 0.6
  double tr = 0;
  for (double x : d) tr += x;
  flow::Gaussian a = gaussian({0, 1, 0, 0, 2}, s1), b = gaussian({1, 1, 0, -1, 2}, s2);
  EXPECT_NEAR(flow::frechet_distance(a, b), 2.0 + 0.16 * tr, 1e-10);
  EXPECT_NEAR(flow::frechet_distance(a, a), 0.0, 1e-10);
  // commuting diagonal covariances: Σ(√a_i − √b_i)²
  EXPECT_NEAR(flow::frechet_distance(gaussian({0, 0}, {4, 0, 0, 1}), gaussian({0, 0}, {1, 0, 0, 9})), 1.0 + 4.0, 1e-12);
  // from samples: symmetric, zero against itself, and the sample mean/covariance are used
  Tensor x = rnd({50, 4}, 3), y = ops::add(ops::mul(rnd({60, 4}, 4), 2.0), 1.0);
  EXPECT_NEAR(flow::frechet_distance(x, x), 0.0, 1e-9);
  EXPECT_NEAR(flow::frechet_distance(x, y), flow::frechet_distance(y, x), 1e-9);
  EXPECT_GT(flow::frechet_distance(x, y), 4.0);  // the mean shift alone is ‖(1,1,1,1)‖² ≈ 4
  EXPECT_TRUE(throws_error([&] { flow::frechet_distance(x, rnd({5, 3}, 1)); }, {"embedding sizes differ"}));
  EXPECT_TRUE(throws_error([&] { flow::frechet_distance(rnd({1, 4}, 1), x); }, {"[N >= 2, D]"}));
}

TEST(Metrics, DiversityAndPixelStats) {
  Tensor same = ops::expand(rnd({1, 6}, 2), {5, 6});
  EXPECT_NEAR(flow::diversity(same), 0.0, 1e-12);
  // two orthogonal directions (scale does not matter): ‖ê1 − ê2‖² = 2
  EXPECT_NEAR(flow::diversity(from_vector(std::vector<double>{3, 0, 0, 0.5}, {2, 2}, opts(DType::F64))), 2.0, 1e-12);
  // three unit vectors at 120°: each pair 3
  const double s = std::sqrt(3.0) / 2;
  EXPECT_NEAR(flow::diversity(from_vector(std::vector<double>{1, 0, -0.5, s, -0.5, -s}, {3, 2}, opts(DType::F64))), 3.0,
              1e-12);

  // pixel diversity: identical images 0; black against white 4 per pixel; three images against a
  // brute-force mean over pairs
  EXPECT_NEAR(flow::pixel_diversity(ops::expand(rnd({1, 1, 3, 3}, 4), {4, 1, 3, 3})), 0.0, 1e-15);
  EXPECT_DOUBLE_EQ(flow::pixel_diversity(ops::cat({full({1, 1, 2, 2}, -1.0), full({1, 1, 2, 2}, 1.0)}, 0)), 4.0);
  {
    Tensor x = rnd({3, 1, 2, 3}, 5);
    const std::vector<double> v = x.to_vector();
    double brute = 0;
    for (int i = 0; i < 3; ++i)
      for (int k = i + 1; k < 3; ++k)
        for (int j = 0; j < 6; ++j) brute += (v[i * 6 + j] - v[k * 6 + j]) * (v[i * 6 + j] - v[k * 6 + j]) / 6 / 3;
    EXPECT_NEAR(flow::pixel_diversity(x), brute, 1e-12);
    EXPECT_TRUE(throws_error([&] { flow::pixel_diversity(ops::narrow(x, 0, 0, 1)); }, {"N >= 2"}));
  }

  flow::PixelStats black = flow::pixel_stats(full({2, 1, 4, 4}, -1.0));
  EXPECT_DOUBLE_EQ(black.near_black, 1.0);
  EXPECT_DOUBLE_EQ(black.near_white, 0.0);
  EXPECT_DOUBLE_EQ(black.entropy_bits, 0.0);
  // one pixel at the centre of each of the 32 bins: 5 bits
  std::vector<double> v;
  for (int b = 0; b < 32; ++b) v.push_back(2.0 * (b + 0.5) / 32.0 - 1.0);
  flow::PixelStats u = flow::pixel_stats(from_vector(v, {32}, opts(DType::F64)));
  EXPECT_NEAR(u.entropy_bits, 5.0, 1e-12);
  EXPECT_NEAR(u.near_black, 1.0 / 32, 1e-12);  // only bin 0's centre (1.6%) is below 2%
  EXPECT_NEAR(u.near_white, 1.0 / 32, 1e-12);
  EXPECT_EQ(u.nonfinite, 0.0);
  // NaN and ±inf pixels (one NaN weight in the base model makes them) are counted, not binned:
  // before, a NaN survived the clamp and indexed the histogram out of bounds (SIGSEGV)
  std::vector<double> bad = v;
  bad.push_back(std::nan(""));
  bad.push_back(INFINITY);
  bad.push_back(-INFINITY);
  bad.push_back(std::nan(""));
  flow::PixelStats b = flow::pixel_stats(from_vector(bad, {36}, opts(DType::F64)));
  EXPECT_DOUBLE_EQ(b.nonfinite, 4.0 / 36);
  EXPECT_NEAR(b.entropy_bits, 5.0, 1e-12);      // of the finite pixels
  EXPECT_NEAR(b.near_black, 1.0 / 36, 1e-12);  // fractions of all pixels
  flow::PixelStats all_nan = flow::pixel_stats(full({4}, std::nan("")));
  EXPECT_EQ(all_nan.nonfinite, 1.0);
  EXPECT_EQ(all_nan.entropy_bits, 0.0);
}

// A cached evaluation reference is used only when it is exactly what the options would compute;
// anything else (metadata that is not a count, zero prompts or real rows, other sizes, NaN floors,
// missing tensors) is refused without an exception, so the caller recomputes it. Before, a cache with
// 0 prompts crashed in frechet_distance, 0 real rows threw a range error, bad metadata threw "stoll".
TEST(EvalCache, MalformedCachesAreRecomputedNotTrusted) {
  const std::string dir = ::testing::TempDir() + "vgg_eval_cache_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  flow::EvalOptions o;
  o.per_prompt = 3;
  o.diversity_n = 2;
  flow::EvalReference ref;
  ref.opt = o;
  auto gauss = [](int64_t n, double c) {
    flow::Gaussian g;
    g.dim = 2, g.n = n, g.mean = {c, -c}, g.cov = {1, 0.1, 0.1, 2};
    return g;
  };
  for (int i = 0; i < 10; ++i) ref.base_b.push_back(gauss(3, i)), ref.fd_base_floor.push_back(0.5 + i);
  ref.real_b = gauss(30, 7);
  ref.fd_real_floor = 1.5;
  ref.real_pixels = {0.1, 0.2, 4.5, 0.0};
  ref.base_images_a = full({30, 1, 4, 4}, 0.25);
  ref.real_fd_base = 3, ref.real_diversity = 0.5, ref.real_pixel_diversity = 0.25, ref.collapsed_fd_base = 9;
  const std::string good = dir + "/good.safetensors";
  flow::save_reference(good, ref, "k");
  flow::EvalReference back;
  ASSERT_TRUE(flow::load_reference(good, "k", o, &back));
  EXPECT_EQ(back.base_b.size(), 10u);
  EXPECT_EQ(back.base_b[3].mean, ref.base_b[3].mean);
  EXPECT_EQ(back.real_b.n, 30);
  EXPECT_EQ(back.fd_base_floor, ref.fd_base_floor);
  EXPECT_EQ(back.real_pixel_diversity, 0.25);
  EXPECT_EQ(back.collapsed_fd_base, 9.0);
  EXPECT_FALSE(flow::load_reference(good, "another key", o, &back));
  flow::EvalOptions other = o;
  other.per_prompt = 4;  // same key by construction here, other sizes
  EXPECT_FALSE(flow::load_reference(good, "k", other, &back));

  SafetensorsFile f = load_safetensors(good);
  auto write = [&](const std::string& name, std::map<std::string, Tensor> t, std::map<std::string, std::string> md) {
    std::map<std::string, Tensor> all;
    for (const auto& [k, v] : f.tensors) all[k] = v;
    for (auto& [k, v] : t) all[k] = v;
    std::map<std::string, std::string> meta = f.metadata;
    for (auto& [k, v] : md) meta[k] = v;
    const std::string path = dir + "/" + name + ".safetensors";
    save_safetensors(path, all, meta);
    return path;
  };
  const auto F = [](std::vector<double> v, Shape s) { return from_vector(v, s, opts(DType::F64)); };
  const std::vector<std::string> bad = {
      write("meta_not_a_count", {}, {{"base_n", "three"}}),
      write("meta_negative", {}, {{"real_n", "-30"}}),
      write("zero_prompts", {{"base_b_mean", F({}, {0, 2})}, {"base_b_cov", F({}, {0, 2, 2})}}, {}),
      write("zero_real_rows", {{"real_b_mean", F({}, {0, 2})}, {"real_b_cov", F({}, {0, 2, 2})}}, {}),
      write("nan_floor", {{"fd_base_floor", F({0, 1, 2, 3, std::nan(""), 5, 6, 7, 8, 9}, {10})}}, {}),
      write("short_floor", {{"fd_base_floor", F({0, 1}, {2})}}, {}),
      write("other_width", {{"real_b_mean", F({1, 2, 3}, {1, 3})}, {"real_b_cov", F(std::vector<double>(9, 1.0), {1, 3, 3})}}, {}),
      write("images_shape", {{"base_images_a", full({7, 1, 4, 4}, 0.0)}}, {}),
      write("short_reference_values", {{"reference_values", F({1, 2}, {2})}}, {}),
      write("nan_reference_values", {{"reference_values", F({1, std::nan(""), 3, 4}, {4})}}, {}),
  };
  for (const auto& path : bad) {
    SCOPED_TRACE(path);
    flow::EvalReference r;
    bool ok = true;
    EXPECT_NO_THROW(ok = flow::load_reference(path, "k", o, &r));
    EXPECT_FALSE(ok);
  }
  std::filesystem::remove_all(dir);
}

TEST(Metrics, RidgeRecoversAnExactLinearModel) {
  Tensor x = rnd({200, 6}, 9);
  std::vector<double> w = {0.5, -1.0, 2.0, 0.0, 3.0, -0.25};
  Tensor y = ops::add(ops::squeeze(ops::matmul(x, from_vector(w, {6, 1}, opts(DType::F64))), 1), 4.0);
  flow::RidgeFit fit = flow::fit_ridge(x, y, 0.0);
  for (size_t i = 0; i < 6; ++i) EXPECT_NEAR(fit.w[i], w[i], 1e-9);
  EXPECT_NEAR(fit.b, 4.0, 1e-9);
  EXPECT_NEAR(fit.r2, 1.0, 1e-12);
  // the penalty shrinks the weights, never the intercept's role: a big λ predicts ≈ the mean
  flow::RidgeFit big = flow::fit_ridge(x, y, 1e9);
  double wn = 0;
  for (double v : big.w) wn += v * v;
  EXPECT_LT(wn, 1e-6);
  EXPECT_NEAR(big.r2, 0.0, 1e-3);
  EXPECT_TRUE(throws_error([&] { flow::fit_ridge(x, ops::narrow(y, 0, 0, 5), 1.0); }, {"fit_ridge"}));
}

TEST(GradcheckMetrics, EdgeSharpness) {
  auto f = [](const std::vector<Tensor>& in) { return flow::edge_sharpness(in[0]); };
  EXPECT_GRADCHECK(gradcheck(f, {ops::tanh(rnd({2, 1, 5, 4}, 21)).requires_grad_(true)}));
}

TEST(Metrics, SyntheticQualityFollowsClassPreferenceAndSharpness) {
  // per class: a flat image (sharpness 0), a soft one and a checkerboard (sharpest)
  std::vector<Tensor> imgs;
  std::vector<int64_t> labels;
  std::vector<double> cb(16), soft(16);
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) cb[i * 4 + j] = ((i + j) % 2) ? 1.0 : -1.0, soft[i * 4 + j] = 0.1 * j - 0.5;
  for (int64_t c = 0; c < 10; ++c) {
    imgs.push_back(full({1, 1, 4, 4}, -1.0));
    imgs.push_back(from_vector(soft, {1, 1, 4, 4}));
    imgs.push_back(from_vector(cb, {1, 1, 4, 4}));
    labels.insert(labels.end(), {c, c, c});
  }
  std::vector<double> q = flow::synthetic_quality(ops::cat(imgs, 0), from_vector(labels, {30})).to_vector();
  for (size_t c = 0; c < 10; ++c) {
    EXPECT_LT(q[3 * c], q[3 * c + 1]);
    EXPECT_LT(q[3 * c + 1], q[3 * c + 2]);
    // the within-class z-scores of a 3-image class sum to 0: the mean is the class preference
    EXPECT_NEAR((q[3 * c] + q[3 * c + 1] + q[3 * c + 2]) / 3, flow::kClassPreference[c], 1e-9);
  }
  EXPECT_TRUE(throws_error([] { flow::synthetic_quality(zeros({2, 1, 4, 4}), from_vector(std::vector<int64_t>{3, 4}, {2})); },
                           {"class 3 needs at least 2 images"}));
}

}  // namespace
}  // namespace vgg::test

namespace vgg::test {
namespace {


TEST(ModelFolder, RoundTripsAndRejectsIncompleteFolders) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("vgg_model_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  flow::FlowModel m = small_flow_model(5);
  flow::save_flow_model(dir.string(), m, R"({"shift": 3.0, "guidance": 2.5, "sample_steps": 7})");
  flow::FlowModel back = flow::load_flow_model(dir.string());
  EXPECT_EQ(back.sampling.steps, 7);
  EXPECT_DOUBLE_EQ(back.sampling.shift, 3.0);
  EXPECT_DOUBLE_EQ(back.sampling.guidance, 2.5);
  EXPECT_EQ(back.prompts->num_prompts(), 11);
  Tensor a = flow::sample_images(m.velocity(), *m.prompts, {0, 3, 10}, m.sampling, 4);
  Tensor b = flow::sample_images(back.velocity(), *back.prompts, {0, 3, 10}, m.sampling, 4);
  EXPECT_TRUE(all_close(a, b, 0, 0));
  EXPECT_EQ(a.size(0), 3);
  EXPECT_LE(ops::amax(ops::abs(a)).item(), 1.0);
  fs::remove(dir / "prompts.safetensors");
  EXPECT_TRUE(throws_error([&] { flow::load_flow_model(dir.string()); }, {"neither prompts.safetensors"}));
  fs::remove_all(dir);
  EXPECT_TRUE(throws_error([&] { flow::load_flow_model(dir.string()); }, {"does not exist"}));
}

TEST(Evaluation, TheBaseSitsExactlyAtTheNoiseFloor) {
  flow::FlowModel base = small_flow_model(7);
  Generator g(8);
  flow::RewardPair rw;
  rw.fb = std::make_shared<flow::FeatureNet>("fb", nn::LayerOptions{DType::F32, Device::cpu(), &g});
  rw.reward = flow::make_pixel_reward("brightness");
  rw.gold = flow::make_pixel_reward("contrast");
  flow::ImageSet test = flow::load_fashion_mnist(false, "", 32, 200);
  flow::EvalOptions o;
  o.per_prompt = 6, o.diversity_n = 4, o.sampling = base.sampling;
  flow::EvalReference ref = flow::make_reference(base, *rw.fb, test, o);
  nlohmann::json j = flow::evaluate_images(ref.base_images_a, rw, ref);
  for (size_t c = 0; c < 10; ++c)
    EXPECT_DOUBLE_EQ(j["fd_base_per_prompt"][c].get<double>(), j["fd_base_floor_per_prompt"][c].get<double>());
  EXPECT_GT(j["fd_base_floor"].get<double>(), 0.0);
  EXPECT_GT(j["fd_real_floor"].get<double>(), 0.0);
  // rewards are the functions' means over all samples
  NoGradGuard ng;
  EXPECT_NEAR(j["reward"].get<double>(), ops::mean((*rw.reward)(ref.base_images_a)).item(), 1e-6);
  EXPECT_NEAR(j["gold"].get<double>(), ops::mean((*rw.gold)(ref.base_images_a)).item(), 1e-6);
  EXPECT_GE(j["fb_accuracy"].get<double>(), 0.0);
  EXPECT_LE(j["fb_accuracy"].get<double>(), 1.0);
  EXPECT_GT(j["diversity"].get<double>(), 0.0);
  EXPECT_GT(j["pixel_diversity"].get<double>(), 0.0);
  // the metrics' range: real images are away from the base, a collapsed model further than the base
  // itself; the values are the reference's in every evaluation
  EXPECT_GT(ref.real_fd_base, 0.0);
  EXPECT_GT(ref.real_diversity, 0.0);
  EXPECT_GT(ref.real_pixel_diversity, 0.0);
  EXPECT_GT(ref.collapsed_fd_base, j["fd_base_floor"].get<double>());
  EXPECT_EQ(j["reference"]["real"]["fd_base"].get<double>(), ref.real_fd_base);
  EXPECT_EQ(j["reference"]["collapsed"]["fd_base"].get<double>(), ref.collapsed_fd_base);
  {  // a collapsed set of samples (each prompt's first base sample, n times) scores the collapsed values
    std::vector<int64_t> rows;
    for (int64_t c = 0; c < 10; ++c) rows.insert(rows.end(), 6, c * 6);
    const nlohmann::json jc = flow::evaluate_images(ops::index_select(ref.base_images_a, 0, from_vector(rows, {60})), rw, ref);
    EXPECT_NEAR(jc["fd_base"].get<double>(), ref.collapsed_fd_base, 1e-6 * ref.collapsed_fd_base);
    EXPECT_NEAR(jc["diversity"].get<double>(), 0.0, 1e-12);
    EXPECT_NEAR(jc["pixel_diversity"].get<double>(), 0.0, 1e-12);
  }
  // another model is away from the base: above the floor on average
  flow::FlowModel other = small_flow_model(9);
  Tensor imgs = flow::sample_images(other.velocity(), *other.prompts, flow::per_class_ids(6), o.sampling, o.seed);
  const nlohmann::json jo = flow::evaluate_images(imgs, rw, ref);
  EXPECT_GT(jo["fd_base"].get<double>(), j["fd_base_floor"].get<double>());
  // a saved reference gives the same metrics; another key (options or file bytes) is not loaded
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("vgg_ref_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string file = (dir / "ref.safetensors").string(), weights = (dir / "w.bin").string();
  std::ofstream(weights) << "abc";
  const std::string key = flow::reference_key(o, {weights});
  flow::save_reference(file, ref, key);
  flow::EvalReference back;
  ASSERT_TRUE(flow::load_reference(file, key, o, &back));
  EXPECT_EQ(flow::evaluate_images(imgs, rw, back).dump(), jo.dump());
  flow::EvalOptions o2 = o;
  o2.sampling.guidance += 1;
  EXPECT_FALSE(flow::load_reference(file, flow::reference_key(o2, {weights}), o2, &back));
  std::ofstream(weights) << "abd";
  EXPECT_FALSE(flow::load_reference(file, flow::reference_key(o, {weights}), o, &back));
  EXPECT_FALSE(flow::load_reference((dir / "none.safetensors").string(), key, o, &back));
  fs::remove_all(dir);
  // too few real images for the floor
  o.per_prompt = 20;
  EXPECT_TRUE(throws_error([&] { flow::make_reference(base, *rw.fb, test, o); }, {"real test images"}));
  EXPECT_TRUE(throws_error([&] { flow::evaluate_images(ops::narrow(imgs, 0, 0, 50), rw, ref); }, {"expected 60 images"}));
}

}  // namespace
}  // namespace vgg::test
