// Optimizers (nn/optim.h): AdamW against PyTorch golden files (tools/golden/adamw.py) and
// hand-derived values, clipping, non-finite gradients, schedules, EMA, state round trips and
// the error messages.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <numbers>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "nn/optim.h"
#include "tensor/npy.h"
#include "tests/support/test_support.h"

namespace vgg::test {
namespace {

using nn::AdamW;
using nn::EMA;
using nn::LRSchedule;
using nn::NamedTensors;
using nn::ParamGroup;

Tensor leaf(const Tensor& values) {
  Tensor p = clone_raw(values.detach());
  p.requires_grad_(true);
  return p;
}

Tensor scalar_param(double v, DType dt = DType::F64) { return leaf(from_vector(std::vector<double>{v}, {1}, {dt})); }

void set_grad_values(Tensor p, const std::vector<double>& v) {
  p.set_grad(from_vector(v, p.shape(), {p.dtype()}));
}

// Bitwise equality of two tensors' values (NaN never equal).
::testing::AssertionResult same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype())
    return ::testing::AssertionFailure() << describe(a) << " vs " << describe(b);
  auto av = a.to_vector(), bv = b.to_vector();
  for (size_t i = 0; i < av.size(); ++i)
    if (!(av[i] == bv[i]))
      return ::testing::AssertionFailure() << "element " << i << ": " << av[i] << " vs " << bv[i];
  return ::testing::AssertionSuccess();
}

// ---- golden: torch.optim.AdamW + clip_grad_norm_ over three steps --------------------------

struct GoldenRun {
  int steps = 0;
  std::vector<double> lr_factor;
  std::vector<ParamGroup> groups;  // hyper-parameters and names; params filled by the test
  std::vector<std::vector<std::string>> dtypes;
  std::set<std::tuple<int, std::string, std::string>> nograd;
  std::map<std::pair<int, std::string>, std::pair<double, bool>> norms;  // (step, group) -> norm, clipped
  std::map<std::pair<std::string, std::string>, int64_t> final_steps;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream is(s);
  while (std::getline(is, cur, sep)) out.push_back(cur);
  return out;
}

GoldenRun load_golden() {
  const std::string path = data_path("optim/adamw/manifest.txt");
  std::ifstream f(path);
  if (!f.good()) throw std::runtime_error("cannot open " + path + " (regenerate with python3 tools/golden/adamw.py)");
  GoldenRun run;
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream is(line);
    std::string kind;
    is >> kind;
    if (kind == "steps") {
      is >> run.steps;
    } else if (kind == "lr_factor") {
      std::string v;
      is >> v;
      for (const auto& t : split(v, ',')) run.lr_factor.push_back(std::stod(t));
    } else if (kind == "group") {
      ParamGroup g;
      is >> g.name;
      std::string kv;
      while (is >> kv) {
        auto eq = kv.find('=');
        std::string k = kv.substr(0, eq);
        double v = std::stod(kv.substr(eq + 1));
        if (k == "lr") g.lr = v;
        else if (k == "beta1") g.beta1 = v;
        else if (k == "beta2") g.beta2 = v;
        else if (k == "eps") g.eps = v;
        else if (k == "weight_decay") g.weight_decay = v;
        else if (k == "max_grad_norm") g.max_grad_norm = v;
        else throw std::runtime_error("unknown group key " + k);
      }
      run.groups.push_back(g);
      run.dtypes.emplace_back();
    } else if (kind == "param") {
      std::string g, p, dt;
      is >> g >> p >> dt;
      if (run.groups.empty() || run.groups.back().name != g) throw std::runtime_error("param before its group");
      run.groups.back().param_names.push_back(p);
      run.dtypes.back().push_back(dt);
    } else if (kind == "nograd") {
      int k;
      std::string g, p;
      is >> k >> g >> p;
      run.nograd.insert({k, g, p});
    } else if (kind == "norm") {
      int k;
      std::string g, clipped;
      double n;
      is >> k >> g >> n >> clipped;
      run.norms[{k, g}] = {n, clipped == "clipped=1"};
    } else if (kind == "step") {
      std::string g, p;
      int64_t s;
      is >> g >> p >> s;
      run.final_steps[{g, p}] = s;
    } else {
      throw std::runtime_error("unknown manifest line: " + line);
    }
  }
  return run;
}

Tensor golden(const std::string& what, const std::string& g, const std::string& p) {
  return load_npy(data_path("optim/adamw/" + what + "." + g + "." + p + ".npy"));
}

struct Deviation {
  double abs = 0, rel = 0;
  void add(const Tensor& a, const Tensor& ref) {
    auto av = a.to_vector(), rv = ref.to_vector();
    for (size_t i = 0; i < av.size(); ++i) {
      double d = std::abs(av[i] - rv[i]);
      abs = std::max(abs, d);
      if (rv[i] != 0) rel = std::max(rel, d / std::abs(rv[i]));
    }
  }
};

