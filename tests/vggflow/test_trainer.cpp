// The trainers' shared pieces: the Method interface (vggflow/methods/method.h) with its one update
// step (Updater), the command line through CLI11 (tools/cli.h) and the run-folder Trainer
// (tools/trainer.h).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "tests/support/test_support.h"
#include "tests/vggflow/small_model.h"
#include "tensor/json.h"
#include "tools/trainer.h"
#include "vggflow/methods/method.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace vgg;
using namespace vgg::test;
namespace m = vgg::flow::methods;

namespace {

// argv for a parser from words (argv[0] = "prog").
struct Args {
  explicit Args(std::vector<std::string> w) : words(std::move(w)) {
    words.insert(words.begin(), "prog");
    for (auto& s : words) ptrs.push_back(s.data());
  }
  int argc() { return static_cast<int>(ptrs.size()); }
  char** argv() { return ptrs.data(); }
  std::vector<std::string> words;
  std::vector<char*> ptrs;
};

std::string usage_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const cli::UsageError& e) {
    return e.what();
  }
  return "(no usage error)";
}

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("vgg_trainer_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

cli::Trainer::Options options() {
  cli::Trainer::Options o;
  o.prog = "test_trainer";
  o.settings = {{"steps", 4, 1, 100, "updates"},
                {"batch", 2, 1, 64, "batch"},
                {"lr", 1e-3, 0, 1, "lr"},
                {"method", "a", 0, 0, "method", {"a", "b"}},
                {"flag", false, 0, 0, "a boolean"}};
  o.validate = [](json& j) {
    if (j["method"] == "b" && j["batch"].get<int64_t>() > 8) throw cli::UsageError("--method b takes --batch <= 8");
  };
  return o;
}

}  // namespace

TEST(Cli, FlagsParseThroughCli11) {
  {
    Args a({"--steps=5", "--seed", "-3", "pos", "--steps", "7", "--on"});
    cli::Flags f(a.argc(), a.argv(), {"--steps", "--seed"}, {"--on", "--off"});
    EXPECT_EQ(f.integer("--steps", 0, 0), 7);  // a later repeat wins
    EXPECT_EQ(f.integer("--seed", 0, -10), -3);
    EXPECT_TRUE(f.has("--on"));
    EXPECT_FALSE(f.has("--off"));
    ASSERT_EQ(f.positional().size(), 1u);
    EXPECT_EQ(f.positional()[0], "pos");
    EXPECT_EQ(f.str("--missing", "def"), "def");
  }
  auto err = [](std::vector<std::string> w) {
    return usage_error([&] {
      Args a(std::move(w));
      cli::Flags f(a.argc(), a.argv(), {"--steps", "--seed"}, {"--on"});
      f.integer("--steps", 0, 1, 10);
    });
  };
  EXPECT_EQ(err({"--bogus=3"}), "unknown flag --bogus (see --help)");
  EXPECT_EQ(err({"--steps"}), "--steps needs a value");
  EXPECT_EQ(err({"--steps", "--seed", "3"}), "--steps needs a value (got the flag --seed)");
  EXPECT_EQ(err({"--steps", "0x10"}), "--steps must be an integer, got '0x10'");
  EXPECT_EQ(err({"--steps", " 8"}), "--steps must be an integer, got ' 8'");
  EXPECT_EQ(err({"--steps", "11"}), "--steps must be in [1, 10], got 11");
}

TEST(Trainer, DueSchedules) {
  EXPECT_FALSE(cli::due(-1, 10, 10));  // never
  EXPECT_FALSE(cli::due(0, 5, 10));    // only at the end
  EXPECT_TRUE(cli::due(0, 10, 10));
  EXPECT_TRUE(cli::due(3, 6, 10));
  EXPECT_FALSE(cli::due(3, 7, 10));
  EXPECT_TRUE(cli::due(3, 10, 10));
}

