// vgg_toy — the 2-D toy of the method study (vggflow/toy.h): trains the base flow on a mixture of
// four Gaussians, then fine-tunes a copy with every method toward p_base·e^{βr} (r linear) and
// measures MMD and sliced W2 to the importance-sampled target.
//
//   vgg_toy --out runs/compare/toy.json [--methods "vggflow vggflow-exact am pmp refl draft"]
//           [--seeds "0 1 2"] [--beta 0.5] [--updates 600] [--base-steps 3000] [--lr 1e-3]
//           [--lr-value 1e-2] [--alpha 100] [--eta t2|t|1] [--reward linear|bump] [--figures DIR]
//
// --reward bump: r(x) = exp(−‖x − (1.5, 1.5)‖²/2), bounded and nonlinear. When the methods include
// vggflow and pmp, the JSON's "costate" compares the first seed's learned value gradient g_φ with
// PMP's co-state along PMP's trajectories (toy::compare_to_costate: per-step mean cosine and norm
// ratio) and the two control objectives.
//
// The JSON holds the settings, the base's distances and the target-vs-target floor, every run's
// curve (update, MMD, sliced W2, mean reward) and 400 final samples per method (seed 0) for plots.
//
// --figures DIR (docs/tutorial): also writes DIR/toy_figures.json — the fields on a grid at
// σ = 0.9, 0.5, 0.1 (the base velocity as v = −u = dx/dt; for the first VGG-Flow run its value
// gradient g_φ = −η_t·∇r(x̂₁) + ν_φ split into the two parts), the reward on a grid, data / base /
// target samples, and Euler trajectories from one set of noises for the base and every method
// (first seed) — then runs tools/plot-toy on it, which draws base_field.png, reward.png,
// target.png, value_gradient.png and trajectories.png in DIR (python3 with matplotlib). --out is
// optional with --figures.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autograd/ops.h"
#include "tensor/factory.h"
#include "tools/cli.h"
#include "vggflow/methods/vggflow.h"
#include "vggflow/toy.h"

using nlohmann::json;
using namespace vgg;
namespace toy = vgg::flow::toy;

namespace {

std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> w;
  for (std::string x; in >> x;) w.push_back(x);
  return w;
}

json points(const Tensor& x, int64_t n) {
  std::vector<double> v = x.to_vector();
  json out = json::array();
  for (int64_t i = 0; i < n && 2 * i + 1 < static_cast<int64_t>(v.size()); ++i)
    out.push_back({std::round(v[2 * i] * 1e4) / 1e4, std::round(v[2 * i + 1] * 1e4) / 1e4});
  return out;
}

double round4(double v) { return std::round(v * 1e4) / 1e4; }

// Rows [x, y, fx, fy] of a field f on the grid points X [n, 2].
json arrows(const Tensor& X, const Tensor& F) {
  const std::vector<double> x = X.to_vector(), v = F.to_vector();
  json out = json::array();
  for (size_t i = 0; 2 * i + 1 < x.size(); ++i) out.push_back({round4(x[2 * i]), round4(x[2 * i + 1]), round4(v[2 * i]), round4(v[2 * i + 1])});
  return out;
}

// Euler trajectories [n][steps + 1][2] of a field from the noises x0 [n, 2].
json trajectories(const flow::methods::Field& u, const Tensor& x0, const std::vector<float>& sigmas) {
  NoGradGuard ng;
  const std::vector<Tensor> xs = toy::euler_rollout(u, x0, sigmas);
  json out = json::array();
  for (int64_t i = 0; i < x0.size(0); ++i) {
    json path = json::array();
    for (const Tensor& x : xs) {
      const std::vector<double> v = x.to_vector();
      path.push_back({round4(v[static_cast<size_t>(2 * i)]), round4(v[static_cast<size_t>(2 * i + 1)])});
    }
    out.push_back(path);
  }
  return out;
}