TEST(GoldenAdamW, ThreeStepsTwoDtypesClippingAndAMissingGradMatchTorch) {
  GoldenRun run = load_golden();
  ASSERT_EQ(run.steps, 3);
  ASSERT_EQ(run.lr_factor.size(), 3u);
  ASSERT_FALSE(run.nograd.empty());
  std::vector<ParamGroup> groups = run.groups;
  for (auto& g : groups)
    for (const auto& p : g.param_names) g.params.push_back(leaf(golden("init", g.name, p)));
  AdamW opt(groups);
  Deviation dev[2], dev_state[2];  // f64, f32
  int clipped_groups = 0;
  for (int k = 0; k < run.steps; ++k) {
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      ParamGroup& g = groups[gi];
      opt.set_lr(gi, g.lr * run.lr_factor[k]);
      for (size_t i = 0; i < g.params.size(); ++i) {
        if (run.nograd.count({k, g.name, g.param_names[i]}))
          g.params[i].set_grad(Tensor());
        else
          g.params[i].set_grad(golden("grad" + std::to_string(k), g.name, g.param_names[i]));
      }
    }
    nn::StepStats st = opt.step();
    ASSERT_FALSE(st.nonfinite) << st.error;
    ASSERT_EQ(st.groups.size(), groups.size());
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      const ParamGroup& g = groups[gi];
      auto [norm, clipped] = run.norms.at({k, g.name});
      bool f64 = run.dtypes[gi][0] == "f64";  // the golden groups hold one dtype each
      EXPECT_NEAR(st.groups[gi].grad_norm, norm, (f64 ? 1e-12 : 1e-6) * norm) << "step " << k << " group " << g.name;
      EXPECT_EQ(st.groups[gi].clipped, clipped) << "step " << k << " group " << g.name;
      clipped_groups += clipped;
      for (size_t i = 0; i < g.params.size(); ++i) {
        Tensor ref = golden("after" + std::to_string(k), g.name, g.param_names[i]);
        bool is64 = run.dtypes[gi][i] == "f64";
        EXPECT_TRUE(all_close(g.params[i], ref, 0, is64 ? 1e-12 : 1e-6))
            << "step " << k << " param " << g.name << "." << g.param_names[i];
        dev[is64 ? 0 : 1].add(g.params[i], ref);
      }
    }
  }
  EXPECT_GE(clipped_groups, 2);
  // Moments: relative to the tensor's largest entry (entries of the first moment can cancel
  // to nearly 0). They differ from torch by an ulp where a group was clipped: torch forms the
  // clip factor from per-tensor norms in the gradient's dtype, we from one sum in double.
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const ParamGroup& g = groups[gi];
    for (size_t i = 0; i < g.params.size(); ++i) {
      const double tol = run.dtypes[gi][i] == "f64" ? 1e-12 : 1e-6;
      EXPECT_EQ(opt.step_count(gi, i), run.final_steps.at({g.name, g.param_names[i]}));
      for (const char* what : {"exp_avg", "exp_avg_sq"}) {
        Tensor ref = golden(what, g.name, g.param_names[i]);
        const Tensor& got = std::string(what) == "exp_avg" ? opt.exp_avg(gi, i) : opt.exp_avg_sq(gi, i);
        double scale = 0;
        for (double v : ref.to_vector()) scale = std::max(scale, std::abs(v));
        EXPECT_TRUE(all_close(got, ref, tol * scale, tol)) << what << " of " << g.name << "." << g.param_names[i];
        dev_state[tol == 1e-12 ? 0 : 1].add(got, ref);
      }
    }
  }
  std::printf("[ GOLDEN   ] AdamW vs torch, params after each step: f64 max |d| %.3g (rel %.3g), "
              "f32 max |d| %.3g (rel %.3g); moments: f64 max |d| %.3g, f32 max |d| %.3g\n",
              dev[0].abs, dev[0].rel, dev[1].abs, dev[1].rel, dev_state[0].abs, dev_state[1].abs);
  RecordProperty("f64_max_rel", std::to_string(dev[0].rel));
  RecordProperty("f32_max_rel", std::to_string(dev[1].rel));
}

// ---- hand-derived values ---------------------------------------------------------------

TEST(AdamW, ScalarStepsByHand) {
  // A constant gradient gives m̂ = g and v̂ = g² exactly (in real arithmetic) at every step:
  // p ← p·(1 − lr·wd) − lr·g/(|g| + eps).
  const double lr = 0.1, wd = 0.01, g = 0.5, eps = 1e-8;
  Tensor p = scalar_param(1.0);
  AdamW opt({ParamGroup{"g", {p}, {"p"}, lr, 0.9, 0.999, eps, wd, 0}});
  double expect = 1.0;
  for (int k = 0; k < 3; ++k) {
    set_grad_values(p, {g});
    opt.step();
    expect = expect * (1 - lr * wd) - lr * g / (g + eps);
    EXPECT_NEAR(p.item(), expect, 1e-14) << "step " << k;
  }
  // step 1 exactly: m = 0.05, v = 0.00025, bc1 = 0.1, bc2 = 0.001
  Tensor q = scalar_param(1.0);
  AdamW one({ParamGroup{"g", {q}, {}, lr, 0.9, 0.999, eps, wd, 0}});
  set_grad_values(q, {g});
  one.step();
  EXPECT_DOUBLE_EQ(one.exp_avg(0, 0).item(), 0.05);
  EXPECT_DOUBLE_EQ(one.exp_avg_sq(0, 0).item(), 0.00025);
  EXPECT_NEAR(q.item(), 0.999 - 0.1 / (1 + 2e-8), 1e-15);
  EXPECT_EQ(one.step_count(0, 0), 1);
}

