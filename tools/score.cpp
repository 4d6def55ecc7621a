// vgg_score — scores PNG images with one of the paper's CLIP rewards (vggflow/clip_rewards.h):
//   vgg_score --reward aesthetic --weights W.safetensors IMAGE.png [IMAGE.png ...]
//   vgg_score --reward hps|pickscore --weights W.safetensors --text-features T.safetensors --prompt N IMAGE.png ...
// Prints one JSON line per image: {"image": ..., "reward": ..., "score": ...}. Weights come from
// tools/convert_reward.py (docs/methods.md, "SD3 rewards").
#include <cstdio>
#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "tools/cli.h"
#include "vggflow/clip_rewards.h"
#include "vggflow/image.h"

using namespace vgg;

namespace {

int run(int argc, char** argv) {
  cli::Flags f(argc, argv, {"--reward", "--weights", "--text-features", "--prompt", "--device"}, {"--help"});
  if (f.has("--help")) {
    std::printf(
        "usage: vgg_score --reward aesthetic|hps|pickscore --weights FILE.safetensors [--text-features FILE.safetensors\n"
        "                 --prompt N] [--device cpu|cuda] IMAGE.png [IMAGE.png ...]\n");
    return 0;
  }
  if (!f.has("--reward")) throw cli::UsageError("--reward is required (aesthetic, hps, pickscore)");
  if (!f.has("--weights")) throw cli::UsageError("--weights FILE.safetensors is required");
  if (f.positional().empty()) throw cli::UsageError("no images given (see --help)");
  flow::ClipRewardKind kind;
  try {
    kind = flow::parse_clip_reward(f.str("--reward", ""));
  } catch (const Error& e) {
    throw cli::UsageError(std::string("--reward: ") + e.what());
  }
  const bool needs_text = kind != flow::ClipRewardKind::Aesthetic;
  if (needs_text && !f.has("--text-features"))
    throw cli::UsageError("--reward " + f.str("--reward", "") + " needs --text-features FILE and --prompt N");
  if (!needs_text && (f.has("--text-features") || f.has("--prompt")))
    throw cli::UsageError("--reward aesthetic takes no --text-features or --prompt");
  const int64_t prompt = f.integer("--prompt", 0, 0);
  Device device = Device::cpu();
  try {
    device = Device::parse(f.str("--device", "cpu"));
  } catch (const std::exception&) {
    throw cli::UsageError("--device must be cpu, cuda or cuda:N, got '" + f.str("--device", "") + "'");
  }
  flow::ClipReward r(f.str("--weights", ""), kind, DType::F32, device);
  if (needs_text) r.set_text_features(flow::load_text_features(f.str("--text-features", ""), prompt));
  NoGradGuard ng;
  for (const std::string& path : f.positional()) {
    Tensor img = flow::read_png(path);
    if (img.size(0) == 1) img = ops::cat({img, img, img}, 0);  // grey as RGB
    const double s = r(ops::unsqueeze(img, 0)).item();
    std::printf("%s\n", nlohmann::json{{"image", path}, {"reward", r.name()}, {"score", s}}.dump().c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return cli::run_main("vgg_score", [&] { return run(argc, argv); }); }
