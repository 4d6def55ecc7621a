// The evaluation protocol of the embedded default (docs/flow.md, "Metrics"): sample n images
// per class prompt with fixed seeds, then
//   reward / gold       the training reward (F_A or pixels) and its gold counterpart (F_B), mean ± std
//   fb_accuracy         fraction of samples F_B classifies as their prompt's class
//   diversity           mean over prompts of diversity() of the first 16 samples' F_B embeddings
//   fd_base             per prompt, FD in F_B space between the model's samples (seed A) and the
//                       base model's samples (seed B); fd_base_floor is base (seed A) vs base
//                       (seed B) at the same n: the value any model equal to the base gets
//   fd_real             FD between all samples and a random real test subset of the same size;
//                       fd_real_floor is that subset against another disjoint one
//   pixel_diversity     mean over prompts of pixel_diversity() of the first 16 samples (no network)
//   reference           the metrics' range: real test images of each class, n per prompt, scored as
//                       samples are (fd_base, diversity, pixel_diversity), and a collapsed model
//                       whose n samples of a prompt are all the base's first (fd_base; its two
//                       diversities are 0)
//   pixels              near-black / near-white fractions and intensity entropy (hacking
//                       detectors), next to the real test set's values
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "vggflow/data.h"
#include "vggflow/metrics.h"
#include "vggflow/model.h"
#include "vggflow/rewards.h"

namespace vgg::flow {

struct EvalOptions {
  int64_t per_prompt = 64;   // samples per class prompt
  int64_t diversity_n = 16;  // samples per prompt in the diversity metric
  uint64_t seed = 1234;      // seed A (the model's samples); seed B = seed + 1 (the base reference)
  SampleOptions sampling;
  Device device = Device::cpu();  // where the samples' trajectories live (the model's device)
};

// Everything about the base model and the real data that does not change during a run.
struct EvalReference {
  EvalOptions opt;
  std::vector<Gaussian> base_b;        // per prompt, F_B Gaussians of the base samples (seed B)
  std::vector<double> fd_base_floor;   // per prompt
  Gaussian real_b;                     // a real test subset of 10·n images
  double fd_real_floor = 0;
  PixelStats real_pixels;
  // the metrics' range (see the top): per-prompt means
  double real_fd_base = 0, real_diversity = 0, real_pixel_diversity = 0, collapsed_fd_base = 0;
  Tensor base_images_a;                // the base model's own seed-A samples (for reports)
};

EvalReference make_reference(const FlowModel& base, FeatureNet& fb, const ImageSet& test, const EvalOptions& o);

// A reference computed once can be reused by later runs (tools/compare passes one file to every
// run). The key names everything the reference depends on: the options and a hash of the bytes
// of every given file (the base model's folder, F_B); a file whose key differs is recomputed.
std::string reference_key(const EvalOptions& o, const std::vector<std::string>& files);
void save_reference(const std::string& path, const EvalReference& ref, const std::string& key);
// True and ref filled when path exists and holds a reference with this key (the key of o).
bool load_reference(const std::string& path, const std::string& key, const EvalOptions& o, EvalReference* ref);

// Metrics of images [10·n, 1, 32, 32] sampled from per_class_ids(n) with seed A.
nlohmann::json evaluate_images(const Tensor& images, const RewardPair& rewards, const EvalReference& ref);

}  // namespace vgg::flow