TEST(AdamW, WeightDecayIsDecoupled) {
  // A zero gradient leaves the Adam term at exactly 0: the parameter shrinks by (1 − lr·wd).
  for (DType dt : {DType::F64, DType::F32}) {
    Tensor init = rnd({4, 5}, 3, dt);
    Tensor p = leaf(init);
    const double lr = 0.01, wd = 0.1;
    AdamW opt({ParamGroup{"g", {p}, {"w"}, lr, 0.9, 0.999, 1e-8, wd, 0}});
    p.set_grad(zeros({4, 5}, {dt}));
    opt.step();
    auto before = init.to_vector(), after = p.to_vector();
    for (size_t i = 0; i < before.size(); ++i) {
      double want = dt == DType::F64 ? before[i] * (1 - lr * wd)
                                     : static_cast<double>(static_cast<float>(before[i]) *
                                                           static_cast<float>(1 - lr * wd));
      EXPECT_EQ(after[i], want) << dtype_name(dt) << " element " << i;
    }
  }
  // and the decay does not scale with the gradient (Adam's update is scale-free up to eps)
  Tensor a = scalar_param(2.0), b = scalar_param(2.0);
  AdamW oa({ParamGroup{"a", {a}, {}, 0.1, 0.9, 0.999, 0, 0.5, 0}});
  AdamW ob({ParamGroup{"b", {b}, {}, 0.1, 0.9, 0.999, 0, 0.5, 0}});
  set_grad_values(a, {1e-3});
  set_grad_values(b, {1e3});
  oa.step();
  ob.step();
  EXPECT_DOUBLE_EQ(a.item(), b.item());
  EXPECT_NEAR(a.item(), 2.0 * 0.95 - 0.1, 1e-15);
}

TEST(AdamW, MissingGradientSkipsTheParameter) {
  Tensor p = scalar_param(1.0), q = scalar_param(-1.0);
  AdamW opt({ParamGroup{"g", {p, q}, {"p", "q"}, 0.1}});
  set_grad_values(p, {1.0});
  nn::StepStats st = opt.step();
  EXPECT_EQ(st.groups[0].updated, 1);
  EXPECT_EQ(opt.step_count(0, 0), 1);
  EXPECT_EQ(opt.step_count(0, 1), 0);
  EXPECT_EQ(q.item(), -1.0);  // no weight decay either
  set_grad_values(q, {1.0});
  opt.step();
  EXPECT_EQ(opt.step_count(0, 0), 2);
  EXPECT_EQ(opt.step_count(0, 1), 1);
  // q's first step has bias correction for step 1: its update is -lr·(1 ± eps)
  EXPECT_NEAR(q.item(), -1.0 * (1 - 0.1 * 1e-2) - 0.1, 1e-9);
}

TEST(AdamW, UpdatesInPlaceAndBumpsTheVersion) {
  Tensor p = leaf(rnd({3}, 1));
  const void* data = p.data_ptr();
  int64_t v0 = p.version();
  AdamW opt({ParamGroup{"g", {p}, {}}});
  p.set_grad(rnd({3}, 2));
  Tensor g_before = clone_raw(p.grad());
  opt.step();
  EXPECT_EQ(p.data_ptr(), data);
  EXPECT_GT(p.version(), v0);
  EXPECT_TRUE(same_bits(p.grad(), g_before));  // the gradient is left as it was
  EXPECT_TRUE(p.requires_grad());
  EXPECT_TRUE(p.is_leaf());
}

TEST(AdamW, LargeTensorMatchesTheElementwiseFormula) {
  // Big enough for the threaded loops; every element must follow the scalar formula exactly.
  const int64_t n = 100003;
  Tensor init = rnd({n}, 5, DType::F32), grad = rnd({n}, 6, DType::F32);
  Tensor p = leaf(init);
  const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.05;
  AdamW opt({ParamGroup{"g", {p}, {}, lr, b1, b2, eps, wd, 0}});
  p.set_grad(grad);
  opt.step();
  auto pi = init.to_vector(), gi = grad.to_vector(), out = p.to_vector();
  const float bc2s = static_cast<float>(std::sqrt(1 - b2)), st = static_cast<float>(-(lr / (1 - b1)));
  size_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    float g = static_cast<float>(gi[i]);
    float pp = static_cast<float>(pi[i]) * static_cast<float>(1 - lr * wd);
    float m = std::fma(static_cast<float>(1 - b1), g, 0.0f * static_cast<float>(b1));
    float v = std::fma(static_cast<float>(1 - b2) * g, g, 0.0f * static_cast<float>(b2));
    float want = pp + (st * m) / (std::sqrt(v) / bc2s + static_cast<float>(eps));
    bad += static_cast<float>(out[i]) != want;
  }
  EXPECT_EQ(bad, 0u);
}