// defaults <- --config <- flags, each value checked; the cross-setting hook runs; errors name the
// flag or the file.
TEST(Trainer, ResolvesDefaultsConfigAndFlags) {
  const fs::path d = fresh_dir("resolve");
  std::ofstream(d / "c.json") << R"({"batch": 6, "lr": 0.5, "method": "b"})";
  {
    Args a({"--config", (d / "c.json").string(), "--lr", "0.25", "--out", (d / "run").string(), "--flag", "true"});
    cli::Trainer t(options());
    ASSERT_TRUE(t.parse(a.argc(), a.argv()));
    t.open();
    EXPECT_EQ(t.cfg()["steps"].get<int64_t>(), 4);     // default
    EXPECT_EQ(t.cfg()["batch"].get<int64_t>(), 6);     // the file
    EXPECT_EQ(t.cfg()["lr"].get<double>(), 0.25);      // the flag over the file
    EXPECT_EQ(t.cfg()["method"].get<std::string>(), "b");
    EXPECT_EQ(t.cfg()["flag"].get<bool>(), true);
    EXPECT_FALSE(fs::exists(d / "run" / "config.json"));  // open() writes nothing but the lock
  }
  auto err = [&](std::vector<std::string> w) {
    return usage_error([&] {
      w.push_back("--out");
      w.push_back((d / "bad").string());
      Args a(std::move(w));
      cli::Trainer t(options());
      t.parse(a.argc(), a.argv());
      t.open();
    });
  };
  EXPECT_EQ(err({"--steps", "0"}), "--steps must be in [1, 100], got 0");
  EXPECT_EQ(err({"--method", "c"}), "--method must be a or b, got 'c'");
  EXPECT_EQ(err({"--flag", "yes"}), "--flag must be true or false, got 'yes'");
  EXPECT_EQ(err({"--bogus"}), "unknown flag --bogus (see --help)");
  EXPECT_EQ(err({"extra"}), "unexpected argument 'extra' (see --help)");
  EXPECT_EQ(err({"--method", "b", "--batch", "9"}), "--method b takes --batch <= 8");
  std::ofstream(d / "range.json") << R"({"batch": 65})";
  EXPECT_EQ(err({"--config", (d / "range.json").string()}), (d / "range.json").string() + ": 'batch' must be in [1, 64], got 65");
  std::ofstream(d / "type.json") << R"({"steps": 2.0})";
  EXPECT_EQ(err({"--config", (d / "type.json").string()}), (d / "type.json").string() + ": 'steps' must be an integer, got 2.0");
  std::ofstream(d / "key.json") << R"({"stepz": 2})";
  EXPECT_EQ(err({"--config", (d / "key.json").string()}), (d / "key.json").string() + ": unknown setting 'stepz'");
  fs::remove_all(d);
}