// Runs `python3 tools/plot-toy DIR` (the source tree's script); its exit status.
int plot_figures(const std::string& dir) {
  const std::string script = std::string(VGG_SOURCE_DIR) + "/tools/plot-toy";
  if (!std::filesystem::exists(script)) throw std::runtime_error("--figures: " + script + " is missing (run from a source checkout)");
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("--figures: fork failed");
  if (pid == 0) {
    execlp("python3", "python3", script.c_str(), dir.c_str(), static_cast<char*>(nullptr));
    std::fprintf(stderr, "vgg_toy: --figures: cannot run python3 (apt-get install python3 python3-matplotlib)\n");
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw std::runtime_error("--figures: waitpid failed");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

int run(int argc, char** argv) {
  cli::Flags f(argc, argv, {"--out", "--methods", "--seeds", "--beta", "--updates", "--base-steps", "--lr", "--lr-value", "--alpha", "--eta", "--figures", "--reward"}, {"--help"});
  if (f.has("--help")) {
    std::printf("usage: vgg_toy --out FILE.json [--methods \"vggflow vggflow-exact am pmp refl draft\"] [--seeds \"0 1 2\"]\n"
                "               [--beta 0.5] [--updates 600] [--base-steps 3000] [--lr 1e-3] [--lr-value 1e-2] [--alpha 100]\n"
                "               [--eta t2|t|1] [--reward linear|bump] [--figures DIR]\n"
                "  --reward bump  a bounded nonlinear reward exp(-|x - (1.5, 1.5)|^2 / 2); with vggflow and pmp among the\n"
                "                 methods the JSON compares VGG-Flow's value gradient with PMP's co-state (\"costate\")\n"
                "  --figures DIR  also write the tutorial's figures of the toy (fields, value gradient, trajectories)\n"
                "                 to DIR: toy_figures.json and PNGs drawn by tools/plot-toy (needs python3-matplotlib)\n");
    return 0;
  }
  if (!f.positional().empty()) throw cli::UsageError("unexpected argument '" + f.positional()[0] + "' (see --help)");
  const std::string figures = f.str("--figures", "");
  if (f.has("--figures") && figures.empty()) throw cli::UsageError("--figures: empty folder name");
  if (!f.has("--out") && figures.empty()) throw cli::UsageError("--out FILE.json is required (or --figures DIR)");
  const std::string out = f.str("--out", "");
  if (f.has("--out") && out.empty()) throw cli::UsageError("--out: empty file name");
  if (!figures.empty() && std::filesystem::exists(figures) && !std::filesystem::is_directory(figures))
    throw cli::UsageError("--figures: '" + figures + "' exists and is not a folder");
  const auto methods = words(f.str("--methods", "vggflow vggflow-exact am pmp refl draft"));
  std::vector<uint64_t> seeds;
  for (const auto& s : words(f.str("--seeds", "0 1 2"))) {
    uint64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 10);
    if (s.empty() || s[0] == '-' || ec != std::errc() || end != s.data() + s.size())
      throw cli::UsageError("--seeds: '" + s + "' is not an integer in [0, 2^64)");
    seeds.push_back(v);
  }
  for (const auto& m : methods)
    if (m != "vggflow" && m != "vggflow-exact" && m != "am" && m != "pmp" && m != "refl" && m != "draft")
      throw cli::UsageError("--methods: unknown method '" + m + "' (vggflow, vggflow-exact, am, pmp, refl, draft)");
  if (methods.empty() || seeds.empty()) throw cli::UsageError("--methods and --seeds must not be empty");
  toy::ToyOptions o;
  o.beta = f.real("--beta", 0.5, 1e-6, 100);
  o.updates = f.integer("--updates", 600, 1, 1000000);
  const int64_t base_steps = f.integer("--base-steps", 3000, 1, 10000000);
  o.lr = f.real("--lr", o.lr, 0, 1), o.lr_value = f.real("--lr-value", o.lr_value, 0, 1);
  o.alpha = f.real("--alpha", o.alpha, 0, 1e12);
  try {
    o.eta = flow::methods::parse_eta(f.str("--eta", "t2"));
  } catch (const std::exception& e) {
    throw cli::UsageError(std::string("--eta: ") + e.what());
  }

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<double> losses;
  auto base = toy::train_base(base_steps, 512, 7, &losses);
  const std::string reward_name = f.str("--reward", "linear");
  if (reward_name != "linear" && reward_name != "bump") throw cli::UsageError("--reward must be linear or bump, got '" + reward_name + "'");
  auto reward = toy::make_toy_reward(reward_name);
  Generator g(2024);
  Tensor pool = toy::euler_rollout(base->field(), randn({40000, 2}, opts(DType::F64), &g), toy::toy_sigmas(o.sample_steps)).back();
  Tensor target = toy::importance_resample(pool, *reward, o.beta, o.eval_samples, g);
  Tensor target2 = toy::importance_resample(pool, *reward, o.beta, o.eval_samples, g);
  Tensor data = toy::sample_mixture(o.eval_samples, g);
  Tensor noise = randn({o.eval_samples, 2}, opts(DType::F64), &g);
  Tensor base_x = toy::euler_rollout(base->field(), noise, toy::toy_sigmas(o.sample_steps)).back();
  json j;
  j["settings"] = {{"beta", o.beta}, {"updates", o.updates}, {"batch", o.batch}, {"sample_steps", o.sample_steps},
                   {"base_steps", base_steps}, {"eval_samples", o.eval_samples}, {"lr", o.lr}, {"lr_value", o.lr_value}, {"alpha", o.alpha}, {"eta", f.str("--eta", "t2")},
                   {"reward", reward_name == "linear" ? "linear (x + y)/sqrt(2)" : "bump exp(-|x - (1.5, 1.5)|^2 / 2)"}, {"data", "4 Gaussians at (+-1.5, +-1.5), std 0.35"}};
  j["base_loss_last100"] = [&] {
    double s = 0;
    for (size_t i = losses.size() - std::min<size_t>(100, losses.size()); i < losses.size(); ++i) s += losses[i];
    return s / static_cast<double>(std::min<size_t>(100, losses.size()));
  }();
  j["base_vs_data"] = {{"mmd", toy::mmd(base_x, data)}, {"sliced_w2", toy::sliced_w2(base_x, data, 256, g)}};
  j["floor"] = {{"mmd", toy::mmd(target2, target)}, {"sliced_w2", toy::sliced_w2(target2, target, 256, g)}};
  j["base"] = {{"mmd", toy::mmd(base_x, target)}, {"sliced_w2", toy::sliced_w2(base_x, target, 256, g)},
               {"reward", ops::mean((*reward)(base_x)).item()}};
  j["target_reward"] = ops::mean((*reward)(target)).item();
  j["base"]["objective"] = -j["base"]["reward"].get<double>();
  j["target_samples"] = points(target, 400);
  j["base_samples"] = points(base_x, 400);
  std::vector<toy::ToyResult> firsts;  // the first seed's run of each method (--figures, the co-state comparison)
  std::fprintf(stderr, "vgg_toy: base trained (%lld steps, loss %.4f); base-vs-data MMD %.4f; target: MMD base %.4f, floor %.4f\n",
               static_cast<long long>(base_steps), j["base_loss_last100"].get<double>(), j["base_vs_data"]["mmd"].get<double>(),
               j["base"]["mmd"].get<double>(), j["floor"]["mmd"].get<double>());
  for (const auto& m : methods)
    for (uint64_t s : seeds) {
      toy::ToyOptions mo = o;
      mo.method = m, mo.seed = s;
      toy::ToyResult r = toy::run_method(*base, *reward, target, noise, mo);
      json c = json::array();
      for (const auto& e : r.curve) c.push_back({{"update", e.update}, {"mmd", e.mmd}, {"sliced_w2", e.sliced_w2}, {"reward", e.reward}, {"objective", e.objective}});
      json run{{"method", m}, {"seed", s}, {"curve", c}, {"seconds", r.seconds}};
      if (s == seeds[0]) run["samples"] = points(r.samples, 400);
      if (s == seeds[0]) firsts.push_back(r);
      j["runs"].push_back(run);
      std::fprintf(stderr, "vgg_toy: %-14s seed %llu: MMD %.4f sliced-W2 %.4f reward %.3f objective %.3f (%.1f s)\n",
                   m.c_str(), static_cast<unsigned long long>(s), r.curve.back().mmd, r.curve.back().sliced_w2,
                   r.curve.back().reward, r.curve.back().objective, r.seconds);
    }
  {  // VGG-Flow's value gradient against PMP's co-state (first seed)
    const toy::ToyResult *v = nullptr, *p = nullptr;
    for (const auto& r : firsts) {
      if (r.method == "vggflow" && !v) v = &r;
      if (r.method == "pmp" && !p) p = &r;
    }
    if (v && p) {
      const Tensor pts = ops::narrow(noise, 0, 0, 500);
      const toy::CostateComparison c = toy::compare_to_costate(*v, *p, *base, *reward, pts, o);
      const double ov = v->curve.back().objective, op = p->curve.back().objective;
      j["costate"] = {{"seed", seeds[0]}, {"samples", 500}, {"cosine", c.cosine}, {"norm_ratio", c.norm_ratio},
                      {"mean_cosine", c.mean_cosine}, {"objective_vggflow", ov}, {"objective_pmp", op},
                      {"objective_gap", (ov - op) / std::abs(op)}};
      std::fprintf(stderr, "vgg_toy: value gradient vs PMP co-state (seed %llu): mean cosine %.3f (step 1 %.3f, step %lld %.3f); objective VGG-Flow %.4f, PMP %.4f (%+.1f%%)\n",
                   static_cast<unsigned long long>(seeds[0]), c.mean_cosine, c.cosine[1], static_cast<long long>(c.cosine.size() - 1),
                   c.cosine.back(), ov, op, 100 * (ov - op) / std::abs(op));
    }
  }
  j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!out.empty()) {
    cli::write_text_atomic(out, j.dump(1) + "\n");
    std::fprintf(stderr, "vgg_toy: wrote %s\n", out.c_str());
  }
  if (figures.empty()) return 0;

  // The figures' data: fields on a grid, samples, trajectories (see the top of this file).
  const int64_t n = 11;
  std::vector<double> grid;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < n; ++k) grid.push_back(-3.5 + 7.0 * static_cast<double>(k) / (n - 1)), grid.push_back(-3.5 + 7.0 * static_cast<double>(i) / (n - 1));
  const Tensor X = from_vector(grid, {n * n, 2}, opts(DType::F64));
  json fig;
  fig["settings"] = j["settings"];
  fig["sigmas"] = {0.9, 0.5, 0.1};
  fig["data_samples"] = points(data, 400);
  fig["base_samples"] = j["base_samples"];
  fig["target_samples"] = j["target_samples"];
  {
    std::vector<double> rg;
    const int64_t m = 61;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t k = 0; k < m; ++k) rg.push_back(-3.5 + 7.0 * static_cast<double>(k) / (m - 1)), rg.push_back(-3.5 + 7.0 * static_cast<double>(i) / (m - 1));
    NoGradGuard ng;
    const Tensor R = (*reward)(from_vector(rg, {m * m, 2}, opts(DType::F64)));
    json rows = json::array();
    const std::vector<double> rv = R.to_vector();
    for (int64_t i = 0; i < m; ++i) rows.push_back(std::vector<double>(rv.begin() + i * m, rv.begin() + (i + 1) * m));
    fig["reward_grid"] = {{"lo", -3.5}, {"hi", 3.5}, {"n", m}, {"values", rows}};
  }
  for (double sg : {0.9, 0.5, 0.1}) {
    const Tensor S = full({n * n}, sg, opts(DType::F64));
    NoGradGuard ng;
    fig["base_field"].push_back(arrows(X, ops::neg(base->forward(X, S))));
  }
  for (const auto& r : firsts) {
    if (!r.nu_net) continue;
    const flow::methods::Field nu = toy::nu_field(r.nu_net, o.beta);
    flow::methods::Field zero = [](const Tensor& x, const Tensor&) { return zeros_like(x); };
    const flow::methods::Field policy = r.theta->field();
    // unclipped: the toy's linear reward has ‖∇r‖ = 1 everywhere, so the batch-quantile clip is the identity
    const flow::methods::Field g = flow::methods::value_gradient_field(policy, nu, *reward, o.eta, 1e300);
    const flow::methods::Field h = flow::methods::value_gradient_field(policy, zero, *reward, o.eta, 1e300);
    json vg{{"method", r.method}, {"heuristic", json::array()}, {"nu", json::array()}, {"g", json::array()}};
    for (double sg : {0.9, 0.5, 0.1}) {
      const Tensor S = full({n * n}, sg, opts(DType::F64));
      const Tensor gv = g(X, S).detach(), hv = h(X, S).detach();
      vg["g"].push_back(arrows(X, gv));
      vg["heuristic"].push_back(arrows(X, hv));
      vg["nu"].push_back(arrows(X, ops::sub(gv, hv)));
    }
    fig["value_gradient"] = vg;
    break;
  }
  Generator tg(31);
  const Tensor x0 = randn({24, 2}, opts(DType::F64), &tg);
  const std::vector<float> sig = toy::toy_sigmas(o.sample_steps);
  fig["trajectories"].push_back({{"method", "base"}, {"paths", trajectories(base->field(), x0, sig)}});
  for (const auto& r : firsts) fig["trajectories"].push_back({{"method", r.method}, {"paths", trajectories(r.theta->field(), x0, sig)}});
  std::filesystem::create_directories(figures);
  const std::string data_file = (std::filesystem::path(figures) / "toy_figures.json").string();
  cli::write_text_atomic(data_file, fig.dump() + "\n");
  std::fprintf(stderr, "vgg_toy: wrote %s\n", data_file.c_str());
  const int rc = plot_figures(figures);
  if (rc != 0) throw std::runtime_error("--figures: tools/plot-toy failed (exit " + std::to_string(rc) + "); the data is in " + data_file);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return cli::run_main("vgg_toy", [&] { return run(argc, argv); });
}