// ---- clipping and non-finite gradients -----------------------------------------------------

TEST(AdamW, ClipsTheGroupNormLikeTorch) {
  // grads (3, 0) and (4): group norm 5, max 1 → scale 1/(5 + 1e-6).
  Tensor a = leaf(from_vector(std::vector<double>{1, 2}, {2}, {DType::F64})), b = scalar_param(3);
  Tensor c = leaf(from_vector(std::vector<double>{1, 2}, {2}, {DType::F64})), d = scalar_param(3);
  Tensor e = scalar_param(1);
  AdamW clipped({ParamGroup{"clip", {a, b}, {"a", "b"}, 0.1, 0.9, 0.999, 1e-2, 0.1, 1.0},
                 ParamGroup{"free", {e}, {"e"}, 0.1, 0.9, 0.999, 1e-8, 0, 10.0}});
  AdamW manual({ParamGroup{"m", {c, d}, {"c", "d"}, 0.1, 0.9, 0.999, 1e-2, 0.1, 0}});
  set_grad_values(a, {3, 0});
  set_grad_values(b, {4});
  set_grad_values(e, {2});
  const double coef = 1.0 / (5.0 + 1e-6);
  set_grad_values(c, {3 * coef, 0});
  set_grad_values(d, {4 * coef});
  nn::StepStats st = clipped.step();
  manual.step();
  ASSERT_EQ(st.groups.size(), 2u);
  EXPECT_EQ(st.groups[0].name, "clip");
  EXPECT_DOUBLE_EQ(st.groups[0].grad_norm, 5.0);
  EXPECT_TRUE(st.groups[0].clipped);
  EXPECT_DOUBLE_EQ(st.groups[0].clip_coef, coef);
  EXPECT_DOUBLE_EQ(st.groups[1].grad_norm, 2.0);
  EXPECT_FALSE(st.groups[1].clipped);
  EXPECT_EQ(st.groups[1].clip_coef, 1.0);
  EXPECT_TRUE(same_bits(a, c));  // eps = 1e-2 makes the update depend on the gradient's scale
  EXPECT_TRUE(same_bits(b, d));
  EXPECT_EQ(a.grad().at({0}), 3.0);  // p.grad is not modified
}

TEST(AdamW, ClipsWhenTheNormIsWithinOneMicroOfTheMax) {
  // torch multiplies by min(1, max/(norm + 1e-6)): a norm equal to the max is still scaled.
  Tensor p = scalar_param(0);
  AdamW opt({ParamGroup{"g", {p}, {}, 0.1, 0.9, 0.999, 1e-8, 0, 2.0}});
  set_grad_values(p, {2.0});
  nn::StepStats st = opt.step();
  EXPECT_TRUE(st.groups[0].clipped);
  EXPECT_DOUBLE_EQ(st.groups[0].clip_coef, 2.0 / (2.0 + 1e-6));
}

TEST(AdamW, NonFiniteGradientSkipsTheGroupAndReports) {
  for (double bad : {NAN, INFINITY}) {
    Tensor a = leaf(rnd({3}, 1)), b = leaf(rnd({2}, 2)), c = leaf(rnd({2}, 3, DType::F32));
    Tensor a0 = clone_raw(a), b0 = clone_raw(b), c0 = clone_raw(c);
    AdamW opt({ParamGroup{"enc", {a, b}, {"w", "bias"}, 0.1, 0.9, 0.999, 1e-8, 0.1, 1.0},
               ParamGroup{"dec", {c}, {"w"}, 0.1}});
    set_grad_values(a, {1, 2, 3});
    set_grad_values(b, {0.5, bad});
    set_grad_values(c, {1, -1});
    nn::StepStats st = opt.step();
    EXPECT_TRUE(st.nonfinite);
    EXPECT_TRUE(st.groups[0].nonfinite);
    EXPECT_FALSE(st.groups[1].nonfinite);
    EXPECT_NE(st.error.find("group 'enc'"), std::string::npos) << st.error;
    EXPECT_NE(st.error.find("'bias'"), std::string::npos) << st.error;
    EXPECT_NE(st.error.find("step skipped"), std::string::npos) << st.error;
    EXPECT_TRUE(same_bits(a, a0));
    EXPECT_TRUE(same_bits(b, b0));
    EXPECT_EQ(opt.step_count(0, 0), 0);
    EXPECT_EQ(opt.exp_avg_sq(0, 1).at({1}), 0.0);
    EXPECT_FALSE(same_bits(c, c0));  // the other group still steps
    EXPECT_EQ(opt.step_count(1, 0), 1);
    // with finite gradients the group steps again
    set_grad_values(b, {0.5, 0.5});
    st = opt.step();
    EXPECT_FALSE(st.nonfinite);
    EXPECT_TRUE(st.error.empty());
    EXPECT_EQ(opt.step_count(0, 1), 1);
    for (double v : a.to_vector()) EXPECT_TRUE(std::isfinite(v));
  }
}