// A preset sits between the defaults and the config file: defaults <- preset <- file <- flags; the
// preset is named by a flag or the file; a bad preset value in a preset table is refused as a file's.
TEST(Trainer, PresetsSitUnderTheConfigFileAndFlags) {
  const fs::path d = fresh_dir("preset");
  cli::Trainer::Options o = options();
  o.settings.push_back({"preset", "none", 0, 0, "preset", {"none", "big", "broken"}});
  o.presets = {{"big", json{{"steps", 90}, {"batch", 32}, {"lr", 0.125}}}, {"broken", json{{"steps", 1000}}}};
  auto cfg = [&](std::vector<std::string> w, const std::string& run) {
    w.push_back("--out");
    w.push_back((d / run).string());
    Args a(std::move(w));
    cli::Trainer t(o);
    EXPECT_TRUE(t.parse(a.argc(), a.argv()));
    t.open();
    return t.cfg();
  };
  json c = cfg({"--preset", "big", "--batch", "16"}, "a");
  EXPECT_EQ(c["steps"].get<int64_t>(), 90);   // the preset over the default
  EXPECT_EQ(c["batch"].get<int64_t>(), 16);   // the flag over the preset
  EXPECT_EQ(c["lr"].get<double>(), 0.125);
  std::ofstream(d / "p.json") << R"({"preset": "big", "lr": 0.5})";
  c = cfg({"--config", (d / "p.json").string()}, "b");
  EXPECT_EQ(c["steps"].get<int64_t>(), 90);  // named by the file
  EXPECT_EQ(c["lr"].get<double>(), 0.5);     // the file over the preset
  c = cfg({"--config", (d / "p.json").string(), "--preset", "none"}, "c");
  EXPECT_EQ(c["steps"].get<int64_t>(), 4);   // the flag's preset (none) over the file's
  EXPECT_EQ(c["lr"].get<double>(), 0.5);
  c = cfg({}, "d");
  EXPECT_EQ(c["preset"].get<std::string>(), "none");
  EXPECT_EQ(c["batch"].get<int64_t>(), 2);
  auto err = [&](std::vector<std::string> w) {
    return usage_error([&] {
      w.push_back("--out");
      w.push_back((d / "bad").string());
      Args a(std::move(w));
      cli::Trainer t(o);
      t.parse(a.argc(), a.argv());
      t.open();
    });
  };
  EXPECT_EQ(err({"--preset", "small"}), "--preset must be none, big or broken, got 'small'");
  EXPECT_EQ(err({"--preset", "broken"}), "preset broken: 'steps' must be in [1, 100], got 1000");
  std::ofstream(d / "q.json") << R"({"preset": "tiny"})";
  EXPECT_EQ(err({"--config", (d / "q.json").string()}), (d / "q.json").string() + ": 'preset' must be none, big or broken, got 'tiny'");
  fs::remove_all(d);
}

