// vgg_toy — the 2-D toy of the method study (vggflow/toy.h): trains the base flow on a mixture of
// four Gaussians, then fine-tunes a copy with every method toward p_base·e^{βr} (r linear) and
// measures MMD and sliced W2 to the importance-sampled target.
//
//   vgg_toy --out runs/compare/toy.json [--methods "vggflow vggflow-exact am pmp refl draft"]
//           [--seeds "0 1 2"] [--beta 0.5] [--updates 600] [--base-steps 3000] [--lr 1e-3]
//           [--lr-value 1e-2] [--alpha 100] [--eta t2|t|1]
//
// The JSON holds the settings, the base's distances and the target-vs-target floor, every run's
// curve (update, MMD, sliced W2, mean reward) and 400 final samples per method (seed 0) for plots.
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autograd/ops.h"
#include "tensor/factory.h"
#include "tools/cli.h"
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

int run(int argc, char** argv) {
  cli::Flags f(argc, argv, {"--out", "--methods", "--seeds", "--beta", "--updates", "--base-steps", "--lr", "--lr-value", "--alpha", "--eta"}, {"--help"});
  if (f.has("--help")) {
    std::printf("usage: vgg_toy --out FILE.json [--methods \"vggflow vggflow-exact am pmp refl draft\"] [--seeds \"0 1 2\"]\n"
                "               [--beta 0.5] [--updates 600] [--base-steps 3000] [--lr 1e-3] [--lr-value 1e-2] [--alpha 100]\n"
                "               [--eta t2|t|1]\n");
    return 0;
  }
  if (!f.positional().empty()) throw cli::UsageError("unexpected argument '" + f.positional()[0] + "' (see --help)");
  if (!f.has("--out")) throw cli::UsageError("--out FILE.json is required");
  const std::string out = f.str("--out", "");
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
  auto reward = toy::linear_reward();
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
                   {"reward", "linear (x + y)/sqrt(2)"}, {"data", "4 Gaussians at (+-1.5, +-1.5), std 0.35"}};
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
      j["runs"].push_back(run);
      std::fprintf(stderr, "vgg_toy: %-14s seed %llu: MMD %.4f sliced-W2 %.4f reward %.3f objective %.3f (%.1f s)\n",
                   m.c_str(), static_cast<unsigned long long>(s), r.curve.back().mmd, r.curve.back().sliced_w2,
                   r.curve.back().reward, r.curve.back().objective, r.seconds);
    }
  j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  cli::write_text_atomic(out, j.dump(1) + "\n");
  std::fprintf(stderr, "vgg_toy: wrote %s\n", out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return cli::run_main("vgg_toy", [&] { return run(argc, argv); });
}