TEST(AdamW, ZeroGradAndLrAccess) {
  Tensor p = leaf(rnd({2}, 1)), q = leaf(rnd({2}, 2));
  AdamW opt({ParamGroup{"a", {p}, {}, 0.5}, ParamGroup{"b", {q}, {}, 0.25}});
  EXPECT_EQ(opt.num_groups(), 2u);
  EXPECT_EQ(opt.group(1).name, "b");
  EXPECT_EQ(opt.group(0).param_names[0], "0");
  EXPECT_EQ(opt.lr(1), 0.25);
  opt.set_lr(1, 0.125);
  EXPECT_EQ(opt.lr(1), 0.125);
  EXPECT_EQ(opt.base_lr(1), 0.25);
  opt.group(0).weight_decay = 0;
  EXPECT_EQ(opt.group(0).weight_decay, 0);
  set_grad_values(p, {1, 2});
  set_grad_values(q, {1, 2});
  opt.zero_grad(false);
  EXPECT_TRUE(p.grad().defined());
  EXPECT_EQ(p.grad().to_vector(), (std::vector<double>{0, 0}));
  opt.zero_grad();
  EXPECT_FALSE(p.grad().defined());
  EXPECT_FALSE(q.grad().defined());
  EXPECT_TRUE(throws_error([&] { opt.set_lr(2, 0.1); }, {"group index 2 out of range"}));
  EXPECT_TRUE(throws_error([&] { opt.set_lr(0, -1); }, {"set_lr", "-1"}));
}

// ---- schedules -----------------------------------------------------------------------------

// diffusers' get_cosine_schedule_with_warmup lr_lambda, num_cycles = 0.5, transcribed.
double diffusers_cosine(int64_t step, int64_t warmup, int64_t total) {
  if (step < warmup) return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup));
  double progress = static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup));
  return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * 0.5 * 2.0 * progress)));
}

TEST(LRSchedule, FactorsAtKeySteps) {
  LRSchedule c = LRSchedule::constant();
  EXPECT_EQ(c.factor(0), 1.0);
  EXPECT_EQ(c.factor(12345), 1.0);

  LRSchedule w = LRSchedule::linear_warmup(10);
  EXPECT_EQ(w.factor(0), 0.0);
  EXPECT_EQ(w.factor(5), 0.5);
  EXPECT_EQ(w.factor(9), 0.9);
  EXPECT_EQ(w.factor(10), 1.0);
  EXPECT_EQ(w.factor(1000), 1.0);
  EXPECT_EQ(LRSchedule::linear_warmup(0).factor(0), 1.0);

  LRSchedule cos = LRSchedule::cosine(10, 110);
  EXPECT_EQ(cos.factor(0), 0.0);
  EXPECT_EQ(cos.factor(5), 0.5);
  EXPECT_EQ(cos.factor(10), 1.0);
  EXPECT_NEAR(cos.factor(60), 0.5, 1e-15);
  EXPECT_NEAR(cos.factor(35), 0.5 * (1 + std::cos(std::numbers::pi / 4)), 1e-15);
  EXPECT_NEAR(cos.factor(110), 0.0, 1e-15);
  EXPECT_EQ(cos.factor(200), cos.factor(110));  // stays at the floor after T
  for (int64_t s = 0; s <= 110; ++s) EXPECT_EQ(cos.factor(s), diffusers_cosine(s, 10, 110)) << "step " << s;

  LRSchedule floor = LRSchedule::cosine(0, 100, 0.1);
  EXPECT_EQ(floor.factor(0), 1.0);
  EXPECT_NEAR(floor.factor(50), 0.55, 1e-15);
  EXPECT_NEAR(floor.factor(100), 0.1, 1e-15);
  EXPECT_NEAR(floor.factor(1000), 0.1, 1e-15);

  EXPECT_TRUE(throws_error([&] { cos.factor(-1); }, {"step -1"}));
  EXPECT_TRUE(throws_error([&] { LRSchedule::cosine(10, 5).factor(0); }, {"total_steps 5", "warmup_steps 10"}));
  EXPECT_TRUE(throws_error([&] { LRSchedule::cosine(0, 5, 1.5).factor(0); }, {"min_factor 1.5"}));
}

TEST(LRSchedule, AppliesToEveryGroupFromItsBaseLr) {
  Tensor p = scalar_param(1), q = scalar_param(1);
  AdamW opt({ParamGroup{"a", {p}, {}, 0.2}, ParamGroup{"b", {q}, {}, 0.02}});
  LRSchedule s = LRSchedule::linear_warmup(4);
  nn::apply_schedule(opt, s, 1);
  EXPECT_DOUBLE_EQ(opt.lr(0), 0.05);
  EXPECT_DOUBLE_EQ(opt.lr(1), 0.005);
  nn::apply_schedule(opt, s, 10);
  EXPECT_EQ(opt.lr(0), 0.2);
  opt.set_base_lr(0, 1.0);
  nn::apply_schedule(opt, s, 2);
  EXPECT_EQ(opt.lr(0), 0.5);
}

// ---- EMA -----------------------------------------------------------------------------------