// The loop's schedule and log; a resumed run continues from its checkpoint's step, refuses changed
// settings and a shorter run; a run that already exists is refused.
TEST(Trainer, LoopScheduleCheckpointsAndResume) {
  const fs::path d = fresh_dir("loop");
  const std::string out = (d / "run").string();
  std::vector<int64_t> evals, samples, ckpts;
  auto make_loop = [&](cli::Trainer& t, int64_t steps) {
    cli::Trainer::Loop l;
    l.steps = steps;
    l.eval_every = 2, l.sample_every = 0, l.ckpt_every = 2;
    l.update = [](int64_t step) -> json {
      if (step == 2) return json{{"skipped", "the loss is not finite"}};
      return step == 1 ? json(nullptr) : json{{"loss", static_cast<double>(step)}};
    };
    l.evaluate = [&](int64_t s) { evals.push_back(s); };
    l.sample = [&](int64_t s) { samples.push_back(s); };
    l.checkpoint = [&](int64_t s) {
      ckpts.push_back(s);
      t.commit(s, [](const fs::path& tmp) { std::ofstream(tmp / "w.txt") << "w"; }, json{{"epoch", 7}});
    };
    return l;
  };
  {
    Args a({"--steps", "3", "--out", out});
    cli::Trainer t(options());
    ASSERT_TRUE(t.parse(a.argc(), a.argv()));
    t.open();
    t.start();
    t.run(make_loop(t, 3));
  }
  EXPECT_EQ(evals, (std::vector<int64_t>{0, 2, 3}));
  EXPECT_EQ(samples, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(ckpts, (std::vector<int64_t>{2, 3}));
  {
    std::ifstream in(fs::path(out) / "metrics.jsonl");
    std::vector<json> lines;
    for (std::string s; std::getline(in, s);) lines.push_back(json::parse(s));
    ASSERT_EQ(lines.size(), 2u);  // update 2 logged nothing
    EXPECT_EQ(lines[0]["step"].get<int64_t>(), 1);
    EXPECT_EQ(lines[0]["loss"].get<double>(), 0.0);
    EXPECT_TRUE(lines[0].contains("sec_per_update") && lines[0].contains("update_s") && lines[0].contains("elapsed_s"));
    EXPECT_EQ(lines[1]["step"].get<int64_t>(), 3);
    EXPECT_EQ(lines[1]["skipped"].get<std::string>(), "the loss is not finite");
    const json st = read_json_file((fs::path(out) / "checkpoint" / "state.json").string());
    EXPECT_EQ(st["step"].get<int64_t>(), 3);
    EXPECT_EQ(st["epoch"].get<int64_t>(), 7);
  }
  auto err = [&](std::vector<std::string> w) {
    return usage_error([&] {
      w.push_back("--out");
      w.push_back(out);
      Args a(std::move(w));
      cli::Trainer t(options());
      t.parse(a.argc(), a.argv());
      t.open();
    });
  };
  EXPECT_EQ(err({"--resume", "--batch", "3"}), "--batch cannot change on --resume (only --steps can)");
  EXPECT_EQ(err({"--resume", "--steps", "2"}),
            "--steps 2 is before the checkpoint's step 3 (a run cannot be shortened by resuming it)");
  EXPECT_THROW(err({"--steps", "3"}), std::runtime_error);  // already holds a run
  evals.clear(), samples.clear(), ckpts.clear();
  {
    Args a({"--resume", "--steps", "5", "--out", out});
    cli::Trainer t(options());
    ASSERT_TRUE(t.parse(a.argc(), a.argv()));
    t.open();
    EXPECT_TRUE(t.resuming());
    EXPECT_EQ(t.step(), 3);
    EXPECT_EQ(t.checkpoint_state()["epoch"].get<int64_t>(), 7);
    EXPECT_EQ(t.cfg()["steps"].get<int64_t>(), 5);
    t.start();
    t.run(make_loop(t, 5));
  }
  EXPECT_EQ(evals, (std::vector<int64_t>{4, 5}));  // no step-0 events on resume
  EXPECT_EQ(ckpts, (std::vector<int64_t>{4, 5}));
  fs::remove_all(d);
}

// One update from micro-batches: the gradient is the mean of theirs, the statistics too; a
// non-finite loss skips the update (nothing moves) and too many in a row stop the run.
TEST(Methods, UpdaterAccumulatesMicroBatchesAndSkipsNonFiniteUpdates) {
  Tensor p = from_vector(std::vector<double>{1.0, -2.0}, {2}, opts(DType::F64));
  p.requires_grad_(true);
  nn::ParamGroup g;
  g.name = "p", g.params = {p}, g.lr = 0.1, g.weight_decay = 0;
  nn::AdamW opt({g});
  m::Updater up(opt, {g}, 3);
  // micro-batch k: loss (k + 1)·sum(p²), gradient 2(k + 1)p; mean over 2: 3p
  const std::vector<double> before = p.to_vector();
  json line = up.update(2, [&](int64_t mb, json& part) {
    part["k"] = static_cast<double>(mb);
    part["count"] = 5;
    return ops::mul(ops::sum(ops::square(p)), static_cast<double>(mb + 1));
  });
  EXPECT_FALSE(up.skipped());
  const std::vector<double> gr = p.grad().to_vector();
  EXPECT_NEAR(gr[0], 3 * before[0], 1e-12);
  EXPECT_NEAR(gr[1], 3 * before[1], 1e-12);
  EXPECT_DOUBLE_EQ(line["k"].get<double>(), 0.5);
  EXPECT_EQ(line["count"].get<int64_t>(), 5);
  EXPECT_DOUBLE_EQ(line["loss"].get<double>(), 0.5 * (5 + 2 * 5));
  EXPECT_TRUE(line.contains("grad_norm_p"));
  EXPECT_NE(p.to_vector(), before);
  const std::vector<double> moved = p.to_vector();
  for (int i = 0; i < 2; ++i) {
    line = up.update(1, [&](int64_t, json&) { return ops::mul(ops::sum(p), std::nan("")); });
    EXPECT_TRUE(up.skipped());
    EXPECT_EQ(line["skipped"].get<std::string>(), "the loss is not finite");
    EXPECT_EQ(p.to_vector(), moved);
  }
  EXPECT_THROW(up.update(1, [&](int64_t, json&) { return m::nan_gradient(ops::sum(p)); }), std::runtime_error);
}

// Every method of the trainer behind the one interface: its name, its extra groups and state, a
// finite loss with gradients to θ, the statistics it logs.
TEST(Methods, EveryMethodBehindTheInterface) {
  m::Policy p = m::make_policy(small_flow_model(3), 4, 2.0, 9);
  std::shared_ptr<const flow::Reward> reward(flow::make_pixel_reward("contrast").release());
  m::MethodOptions o;
  o.steps = 4, o.vggflow.bins = 2, o.vggflow.beta = 2, o.adjoint.beta = 2, o.adjoint.bins = 2, o.adjoint.times = 2;
  for (const std::string& name : m::method_names()) {
    SCOPED_TRACE(name);
    o.name = name;
    auto meth = m::make_method(p, reward, o);
    EXPECT_EQ(meth->name(), name);
    const auto extra = meth->extra_groups();
    EXPECT_EQ(extra.size(), name == "vggflow" ? 1u : 0u);
    EXPECT_EQ(meth->state_file(), name == "vggflow" ? "value.safetensors" : "");
    EXPECT_EQ(meth->state().empty(), name != "vggflow");
    for (auto& t : p.lora_params()) t.set_grad(Tensor());
    Generator gen(4);
    json stats;
    Tensor loss = meth->loss(2, gen, stats);
    ASSERT_TRUE(std::isfinite(loss.item()));
    backward(loss);
    EXPECT_GT(grad_abs_sum(p.lora_params()), 0.0);
    ASSERT_TRUE(stats.contains("reward"));
    EXPECT_TRUE(std::isfinite(stats["reward"].get<double>()));
    if (name == "vggflow") {
      EXPECT_TRUE(stats.contains("loss_matching") && stats.contains("loss_consistency"));
      EXPECT_GT(grad_abs_sum(extra[0].params), 0.0);
      // per-slot diagnostics: 2 bins + the last step; the slots' residuals average to the loss's
      double cons = 0, last_sigma = 2;
      for (int j = 0; j < 3; ++j) {
        const std::string b = "bin" + std::to_string(j) + "_";
        for (const char* k : {"sigma", "nu_norm", "guide_norm", "consistency"})
          ASSERT_TRUE(stats.contains(b + k) && std::isfinite(stats[b + k].get<double>())) << b << k;
        EXPECT_GT(stats[b + "guide_norm"].get<double>(), 0.0);
        EXPECT_GE(stats[b + "nu_norm"].get<double>(), 0.0);
        EXPECT_LT(stats[b + "sigma"].get<double>(), last_sigma);  // bins in time order, σ falling
        last_sigma = stats[b + "sigma"].get<double>();
        cons += stats[b + "consistency"].get<double>() / 3;
      }
      EXPECT_FALSE(stats.contains("bin3_sigma"));
      EXPECT_NEAR(cons, stats["loss_consistency"].get<double>(), 1e-12 * (1 + cons));
    }
  }
  o.name = "ppo";
  EXPECT_TRUE(throws_error([&] { m::make_method(p, reward, o); }, {"unknown method 'ppo'"}));
}

// The study's fidelity switches (docs/methods.md): the official code's loss weighting against
// eq. 15 on the same draws, ν_φ frozen at zero, DRaFT-K's random K, the out-of-range fraction.
TEST(Methods, FidelitySwitches) {
  m::Policy p = m::make_policy(small_flow_model(3), 4, 2.0, 9);
  std::shared_ptr<const flow::Reward> reward(flow::make_pixel_reward("contrast").release());
  m::MethodOptions o;
  o.steps = 4, o.vggflow.bins = 2, o.vggflow.beta = 2, o.vggflow.alpha = 3, o.adjoint.beta = 2, o.adjoint.bins = 2;
  o.adjoint.times = 2;
  auto run = [&](const m::MethodOptions& mo, uint64_t seed) {
    auto meth = m::make_method(p, reward, mo);
    Generator gen(seed);
    json stats;
    stats["loss"] = meth->loss(2, gen, stats).item();
    return stats;
  };
  o.name = "vggflow";
  const json paper = run(o, 4);
  m::MethodOptions oc = o;
  oc.vggflow.weighting = m::LossWeighting::Code;
  const json code = run(oc, 4);
  const double lm = paper["loss_matching"], lc = paper["loss_consistency"], lb = paper["loss_boundary"], beta = 2, S = 3;
  EXPECT_EQ(code["loss_consistency"].get<double>(), lc);  // the same draws and the same terms
  EXPECT_GT(lb, 0.0);
  EXPECT_NEAR(paper["loss"].get<double>(), lm + lc + 3 * lb, 1e-5 * paper["loss"].get<double>());
  EXPECT_NEAR(code["loss"].get<double>(), lm + lc / (beta * beta) + 3 * beta * beta * lb / S, 1e-5 * code["loss"].get<double>());
  // ν_φ frozen at zero: every slot's ‖β·ν‖ and the boundary term are exactly zero
  m::MethodOptions oz = o;
  oz.value_zero = true;
  const json zero = run(oz, 4);
  EXPECT_EQ(zero["loss_boundary"].get<double>(), 0.0);
  for (int j = 0; j < 3; ++j) {  // ν recovered as g + η·clip ∇r: zero up to g's f32 rounding
    const std::string b = "bin" + std::to_string(j) + "_";
    EXPECT_LT(zero[b + "nu_norm"].get<double>(), 1e-5 * zero[b + "guide_norm"].get<double>());
  }
  // DRaFT-K with K in [1, 3] of 4 steps: the graph starts at step 4 − K, every K is drawn
  m::MethodOptions od = o;
  od.name = "draft", od.draft_k_max = 3;
  std::set<int64_t> starts;
  for (uint64_t s = 0; s < 24; ++s) starts.insert(run(od, s)["graph_step"].get<int64_t>());
  EXPECT_EQ(starts, (std::set<int64_t>{1, 2, 3}));
  EXPECT_TRUE(throws_error([&] {
    Generator g(1);
    m::draw_draft_k(0, g);
  }, {"K_max must be >= 1"}));
  // every method logs the fraction of its samples' pixels outside [−1, 1] (pixel pipelines)
  for (const std::string& name : m::method_names()) {
    SCOPED_TRACE(name);
    o.name = name;
    const json st = run(o, 5);
    ASSERT_TRUE(st.contains("x1_out_of_range"));
    EXPECT_GE(st["x1_out_of_range"].get<double>(), 0.0);
    EXPECT_LE(st["x1_out_of_range"].get<double>(), 1.0);
    o.clamp_logged_samples = false;
    EXPECT_FALSE(run(o, 5).contains("x1_out_of_range"));
    o.clamp_logged_samples = true;
  }
}

namespace {
// A prompt-conditioned reward that records what it was asked: r(x, c) = mean(x) + c (differentiable
// in x); the prompt-free call is refused, so a method that forgets the prompts fails.
class PromptRecordingReward : public flow::Reward {
 public:
  std::string name() const override { return "prompt-recording"; }
  Tensor operator()(const Tensor&) const override { throw Error("prompt-recording reward called without prompt ids"); }
  Tensor score(const Tensor& x, const Tensor& ids) const override {
    if (!ids.defined() || ids.dim() != 1 || ids.size(0) != x.size(0)) throw Error("prompt ids do not match the batch");
    for (double v : ids.to_vector()) seen.push_back(v);
    Tensor c = ops::to(ops::to(ids, x.dtype()), x.device());
    return ops::add(ops::mean(ops::reshape(x, {x.size(0), -1}), {1}), c);
  }
  bool uses_prompts() const override { return true; }
  mutable std::vector<double> seen;
};
}  // namespace

// Every method scores its samples against the prompts its rollout drew (through PromptBoundReward):
// never the prompt-free call, one id per sample, ids within the model's prompts and not all one.
TEST(Methods, EveryMethodScoresSamplesAgainstTheirPrompts) {
  m::Policy p = m::make_policy(small_flow_model(3), 4, 2.0, 9);
  auto reward = std::make_shared<PromptRecordingReward>();
  m::MethodOptions o;
  o.steps = 4, o.vggflow.bins = 2, o.vggflow.beta = 2, o.adjoint.beta = 2, o.adjoint.bins = 2, o.adjoint.times = 2;
  const int64_t n = p.model.prompts->num_prompts() - 1;
  for (const std::string& name : m::method_names()) {
    SCOPED_TRACE(name);
    o.name = name;
    auto meth = m::make_method(p, reward, o);
    reward->seen.clear();
    Generator gen(5);
    json stats;
    Tensor loss;
    ASSERT_NO_THROW(loss = meth->loss(8, gen, stats));
    ASSERT_TRUE(std::isfinite(loss.item()));
    ASSERT_FALSE(reward->seen.empty());
    double lo = 1e9, hi = -1e9;
    for (double v : reward->seen) lo = std::min(lo, v), hi = std::max(hi, v);
    EXPECT_GE(lo, 0);
    EXPECT_LT(hi, static_cast<double>(n));
    EXPECT_LT(lo, hi);  // 8 draws over the prompts are not all the same prompt
  }
}

// The data-parallel update over a one-rank communicator: "fast" (autograd accumulation, one
// all-reduce per group) gives the serial update's bits; "deterministic" (per-micro-batch gradients
// summed in order) gives the same statistics and, for exactly representable gradients, the same
// step; a parameter without a gradient in every micro-batch keeps none; non-finite losses skip.
TEST(Methods, UpdaterOverACommunicator) {
  auto run = [](int mode) {  // 0 serial, 1 fast, 2 deterministic
    Tensor p = from_vector(std::vector<double>{1.0, -2.0}, {2}, opts(DType::F32));
    Tensor q = from_vector(std::vector<double>{0.5}, {1}, opts(DType::F32));  // never used: no gradient
    p.requires_grad_(true), q.requires_grad_(true);
    nn::ParamGroup g;
    g.name = "p", g.params = {p, q}, g.lr = 0.1, g.weight_decay = 0;
    nn::AdamW opt({g});
    m::Updater up(opt, {g}, 3);
    if (mode > 0) up.set_communicator(dist::make_local(), mode == 2);
    json line = up.update(4, [&](int64_t mb, json& part) {
      part["k"] = static_cast<double>(mb);
      return ops::mul(ops::sum(ops::square(p)), 0.25 * static_cast<double>(mb + 1));
    });
    EXPECT_FALSE(q.grad().defined());
    EXPECT_EQ(q.to_vector(), (std::vector<double>{0.5}));
    line.erase("grad_norm_p");
    return std::pair{p.to_vector(), line};
  };
  const auto serial = run(0), fast = run(1), det = run(2);
  EXPECT_EQ(fast.first, serial.first);
  EXPECT_EQ(fast.second, serial.second);
  EXPECT_EQ(det.second, serial.second);   // the statistics combine alike
  EXPECT_EQ(det.first, serial.first);     // gradients of quarters of small integers: exact either way
  EXPECT_DOUBLE_EQ(serial.second["k"].get<double>(), 1.5);

  // a non-finite loss in any micro-batch skips the update on every path
  Tensor p = from_vector(std::vector<double>{1.0}, {1}, opts(DType::F32));
  p.requires_grad_(true);
  nn::ParamGroup g;
  g.name = "p", g.params = {p}, g.lr = 0.1;
  nn::AdamW opt({g});
  m::Updater up(opt, {g}, 5);
  up.set_communicator(dist::make_local(), true);
  json line = up.update(2, [&](int64_t mb, json&) { return ops::mul(ops::sum(p), mb == 1 ? std::nan("") : 1.0); });
  EXPECT_TRUE(up.skipped());
  EXPECT_EQ(line["skipped"].get<std::string>(), "the loss is not finite");
  EXPECT_EQ(p.to_vector(), (std::vector<double>{1.0}));
}

// The job's communicator without mpirun: local; the MPI and NCCL backends are refused in one line.
TEST(Methods, CommunicatorWithoutMpirun) {
  if (dist::launched_by_mpi()) GTEST_SKIP() << "run under an MPI launcher";
  auto w = dist::world();
  EXPECT_EQ(w->backend(), "local");
  EXPECT_EQ(w->size(), 1);
  EXPECT_TRUE(throws_error([] { dist::make("mpi"); }, {"needs the processes started by mpirun"}));
  EXPECT_TRUE(throws_error([] { dist::world("mpi"); }, {"the job's communicator is local, not mpi"}));
  EXPECT_TRUE(throws_error([] { dist::world("gloo"); }, {"unknown communicator backend 'gloo'"}));
  Tensor t = from_vector(std::vector<double>{1, 2}, {2}, opts(DType::F64)), o = zeros({2}, opts(DType::F64));
  w->all_reduce_sum(t);
  w->all_gather(t, o);
  EXPECT_EQ(o.to_vector(), (std::vector<double>{1, 2}));
  EXPECT_EQ(w->all_gather_strings("abc"), (std::vector<std::string>{"abc"}));
  EXPECT_TRUE(throws_error([&] { w->broadcast(t, 1); }, {"root 1 is not a rank of 1"}));
  ::setenv("VGG_COMM_TIMEOUT", "-3", 1);
  EXPECT_TRUE(throws_error([] { dist::timeout_seconds(); }, {"VGG_COMM_TIMEOUT must be a positive number"}));
  ::unsetenv("VGG_COMM_TIMEOUT");
  EXPECT_EQ(dist::timeout_seconds(), 1800);
}

// ZeRO-1's plan: every parameter has one owner, every rank owns at least one parameter of every
// group, the shares are balanced by size, and the segments hold them without overlap.
TEST(Methods, ZeroOnePlanSharesEveryGroup) {
  std::vector<nn::ParamGroup> groups(2);
  groups[0].name = "theta", groups[1].name = "phi";
  for (int64_t n : {100, 3, 50, 7, 60, 2}) groups[0].params.push_back(zeros({n}).requires_grad_(true));
  for (int64_t n : {5, 5, 5}) groups[1].params.push_back(zeros({n}).requires_grad_(true));
  for (int size : {1, 2, 3}) {
    SCOPED_TRACE(size);
    std::vector<int64_t> total(static_cast<size_t>(size), 0);
    for (int rank = 0; rank < size; ++rank) {
      const m::Zero1Plan z = m::plan_zero1(groups, rank, size);
      ASSERT_EQ(z.owner.size(), 9u);
      ASSERT_EQ(z.owned.size(), 2u);
      for (const auto& g : z.owned) EXPECT_GE(g.params.size(), 1u);  // a share of every group
      int64_t mine = 0;
      for (size_t i = 0; i < z.owner.size(); ++i)
        if (z.owner[i] == rank) mine += (i < 6 ? groups[0] : groups[1]).params[i < 6 ? i : i - 6].numel();
      EXPECT_EQ(mine, z.elements[static_cast<size_t>(rank)]);
      EXPECT_LE(mine, z.segment);
      total[static_cast<size_t>(rank)] = mine;
      EXPECT_EQ(z.owned[0].param_names.size(), z.owned[0].params.size());  // named by their full index
    }
    int64_t sum = 0, most = 0;
    for (int64_t t : total) sum += t, most = std::max(most, t);
    EXPECT_EQ(sum, 100 + 3 + 50 + 7 + 60 + 2 + 15);
    if (size == 2) EXPECT_LE(most, 130);  // balanced: 121 each would be perfect
  }
  EXPECT_TRUE(throws_error([&] { m::plan_zero1(groups, 0, 4); }, {"group 'phi' has 3 parameters, fewer than the 4 processes"}));
}
