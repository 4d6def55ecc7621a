// vgg_eval — the evaluation metrics of a flow model (vggflow/evaluate.h, docs/flow.md "Metrics"):
// reward and gold reward, F_B class accuracy, diversity, per-prompt FD to the base model with its
// noise floor, FD to the real test set with its floor, and the pixel hacking detectors.
//
//   vgg_eval [--model DIR] [--base DIR] [--reward NAME] [--per-prompt N] [--out FILE.json] [--grid FILE.png] ...
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "nn/io.h"
#include "tools/cli.h"
#include "vggflow/evaluate.h"
#include "vggflow/image.h"

using namespace vgg;
namespace fs = std::filesystem;

namespace {

constexpr const char* kHelp = R"(usage: vgg_eval [flags]
  --model DIR        model folder or vgg_pretrain run folder (default: the shipped base, models/base)
  --base DIR         the base model FD is measured against (default models/base)
  --lora FILE        LoRA adapters to attach to --model (a vgg_train run's checkpoint/lora.safetensors)
  --models DIR       the shipped networks and probes (default models/ of the source tree, or $VGG_MODELS)
  --reward NAME      aesthetic (default), classifier[:CLASS], brightness, contrast, symmetry
  --per-prompt N     samples per class prompt (default 64)
  --seed S           seed A of the samples (default 1234; the base reference uses S + 1)
  --steps N          Euler steps (default: the model's)
  --guidance X       CFG scale (default: the model's)
  --data DIR         Fashion-MNIST IDX files (default: the dataset-fashion-mnist package)
  --out FILE         write the metrics as JSON (never overwrites without --force)
  --grid FILE        write a PNG grid of the first 8 samples of every prompt
  --force            overwrite --out / --grid
)";

int run(int argc, char** argv) {
  cli::Flags f(argc, argv,
               {"--model", "--base", "--lora", "--models", "--reward", "--per-prompt", "--seed", "--steps", "--guidance", "--data",
                "--out", "--grid"},
               {"--force", "--help"});
  if (f.has("--help")) {
    std::printf("%s", kHelp);
    return 0;
  }
  if (!f.positional().empty()) throw cli::UsageError("unexpected argument '" + f.positional()[0] + "' (see --help)");
  const std::string models = f.str("--models", flow::default_models_dir());
  const std::string base_dir = f.str("--base", models + "/base"), model_dir = f.str("--model", base_dir);
  const std::string out = f.str("--out", ""), grid = f.str("--grid", "");
  for (const std::string& p : {out, grid})
    if (!p.empty() && fs::exists(p) && !f.has("--force")) throw std::runtime_error(p + " exists (use --force)");
  const std::string lora = f.str("--lora", "");
  if (!lora.empty() && !fs::is_regular_file(lora)) throw cli::UsageError("--lora: no file '" + lora + "'");
  const int64_t n = f.integer("--per-prompt", 64, 16, 100000);
  const auto seed = static_cast<uint64_t>(f.integer("--seed", 1234, 0));
  f.integer("--steps", 20, 1, 10000);  // validated before anything is loaded
  f.real("--guidance", 1.0, 0, 100);
  const auto t0 = std::chrono::steady_clock::now();
  flow::RewardPair rw = flow::make_rewards(f.str("--reward", "aesthetic"), models);
  flow::FlowModel base = flow::load_flow_model(base_dir);
  flow::FlowModel model = model_dir == base_dir && lora.empty() ? base : flow::load_flow_model(model_dir);
  if (!lora.empty()) nn::attach_lora_file(lora, *model.net);
  flow::EvalOptions o;
  o.per_prompt = n;
  o.seed = seed;
  o.sampling = model.sampling;
  o.sampling.steps = f.integer("--steps", model.sampling.steps, 1, 10000);
  o.sampling.guidance = f.real("--guidance", model.sampling.guidance, 0, 100);
  flow::ImageSet test = flow::load_fashion_mnist(false, f.str("--data", ""), 32);
  std::fprintf(stderr, "vgg_eval: %lld samples per prompt, %lld Euler steps, guidance %g\n", static_cast<long long>(n),
               static_cast<long long>(o.sampling.steps), o.sampling.guidance);
  flow::EvalReference ref = flow::make_reference(base, *rw.fb, test, o);
  Tensor images = model_dir == base_dir && lora.empty() ? ref.base_images_a
                                        : flow::sample_images(model.velocity(), *model.prompts, flow::per_class_ids(n),
                                                              o.sampling, o.seed);
  nlohmann::json j = flow::evaluate_images(images, rw, ref);
  // paths as the user would type them from here (no absolute paths of this machine in reports)
  auto shown = [](const std::string& p) {
    if (p.empty()) return p;
    std::error_code ec;
    const std::string r = fs::relative(p, fs::current_path(), ec).string();
    return ec || r.empty() || r.rfind("..", 0) == 0 ? p : r;
  };
  j["model"] = shown(model_dir), j["base"] = shown(base_dir), j["lora"] = shown(lora), j["reward_name"] = f.str("--reward", "aesthetic");
  j["steps"] = o.sampling.steps, j["guidance"] = o.sampling.guidance, j["seed"] = o.seed;
  j["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("reward %.4f ± %.4f   gold %.4f ± %.4f\n", j["reward"].get<double>(), j["reward_std"].get<double>(),
              j["gold"].get<double>(), j["gold_std"].get<double>());
  std::printf("F_B accuracy on the samples   %.2f%%\n", 100 * j["fb_accuracy"].get<double>());
  std::printf("diversity                     %.4f\n", j["diversity"].get<double>());
  std::printf("FD to base (per-prompt mean)  %.4f   (noise floor %.4f)\n", j["fd_base"].get<double>(),
              j["fd_base_floor"].get<double>());
  std::printf("FD to real test images        %.4f   (real-vs-real floor %.4f, ratio %.2f)\n", j["fd_real"].get<double>(),
              j["fd_real_floor"].get<double>(), j["fd_real"].get<double>() / j["fd_real_floor"].get<double>());
  std::printf("near-black / near-white / entropy  %.3f / %.3f / %.2f bits   (real %.3f / %.3f / %.2f)\n",
              j["near_black"].get<double>(), j["near_white"].get<double>(), j["pixel_entropy"].get<double>(),
              j["real_near_black"].get<double>(), j["real_near_white"].get<double>(),
              j["real_pixel_entropy"].get<double>());
  std::printf("%.0f s\n", j["seconds"].get<double>());
  if (!out.empty()) {
    cli::write_durable(out, j.dump(2) + "\n");  // checked, fsync'ed, renamed into place
  }
  if (!grid.empty()) {
    std::vector<Tensor> rows;
    for (int64_t c = 0; c < 10; ++c) rows.push_back(ops::narrow(images, 0, c * n, 8));
    flow::write_png(grid, flow::make_grid(ops::cat(rows, 0), 8));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return cli::run_main("vgg_eval", [&] { return run(argc, argv); });
}