TEST(EMA, UpdatesWithConstantDecay) {
  Tensor p = leaf(from_vector(std::vector<double>{1, -2}, {2}, {DType::F64}));
  EMA ema({p}, 0.9);
  EXPECT_TRUE(same_bits(ema.shadow()[0], p));
  EXPECT_FALSE(ema.shadow()[0].storage() == p.storage());
  {
    NoGradGuard ng;
    copy_into(p, from_vector(std::vector<double>{2, 0}, {2}, {DType::F64}));
  }
  ema.update();
  EXPECT_EQ(ema.num_updates(), 1);
  std::vector<double> s = ema.shadow()[0].to_vector();
  EXPECT_EQ(s[0], 1 - (1 - 0.9) * (1 - 2.0));
  EXPECT_EQ(s[1], -2 - (1 - 0.9) * (-2 - 0.0));
  ema.update();
  EXPECT_NEAR(ema.shadow()[0].to_vector()[0], 2 - 0.81, 1e-15);
}

TEST(EMA, WarmupDecayAndCopyTo) {
  Tensor p = leaf(rnd({3}, 1, DType::F32));
  EMA ema({p}, 0.99, /*warmup=*/true, {"w"});
  EXPECT_DOUBLE_EQ(ema.current_decay(), 0.1);  // t = 0: (1 + 0)/(10 + 0)
  ema.update();
  EXPECT_DOUBLE_EQ(ema.current_decay(), 2.0 / 11.0);
  for (int i = 0; i < 2000; ++i) ema.update();
  EXPECT_EQ(ema.current_decay(), 0.99);  // capped by decay
  EXPECT_EQ(ema.shadow()[0].dtype(), DType::F32);
  Tensor target = leaf(zeros({3}));
  int64_t v0 = target.version();
  ema.copy_to({target});
  EXPECT_TRUE(same_bits(target, ema.shadow()[0]));
  EXPECT_GT(target.version(), v0);
  EXPECT_TRUE(throws_error([&] { ema.copy_to({zeros({4})}); }, {"EMA.copy_to", "'w'"}));
  // a bf16 tensor gets an f32 shadow
  EMA half({cast_raw(rnd({2}, 4, DType::F32), DType::BF16)}, 0.5);
  EXPECT_EQ(half.shadow()[0].dtype(), DType::F32);
  half.update();
}

TEST(EMA, StateRoundTripIsBitExact) {
  Tensor p = leaf(rnd({4}, 1));
  auto perturb = [&](int k) {
    NoGradGuard ng;
    copy_into(p, rnd({4}, 100 + k));
  };
  EMA ema({p}, 0.95, true, {"p"});
  for (int k = 0; k < 3; ++k) perturb(k), ema.update();
  NamedTensors saved = ema.state_dict();
  ASSERT_EQ(saved.size(), 3u);
  EXPECT_EQ(saved[0].first, "shadow.p");
  EXPECT_EQ(saved[1].first, "decay");
  EXPECT_EQ(saved[2].first, "num_updates");
  for (int k = 3; k < 5; ++k) perturb(k), ema.update();
  Tensor expect = clone_raw(ema.shadow()[0]);

  EMA fresh({p}, 0.5, true, {"p"});
  fresh.load_state_dict(saved);
  EXPECT_EQ(fresh.decay(), 0.95);
  EXPECT_EQ(fresh.num_updates(), 3);
  for (int k = 3; k < 5; ++k) perturb(k), fresh.update();
  EXPECT_TRUE(same_bits(fresh.shadow()[0], expect));

  NamedTensors missing(saved.begin() + 1, saved.end());
  EXPECT_TRUE(throws_error([&] { fresh.load_state_dict(missing); }, {"EMA.load_state_dict", "missing key 'shadow.p'"}));
  NamedTensors extra = saved;
  extra.emplace_back("shadow.q", zeros({4}, {DType::F64}));
  EXPECT_TRUE(throws_error([&] { fresh.load_state_dict(extra); }, {"unexpected key 'shadow.q'"}));
}

// ---- AdamW state round trip ------------------------------------------------------------------

struct Model {
  std::vector<Tensor> params;
  std::vector<ParamGroup> groups() const {
    return {ParamGroup{"enc", {params[0], params[1]}, {"w", "b"}, 1e-2, 0.9, 0.999, 1e-8, 0.1, 0.5},
            ParamGroup{"dec", {params[2]}, {"w"}, 3e-3, 0.8, 0.99, 1e-6, 1e-3, 0}};
  }
};

void set_step_grads(Model& m, int k) {
  for (size_t i = 0; i < m.params.size(); ++i) {
    if (k == 1 && i == 1) {
      m.params[i].set_grad(Tensor());  // one parameter without a gradient at one step
      continue;
    }
    m.params[i].set_grad(rnd(m.params[i].shape(), 1000 + 10 * k + i, m.params[i].dtype()));
  }
}

TEST(AdamWState, SaveRestoreAndContinueIsBitExact) {
  Model m{{leaf(rnd({3, 4}, 1)), leaf(rnd({4}, 2)), leaf(rnd({2, 3}, 3, DType::F32))}};
  AdamW opt(m.groups());
  LRSchedule sched = LRSchedule::cosine(2, 5);
  for (int k = 0; k < 3; ++k) {
    nn::apply_schedule(opt, sched, k);
    set_step_grads(m, k);
    opt.step();
  }
  NamedTensors saved = opt.state_dict();
  std::vector<Tensor> saved_params;
  for (const auto& p : m.params) saved_params.push_back(clone_raw(p));
  // names: 7 hyper-parameters per group, 3 entries per parameter
  ASSERT_EQ(saved.size(), 2 * 7 + 3 * 3u);
  std::set<std::string> keys;
  for (const auto& [k, t] : saved) keys.insert(k);
  for (const char* k : {"enc.lr", "enc.base_lr", "enc.beta1", "enc.beta2", "enc.eps", "enc.weight_decay",
                        "enc.max_grad_norm", "enc.w.exp_avg", "enc.w.exp_avg_sq", "enc.w.step", "enc.b.step",
                        "dec.w.exp_avg", "dec.w.exp_avg_sq", "dec.w.step"})
    EXPECT_TRUE(keys.count(k)) << k;
  for (const auto& [k, t] : saved) {
    if (k == "enc.b.step") EXPECT_EQ(t.item(), 2);  // skipped once
    if (k == "enc.w.step") EXPECT_EQ(t.dtype(), DType::I64);
    if (k == "dec.w.exp_avg") EXPECT_EQ(t.dtype(), DType::F32);
    if (k == "enc.lr") EXPECT_EQ(t.item(), opt.lr(0));
  }
  for (int k = 3; k < 5; ++k) {
    nn::apply_schedule(opt, sched, k);
    set_step_grads(m, k);
    opt.step();
  }
  // the snapshot did not move with the optimizer
  EXPECT_EQ(saved[9].first, "enc.w.step");
  EXPECT_EQ(saved[9].second.item(), 3);

  Model r{{leaf(saved_params[0]), leaf(saved_params[1]), leaf(saved_params[2])}};
  std::vector<ParamGroup> gs = r.groups();
  gs[0].lr = 123;  // restored from the state
  gs[1].beta1 = 0.5;
  AdamW restored(gs);
  restored.load_state_dict(saved);
  EXPECT_EQ(restored.group(1).beta1, 0.8);
  EXPECT_EQ(restored.base_lr(0), 1e-2);
  EXPECT_EQ(restored.step_count(0, 1), 2);
  for (int k = 3; k < 5; ++k) {
    nn::apply_schedule(restored, sched, k);
    set_step_grads(r, k);
    restored.step();
  }
  for (size_t i = 0; i < m.params.size(); ++i) {
    size_t g = i < 2 ? 0 : 1, j = i < 2 ? i : 0;
    EXPECT_TRUE(same_bits(r.params[i], m.params[i])) << "param " << i;
    EXPECT_TRUE(same_bits(restored.exp_avg(g, j), opt.exp_avg(g, j))) << "param " << i;
    EXPECT_TRUE(same_bits(restored.exp_avg_sq(g, j), opt.exp_avg_sq(g, j))) << "param " << i;
    EXPECT_EQ(restored.step_count(g, j), opt.step_count(g, j));
  }
}

TEST(AdamWState, LoadRejectsMismatchesAndChangesNothing) {
  Model m{{leaf(rnd({3, 4}, 1)), leaf(rnd({4}, 2)), leaf(rnd({2, 3}, 3, DType::F32))}};
  AdamW opt(m.groups());
  set_step_grads(m, 0);
  opt.step();
  NamedTensors good = opt.state_dict();
  const char* who = "AdamW.load_state_dict";
  auto with = [&](const std::string& key, const Tensor& t) {
    NamedTensors sd = good;
    for (auto& [k, v] : sd)
      if (k == key) v = t;
    return sd;
  };
  NamedTensors missing;
  for (const auto& kv : good)
    if (kv.first != "enc.b.exp_avg_sq") missing.push_back(kv);
  EXPECT_TRUE(throws_error([&] { opt.load_state_dict(missing); }, {who, "missing key 'enc.b.exp_avg_sq'"}));
  NamedTensors extra = good;
  extra.emplace_back("enc.c.exp_avg", zeros({4}, {DType::F64}));
  EXPECT_TRUE(throws_error([&] { opt.load_state_dict(extra); }, {who, "unexpected key 'enc.c.exp_avg'"}));
  NamedTensors twice = good;
  twice.push_back(good[0]);
  EXPECT_TRUE(throws_error([&] { opt.load_state_dict(twice); }, {who, "'enc.lr' appears twice"}));

  // a bad entry late in the dict must not leave earlier groups half-restored
  AdamW other(m.groups());
  NamedTensors bad_shape = with("dec.w.exp_avg", zeros({3, 2}, {DType::F32}));
  EXPECT_TRUE(throws_error([&] { other.load_state_dict(bad_shape); },
                           {who, "'dec.w.exp_avg' has shape [3, 2]", "parameter 'dec.w' has [2, 3]"}));
  EXPECT_EQ(other.step_count(0, 0), 0);
  EXPECT_EQ(other.exp_avg(0, 0).to_vector(), std::vector<double>(12, 0.0));
  EXPECT_TRUE(throws_error([&] { other.load_state_dict(with("enc.w.exp_avg", zeros({3, 4}, {DType::F32}))); },
                           {who, "'enc.w.exp_avg' is f32, expected f64"}));
  EXPECT_TRUE(throws_error([&] { other.load_state_dict(with("enc.w.step", scalar_tensor(1.0))); },
                           {who, "'enc.w.step' must hold one integer"}));
  EXPECT_TRUE(throws_error([&] { other.load_state_dict(with("enc.lr", zeros({2}, {DType::F64}))); },
                           {who, "'enc.lr' must hold one floating-point number"}));
  EXPECT_TRUE(throws_error([&] { other.load_state_dict(with("dec.beta2", scalar_tensor(1.0, {DType::F64}))); },
                           {who, "group 'dec'", "beta2 1"}));
  EXPECT_EQ(other.group(1).beta2, 0.99);
  other.load_state_dict(good);
  EXPECT_EQ(other.step_count(0, 0), 1);
  EXPECT_TRUE(same_bits(other.exp_avg(1, 0), opt.exp_avg(1, 0)));
}

// ---- construction errors -------------------------------------------------------------------

TEST(AdamWErrors, RejectsBadParametersAndGroups) {
  Tensor w = leaf(rnd({2}, 1));
  EXPECT_TRUE(throws_error([&] { AdamW({ParamGroup{"g", {ops::mul(w, 2.0)}, {"twice"}}}); },
                           {"AdamW", "'g.twice'", "is not a leaf"}));
  EXPECT_TRUE(throws_error([&] { AdamW({ParamGroup{"g", {rnd({2}, 1)}, {"frozen"}}}); },
                           {"'g.frozen'", "does not require grad"}));
  EXPECT_TRUE(throws_error([&] { AdamW({ParamGroup{"a", {w}, {"w"}}, ParamGroup{"b", {w}, {"v"}}}); },
                           {"'b.v' is also in the optimizer as 'a.w'"}));
  EXPECT_TRUE(throws_error([&] { AdamW({ParamGroup{"a", {w, w}, {}}}); }, {"'a.1' is also in the optimizer as 'a.0'"}));
  Tensor h = cast_raw(rnd({2}, 1, DType::F32), DType::BF16);
  h.requires_grad_(true);
  EXPECT_TRUE(throws_error([&] { AdamW({ParamGroup{"g", {h}, {"h"}}}); }, {"'g.h' is bf16", "f32 master copy"}));
  Tensor nc = noncontig(rnd({3}, 1));
  nc.requires_grad_(true);
  EXPECT_TRUE(throws_error([&] { AdamW({ParamGroup{"g", {nc}, {"nc"}}}); }, {"'g.nc'", "not contiguous"}));
  EXPECT_TRUE(throws_error([&] { AdamW({ParamGroup{"g", {w}, {"a", "b"}}}); }, {"1 parameters but 2 names"}));
  Tensor v = leaf(rnd({2}, 2));
  EXPECT_TRUE(throws_error([&] { AdamW({ParamGroup{"g", {w}, {}}, ParamGroup{"g", {v}, {}}}); },
                           {"two groups are named 'g'"}));
  EXPECT_TRUE(throws_error([&] { AdamW({ParamGroup{"g", {}, {}}}); }, {"group 'g' has no parameters"}));
  EXPECT_TRUE(throws_error([&] { AdamW(std::vector<ParamGroup>{}); }, {"no parameter groups"}));
  EXPECT_TRUE(throws_error([&] { AdamW({ParamGroup{"a.b", {w}, {"c"}}, ParamGroup{"a", {v}, {"b.c"}}}); },
                           {"state key 'a.b.c.exp_avg' would be used twice"}));
  EXPECT_TRUE(throws_error([&] { AdamW({ParamGroup{"g", {w}, {}, 1e-3, 1.0}}); }, {"group 'g'", "beta1 1"}));
  EXPECT_TRUE(throws_error([&] { AdamW({ParamGroup{"g", {w}, {}, -1e-3}}); }, {"lr -0.001 is negative"}));
  EXPECT_TRUE(throws_error([&] { AdamW({ParamGroup{"g", {w}, {}, NAN}}); }, {"lr is nan"}));
  EXPECT_TRUE(throws_error([&] { EMA({w}, 1.5); }, {"EMA: decay 1.5"}));
}

TEST(AdamWErrors, RejectsMismatchedGradients) {
  Tensor w = leaf(rnd({2}, 1)), v = leaf(rnd({2}, 2));
  Tensor w0 = clone_raw(w);
  AdamW opt({ParamGroup{"a", {w}, {"w"}}, ParamGroup{"b", {v}, {"v"}}});
  w.set_grad(rnd({2}, 3));
  v.impl().meta.grad = rnd({3}, 4).impl_ptr();  // bypasses set_grad's check
  EXPECT_TRUE(throws_error([&] { opt.step(); }, {"AdamW.step: gradient f64[3]", "'b.v'"}));
  EXPECT_TRUE(same_bits(w, w0));  // checked before anything changed
  // a non-contiguous gradient is fine
  v.set_grad(noncontig(rnd({2}, 5)));
  opt.step();
  EXPECT_EQ(opt.step_count(1, 0), 1);
}

}  // namespace
}  // namespace vgg::test
