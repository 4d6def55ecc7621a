// vgg_train — aligns the shipped flow model to a reward: VGG-Flow (default), ReFL, DRaFT, Adjoint
// Matching or VGG-Flow-PMP, with the same sampler, budget and logging (docs/methods.md).
//
//   vgg_train                                   the default job (VGG-Flow, aesthetic reward)
//   vgg_train --method refl --reward classifier:bag --steps 100 --out runs/refl
//   vgg_train --out runs/vgg --resume           continue a run from its checkpoint
//
// Every setting is a flag and a key of a JSON --config file (flags win); the resolved settings
// are written to OUT/config.json. OUT also gets metrics.jsonl (one line per update, plus an
// "eval" line every --eval-every updates), samples/step_NNNNNN.png (one row per class prompt,
// fixed seeds), and checkpoint/ (LoRA, value net, optimizer state, state.json): a link to the newest
// ckpt-<step>/ folder, switched by one rename once the folder is complete (tools/durable.h; --resume
// falls back to the newest complete folder after a kill). Every update draws from Generator(seed, 5000 + step), so a resumed run repeats
// the uninterrupted one.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "autograd/engine.h"
#include "nn/io.h"
#include "nn/optim.h"
#include "tensor/caching_allocator.h"
#include "tensor/json.h"
#include "tensor/storage.h"
#include "tools/cli.h"
#include "vggflow/evaluate.h"
#include "vggflow/image.h"
#include "vggflow/methods/adjoint.h"
#include "vggflow/methods/baselines.h"
#include "vggflow/methods/vggflow.h"
#include "vggflow/clip_rewards.h"
#include "vggflow/sd3.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace vgg;
namespace m = vgg::flow::methods;

namespace {

// One setting: its JSON key, default and allowed range; the flag is "--" + key with '_' -> '-'.
struct Spec {
  const char* key;
  json def;
  double lo, hi;  // numbers only
  const char* help;
};

// The CPU default (2 cores, <= 10 minutes); --preset paper gives the paper's budget.
const std::vector<Spec>& specs() {
  static const std::vector<Spec> s = {
      {"method", "vggflow", 0, 0, "vggflow | refl | draft | am (Adjoint Matching) | pmp (VGG-Flow-PMP)"},
      {"reward", "aesthetic", 0, 0, "aesthetic | classifier[:CLASS] | brightness | contrast | symmetry"},
      {"steps", 40, 1, 1e6, "updates"},
      {"batch", 8, 1, 4096, "trajectories per update"},
      {"micro_batches", 1, 1, 4096, "split each update into this many micro-batches of batch/K trajectories (own draws), gradients accumulated: memory"},
      {"beta", 300.0, 1e-9, 1e12, "inverse temperature beta = 1/lambda of VGG-Flow, PMP and AM (AM's reward multiplier)"},
      {"alpha", 1e4, 0, 1e12, "VGG-Flow boundary-loss weight"},
      {"eta", "t2", 0, 0, "VGG-Flow eta_t: t2 | t | 1"},
      {"value_net", "small", 0, 0, "VGG-Flow nu_phi: small (paper) | lora (official code)"},
      {"value_prompt_free", false, 0, 0, "nu_phi sees the empty prompt (official code) instead of the prompt"},
      {"fd", "central", 0, 0, "finite differences: central (paper) | onesided (official code)"},
      {"derivatives", "fd", 0, 0, "VGG-Flow consistency derivatives: fd (finite differences, eqs. 43-45) | exact (forward-mode JVP + Hessian-vector products)"},
      {"fd_eps", 1e-3, 1e-9, 1.0, "finite-difference step"},
      {"fd_time_scale", 1.0, 0, 1e6, "factor on the time derivative (official code: 0.001)"},
      {"base_direction_grad", false, 0, 0, "phi also learns through eq. 45's direction (official code)"},
      {"clip_quantile", 0.8, 0, 1, "reward-gradient clip at this batch quantile"},
      {"clip_fixed", 0.0, 0, 1e12, "> 0: fixed reward-gradient clip norm instead (official code's effective 1)"},
      {"bins", 2, 1, 1000, "VGG-Flow and PMP transitions: one per bin plus the last step (paper: 5)"},
      {"am_times", 4, 1, 1000, "Adjoint Matching: loss times per trajectory (half in the first 60% of the steps)"},
      {"lr", 5e-4, 0, 1, "learning rate of theta (paper: 5e-4 VGG-Flow, 1e-4 baselines)"},
      {"lr_value", 5e-4, 0, 1, "learning rate of phi"},
      {"weight_decay", 1e-2, 0, 1, "AdamW weight decay"},
      {"max_grad_norm", 1.0, 0, 1e6, "gradient clipping, per group (0 = off)"},
      {"rank", 8, 1, 512, "LoRA rank (alpha = rank) on the attention projections"},
      {"guidance", 4.0, 0, 100, "CFG scale of every velocity"},
      {"sample_steps", 20, 2, 1000, "Euler steps"},
      {"refl_relu", true, 0, 0, "ReFL/DRaFT maximise ReLU(r) (paper) instead of r"},
      {"draft_k", 1, 1, 1000, "DRaFT-K: steps with a graph"},
      {"draft_lv", 0, 0, 64, "> 0: DRaFT-LV with this many re-noised copies instead of DRaFT-K"},
      {"seed", 0, 0, 9e15, "seed of every random draw"},
      {"eval_every", 20, -1, 1e6, "diversity/FD evaluation interval (0 = start and end only, -1 = never)"},
      {"eval_per_prompt", 16, 16, 1e5, "samples per prompt in the evaluation"},
      {"sample_every", 20, -1, 1e6, "sample-grid interval (0 = start and end only, -1 = never)"},
      {"ckpt_every", 20, 1, 1e6, "checkpoint interval (always at the end)"},
      {"base", "", 0, 0, "base model folder (default: models/base)"},
      {"models", "", 0, 0, "networks and probes (default: models/)"},
      {"eval_cache", "", 0, 0, "file that keeps the evaluation reference for later runs (recomputed when stale)"},
      {"inject_nan_grad", 0, 0, 1e6, "test hook: poison the reward gradient of this update with NaN (0 = off)"},
      {"device", "cpu", 0, 0, "cpu | cuda | cuda:N | fake: where the networks (policy, value net, reward and feature nets) and the training trajectories live; the host sees scalars. fake: host memory under a device identity, for tests"},
      {"pipeline", "fashion-mnist", 0, 0, "fashion-mnist (the embedded default) | sd3 (a diffusers SD3/SD3.5 folder: --model, --prompts, --reward-weights)"},
      {"model", "", 0, 0, "sd3: the diffusers pipeline folder (model_index.json, transformer/, vae/, scheduler/)"},
      {"prompts", "", 0, 0, "sd3: the prompt embeddings file (tools/embed_prompts.py)"},
      {"reward_weights", "", 0, 0, "sd3: the reward's weights file (tools/convert_reward.py)"},
      {"decoder", "vae", 0, 0, "sd3: vae (the folder's AutoencoderKL) or an AutoencoderTiny folder (TAESD3) to decode rewards with"},
      {"resolution", 1024, 8, 8192, "sd3: image size (latents resolution/8)"},
      {"compute_dtype", "f32", 0, 0, "f32 | bf16: the dtype the MMDiTs (policy, value net) compute in; parameters and LoRA adapters stay f32 masters (mixed precision)"},
      {"checkpointing", false, 0, 0, "activation checkpointing: the MMDiT per block (policy and value nets) and, sd3, the decoder and the reward's CLIP tower"},
  };
  return s;
}

std::string flag_of(const std::string& key) {
  std::string f = "--" + key;
  for (char& c : f)
    if (c == '_') c = '-';
  return f;
}

// a JSON config file's settings over j: known keys only, each of its default's type
void apply_config_file(json& j, const std::string& path, const std::string& what) {
  std::ifstream in(path);
  if (!in) throw cli::UsageError("cannot open " + what + path);
  json c;
  try {
    c = read_json_file(path);  // strict: names the file; no duplicate keys, no 1e309
  } catch (const Error& e) {
    throw cli::UsageError(e.what());
  }
  if (!c.is_object()) throw cli::UsageError(path + ": the config must be a JSON object");
  for (auto& [k, v] : c.items()) {
    if (!j.contains(k)) throw cli::UsageError(path + ": unknown setting '" + k + "'");
    const json& d = j[k];
    const bool ok = (d.is_string() && v.is_string()) || (d.is_boolean() && v.is_boolean()) ||
                    (d.is_number_integer() && v.is_number_integer()) || (d.is_number_float() && v.is_number());
    const std::string kind = d.is_number_integer() ? "an integer" : d.is_number() ? "a number" : std::string("a ") + d.type_name();
    if (!ok) throw cli::UsageError(path + ": '" + k + "' must be " + kind + ", got " + v.dump());
    j[k] = v;
  }
}

// defaults <- config file (--config, or a resumed run's config.json) <- flags, each value checked
// against its spec: a resumed run's saved settings pass the same checks as a --config file
json resolve(const cli::Flags& f, const std::string& saved_config = "") {
  json j;
  for (const Spec& s : specs()) j[s.key] = s.def;
  if (!saved_config.empty())
    apply_config_file(j, saved_config, "the run's config ");
  else if (f.has("--config"))
    apply_config_file(j, f.str("--config", ""), "--config ");
  for (const Spec& s : specs()) {
    const std::string fl = flag_of(s.key);
    json& v = j[s.key];
    if (s.def.is_boolean()) {
      if (f.has(fl)) {
        const std::string b = f.str(fl, "");
        if (b != "true" && b != "false") throw cli::UsageError(fl + " must be true or false, got '" + b + "'");
        v = b == "true";
      }
    } else if (s.def.is_string()) {
      if (f.has(fl)) v = f.str(fl, "");
    } else if (s.def.is_number_integer()) {
      if (f.has(fl)) v = f.integer(fl, 0, static_cast<int64_t>(s.lo), static_cast<int64_t>(s.hi));
      const auto x = v.get<int64_t>();
      if (x < s.lo || x > s.hi) throw cli::UsageError(std::string(s.key) + " must be in [" + std::to_string(static_cast<int64_t>(s.lo)) + ", " + std::to_string(static_cast<int64_t>(s.hi)) + "], got " + std::to_string(x));
    } else {
      if (f.has(fl)) v = f.real(fl, 0, s.lo, s.hi);
      const double x = v.get<double>();
      if (!(x >= s.lo && x <= s.hi)) throw cli::UsageError(std::string(s.key) + " is out of range: " + v.dump());
    }
  }
  const std::string method = j["method"];
  if (method != "vggflow" && method != "refl" && method != "draft" && method != "am" && method != "pmp")
    throw cli::UsageError("--method must be vggflow, refl, draft, am or pmp, got '" + method + "'");
  if (j["fd"] != "central" && j["fd"] != "onesided") throw cli::UsageError("--fd must be central or onesided");
  if (j["derivatives"] != "fd" && j["derivatives"] != "exact") throw cli::UsageError("--derivatives must be fd or exact");
  if (j["value_net"] != "small" && j["value_net"] != "lora") throw cli::UsageError("--value-net must be small or lora");
  if (j["compute_dtype"] != "f32" && j["compute_dtype"] != "bf16")
    throw cli::UsageError("--compute-dtype must be f32 or bf16, got '" + j["compute_dtype"].get<std::string>() + "'");
  if (j["pipeline"] != "fashion-mnist" && j["pipeline"] != "sd3")
    throw cli::UsageError("--pipeline must be fashion-mnist or sd3, got '" + j["pipeline"].get<std::string>() + "'");
  if (j["pipeline"] == "sd3") {
    for (const char* k : {"model", "prompts", "reward_weights"})
      if (j[k].get<std::string>().empty()) throw cli::UsageError("--pipeline sd3 needs " + flag_of(k));
    const std::string r = j["reward"];
    if (r == "hps" || r == "pickscore")
      throw cli::UsageError("--reward " + r + " needs the text features of each sample's prompt, which vgg_train does not pass yet (use aesthetic; vgg_score scores " + r + ")");
    if (r != "aesthetic") throw cli::UsageError("--pipeline sd3 takes --reward aesthetic, got '" + r + "'");
    if (j["resolution"].get<int64_t>() % 8 != 0) throw cli::UsageError("--resolution must be a multiple of 8");
  } else {
    for (const char* k : {"model", "prompts", "reward_weights"})
      if (!j[k].get<std::string>().empty()) throw cli::UsageError(flag_of(k) + " belongs to --pipeline sd3");
  }
  try {
    m::parse_eta(j["eta"]);
  } catch (const std::exception& e) {
    throw cli::UsageError(std::string("--eta: ") + e.what());
  }
  try {
    Device::parse(j["device"].get<std::string>());
  } catch (const std::exception&) {
    throw cli::UsageError("--device must be cpu, cuda, cuda:N or fake, got '" + j["device"].get<std::string>() + "'");
  }
  if (j["batch"].get<int64_t>() % j["micro_batches"].get<int64_t>() != 0)
    throw cli::UsageError("--micro-batches must divide --batch");
  if (j["bins"].get<int64_t>() > j["sample_steps"].get<int64_t>())
    throw cli::UsageError("--bins must not exceed --sample-steps");
  if (j["draft_k"].get<int64_t>() > j["sample_steps"].get<int64_t>())
    throw cli::UsageError("--draft-k must not exceed --sample-steps");
  return j;
}


double mean_reward(const flow::Reward& r, const Tensor& x) {
  NoGradGuard ng;
  return ops::mean(r(x)).item();
}

// The training reward with a test hook: while armed, its gradient is NaN (the value is not).
class PoisonableReward : public flow::Reward {
 public:
  explicit PoisonableReward(std::shared_ptr<flow::Reward> r) : r_(std::move(r)) {}
  std::string name() const override { return r_->name(); }
  Tensor operator()(const Tensor& x) const override { return (*r_)(armed ? m::nan_gradient(x) : x); }
  bool armed = false;

 private:
  std::shared_ptr<flow::Reward> r_;
};

// Empty when every gradient of the groups is finite, else which parameter is not.
std::string nonfinite_gradient(const std::vector<nn::ParamGroup>& groups) {
  NoGradGuard ng;
  for (const auto& g : groups)
    for (size_t i = 0; i < g.params.size(); ++i) {
      Tensor gr = g.params[i].grad();
      if (gr.defined() && !std::isfinite(ops::sum(ops::abs(ops::to(gr, DType::F64))).item()))
        return "non-finite gradient in " + g.name + " parameter " +
               (i < g.param_names.size() ? g.param_names[i] : std::to_string(i));
    }
  return "";
}

int run(int argc, char** argv) {
  const auto t_start = std::chrono::steady_clock::now();
  auto since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  std::set<std::string> value_flags = {"--config", "--out"};
  for (const Spec& s : specs()) value_flags.insert(flag_of(s.key));
  cli::Flags f(argc, argv, value_flags, {"--resume", "--help"});
  if (f.has("--help")) {
    std::printf("usage: vgg_train [--config FILE.json] [--out DIR (runs/train)] [--resume] [--SETTING VALUE ...]\n"
                "settings (JSON key = flag without '--', '-' as '_'; flags override the config file):\n");
    for (const Spec& s : specs())
      std::printf("  %-24s %-12s %s\n", flag_of(s.key).c_str(), s.def.dump().c_str(), s.help);
    return 0;
  }
  if (!f.positional().empty()) throw cli::UsageError("unexpected argument '" + f.positional()[0] + "' (see --help)");
  const fs::path out = f.str("--out", "runs/train");
  if (out.empty()) throw cli::UsageError("--out must name a folder (an empty name would write into the current one)");
  const bool resume = f.has("--resume");
  bool restart = false;  // --resume of a run that never reached its first checkpoint: it starts over
  json cfg;
  std::optional<cli::RunLock> lock;  // one process per run folder, held until exit
  if (resume) {
    for (const Spec& s : specs())
      if (f.has(flag_of(s.key)) && std::string(s.key) != "steps")
        throw cli::UsageError(flag_of(s.key) + " cannot change on --resume (only --steps can)");
    if (f.has("--config")) throw cli::UsageError("--config cannot be given with --resume (the run has its own)");
    const fs::path ck = cli::latest_checkpoint(out);
    if (ck.empty() && !fs::exists(out / "config.json")) throw std::runtime_error("--resume: no run in " + out.string());
    lock.emplace(out);
    cfg = resolve(f, (out / "config.json").string());  // checked as a --config file is; --steps may change
    if (ck.empty()) {  // killed or failed before its first checkpoint: nothing to continue, start over
      restart = true;
      std::fprintf(stderr, "vgg_train: %s has no checkpoint yet: starting over with its saved settings\n",
                   out.string().c_str());
    }
  }
  if (resume && !restart) {
    const fs::path ck = cli::latest_checkpoint(out);
    // the checkpoint's step: an integer within the run
    const json st = read_json_file((ck / "state.json").string());  // errors name the file
    if (!st.is_object() || !st.contains("step") || !st["step"].is_number_integer() || st["step"].get<int64_t>() < 0)
      throw std::runtime_error((ck / "state.json").string() + ": 'step' must be a non-negative integer");
    const int64_t at = st["step"].get<int64_t>(), want = cfg["steps"].get<int64_t>();
    if (at > want)
      throw cli::UsageError("--steps " + std::to_string(want) + " is before the checkpoint's step " + std::to_string(at) +
                            " (a run cannot be shortened by resuming it)");
  } else if (!resume) {
    cfg = resolve(f);
    lock.emplace(out);
    if (cli::holds_a_run(out))
      throw std::runtime_error(out.string() + " already holds a run (use --resume, or another --out)");
  }
  const std::string method = cfg["method"], reward_name = cfg["reward"];
  const int64_t steps = cfg["steps"], batch = cfg["batch"], nsteps = cfg["sample_steps"], micro = cfg["micro_batches"];
  const auto seed = cfg["seed"].get<uint64_t>();
  const std::string models = cfg["models"].get<std::string>().empty() ? flow::default_models_dir() : cfg["models"].get<std::string>();
  const std::string base_dir = cfg["base"].get<std::string>().empty() ? models + "/base" : cfg["base"].get<std::string>();

  const Device device = Device::parse(cfg.value("device", "cpu"));
  if (device.is_cuda() && device.index >= cuda_device_count())
    throw std::runtime_error("--device " + device.str() + ": " +
                             (cuda_device_count() > 0 ? std::to_string(cuda_device_count()) + " CUDA devices"
                                                      : cuda_unavailable_reason()));
  const bool sd3 = cfg["pipeline"] == "sd3";
  flow::RewardPair rw;
  std::shared_ptr<flow::DecodedReward> decoded;  // sd3: the reward of latents (decoder + image reward)
  flow::FlowModel base_model;
  if (sd3) {
    const nn::DiffusersFolder folder = nn::read_diffusers_folder(cfg["model"]);
    base_model = flow::load_sd3_flow_model(folder, cfg["prompts"], cfg["resolution"]);
    nn::LayerOptions dev_o;
    dev_o.device = device;
    const bool ck = cfg["checkpointing"];
    flow::Decoder decode;
    const std::string dec = cfg["decoder"];
    if (dec == "vae") {
      auto vae = nn::load_diffusers_vae_decoder(folder, dev_o);
      vae->requires_grad_(false);
      vae->set_checkpointing(ck);
      decode = [vae](const Tensor& z) { return vae->decode(z); };
    } else {
      auto tiny = nn::load_tiny_vae_decoder(dec, dev_o);
      tiny->requires_grad_(false);
      decode = [tiny](const Tensor& z) { return tiny->decode(z); };
    }
    auto clip = std::make_shared<flow::ClipReward>(cfg["reward_weights"], flow::parse_clip_reward(reward_name), DType::F32, device);
    clip->set_checkpointing(ck);
    decoded = std::make_shared<flow::DecodedReward>(decode, clip, device, DType::F32);
    rw.reward = decoded;
  } else {
    rw = flow::make_rewards(reward_name, models);
    base_model = flow::load_flow_model(base_dir);
  }
  if (rw.fa) rw.fa->to(device);
  if (rw.fb) rw.fb->to(device);
  auto poisonable = std::make_shared<PoisonableReward>(rw.reward);
  rw.reward = poisonable;
  const int64_t inject_nan = cfg["inject_nan_grad"];
  m::Policy pol = m::make_policy(base_model, cfg["rank"], cfg["guidance"], seed + 11);
  pol.model.net->to(device);  // adapters included: they stay trainable leaves
  pol.model.net->checkpointing = cfg["checkpointing"];
  const std::optional<DType> compute =
      cfg["compute_dtype"] == "bf16" ? std::optional<DType>(DType::BF16) : std::nullopt;
  pol.model.net->set_compute_dtype(compute);
  if (!device.is_cpu()) std::fprintf(stderr, "vgg_train: networks on %s\n", device.str().c_str());
  const double shift = pol.model.sampling.shift;
  std::unique_ptr<m::ValueNet> value;
  m::VGGFlowOptions vo;
  if (method == "vggflow") {
    value = std::make_unique<m::ValueNet>(cfg["value_net"], pol.model, cfg["beta"], cfg["value_prompt_free"], seed + 12,
                                          device);
    value->net().checkpointing = cfg["checkpointing"];
    value->net().set_compute_dtype(compute);
    vo.beta = cfg["beta"], vo.alpha = cfg["alpha"], vo.eta = m::parse_eta(cfg["eta"]);
    vo.fd_eps = cfg["fd_eps"], vo.central = cfg["fd"] == "central", vo.fd_time_scale = cfg["fd_time_scale"];
    vo.base_direction_grad = cfg["base_direction_grad"], vo.clip_quantile = cfg["clip_quantile"];
    vo.clip_fixed = cfg["clip_fixed"], vo.bins = cfg["bins"];
    vo.derivatives = m::parse_derivatives(cfg.value("derivatives", "fd"));  // runs from before the setting: fd
  }
  m::AdjointOptions ao;
  ao.beta = cfg["beta"], ao.clip_quantile = cfg["clip_quantile"], ao.clip_fixed = cfg["clip_fixed"];
  ao.bins = cfg["bins"], ao.times = cfg.value("am_times", 4);
  std::vector<nn::ParamGroup> groups(1);
  groups[0].name = "theta";
  groups[0].params = pol.lora_params();
  groups[0].lr = cfg["lr"], groups[0].weight_decay = cfg["weight_decay"], groups[0].max_grad_norm = cfg["max_grad_norm"];
  if (value) {
    nn::ParamGroup g;
    g.name = "phi";
    g.params = value->parameters();
    g.param_names = value->parameter_names();
    g.lr = cfg["lr_value"], g.weight_decay = cfg["weight_decay"], g.max_grad_norm = cfg["max_grad_norm"];
    groups.push_back(g);
  }
  nn::AdamW opt(groups);

  int64_t step = 0;
  fs::create_directories(out / "samples");
  // config.json first: a run killed before its metrics file exists is resumed (started over) from it
  cli::write_text_atomic(out / "config.json", cfg.dump(2) + "\n");
  if (resume && !restart) {
    const fs::path ck = cli::latest_checkpoint(out);  // the newest complete one (tools/durable.h)
    step = read_json_file((ck / "state.json").string())["step"].get<int64_t>();  // checked above
    nn::load_lora((ck / "lora.safetensors").string(), *pol.model.net);
    if (value) value->load_state(nn::load_tensors((ck / "value.safetensors").string()));
    opt.load_state_dict(nn::load_tensors((ck / "optimizer.safetensors").string()));
    // the lines of updates after the checkpoint are written again by the resumed run (the same
    // numbers): keep only those up to the checkpoint, so no update is logged twice
    cli::write_durable(out / "metrics.jsonl", cli::lines_up_to_step((out / "metrics.jsonl").string(), step));
  } else {
    cli::write_durable(out / "metrics.jsonl", "");
  }
  std::ofstream metrics(out / "metrics.jsonl", std::ios::app);

  // the evaluation reference: base samples and real images, computed once
  flow::EvalOptions eo;
  eo.per_prompt = cfg["eval_per_prompt"];
  eo.sampling = {nsteps, shift, cfg["guidance"].get<double>()};
  eo.seed = 1234;
  std::fprintf(stderr, "vgg_train: %s, reward %s, %lld updates of %lld trajectories -> %s\n", method.c_str(),
               reward_name.c_str(), static_cast<long long>(steps), static_cast<long long>(batch), out.string().c_str());
  flow::EvalReference ref;
  const int64_t ev = cfg["eval_every"], se = cfg["sample_every"], ce = cfg["ckpt_every"];
  if (!sd3 && ev >= 0) {
    flow::ImageSet test = flow::load_fashion_mnist(false, "", 32);
    std::fprintf(stderr, "vgg_train: evaluation reference (%lld base samples per prompt, twice)...\n",
                 static_cast<long long>(eo.per_prompt));
    const std::string cache = cfg["eval_cache"];
    std::vector<std::string> key_files = {models + "/fb.safetensors"};
    for (const auto& e : fs::directory_iterator(base_dir))
      if (e.is_regular_file()) key_files.push_back(e.path().string());
    const std::string key = cache.empty() ? "" : flow::reference_key(eo, key_files);
    if (!cache.empty() && flow::load_reference(cache, key, eo, &ref)) {
      std::fprintf(stderr, "vgg_train: evaluation reference from %s\n", cache.c_str());
    } else {
      nn::set_lora_enabled(*pol.model.net, false);  // the reference samples come from the base
      ref = flow::make_reference(pol.model, *rw.fb, test, eo);
      nn::set_lora_enabled(*pol.model.net, true);
      if (!cache.empty()) flow::save_reference(cache, ref, key);
    }
  }
  // sd3: latents of prompt ids (fixed seed) in chunks of --batch, and the images they decode to
  const int64_t n_prompts = pol.model.prompts->num_prompts() - 1;
  auto sd3_latents = [&](const std::vector<int64_t>& ids, uint64_t s) {
    return flow::sample_latents(pol.model.velocity(), *pol.model.prompts, ids, eo.sampling, s, pol.model.latent_channels,
                                pol.model.latent_size, batch);
  };
  auto evaluate = [&](int64_t at) {
    const auto te = std::chrono::steady_clock::now();
    if (sd3) {  // the reward of eval_per_prompt samples of every prompt
      std::vector<int64_t> ids;
      for (int64_t p = 0; p < n_prompts; ++p) ids.insert(ids.end(), static_cast<size_t>(eo.per_prompt), p);
      Tensor lat = sd3_latents(ids, eo.seed);
      double sum = 0;
      for (int64_t i = 0; i < lat.size(0); i += batch) {
        NoGradGuard ng;
        const int64_t b = std::min(batch, lat.size(0) - i);
        sum += ops::sum((*decoded)(ops::narrow(lat, 0, i, b))).item();
      }
      json e{{"reward", sum / static_cast<double>(lat.size(0))}, {"samples", lat.size(0)}, {"seconds", since(te)}};
      cli::append_line(metrics, out / "metrics.jsonl", json{{"step", at}, {"eval", e}, {"elapsed_s", since(t_start)}}.dump());
      return e;
    }
    // at update 0 the adapters add exactly zero (B = 0), so the model's seed-A samples are the
    // base's, which the reference already holds
    Tensor imgs = at == 0 ? ref.base_images_a
                          : flow::sample_images(pol.model.velocity(), *pol.model.prompts,
                                                flow::per_class_ids(eo.per_prompt), eo.sampling, eo.seed);
    json e = flow::evaluate_images(imgs, rw, ref);
    e["seconds"] = since(te);
    cli::append_line(metrics, out / "metrics.jsonl", json{{"step", at}, {"eval", e}, {"elapsed_s", since(t_start)}}.dump());
    return e;
  };
  auto grid = [&](int64_t at) {
    char name[64];
    std::snprintf(name, sizeof name, "step_%06lld.png", static_cast<long long>(at));
    if (sd3) {  // one image of each of the first 8 prompts
      std::vector<int64_t> ids;
      for (int64_t p = 0; p < std::min<int64_t>(8, n_prompts); ++p) ids.push_back(p);
      flow::write_png((out / "samples" / name).string(), flow::make_grid(decoded->images(sd3_latents(ids, seed + 99)), 4));
      return;
    }
    Tensor img = flow::sample_images(pol.model.velocity(), *pol.model.prompts, flow::per_class_ids(6), eo.sampling, seed + 99);
    flow::write_png((out / "samples" / name).string(), flow::make_grid(img, 6));
  };
  // ckpt-<step>/ written in full, then `checkpoint` switched to it by one rename (tools/durable.h)
  auto checkpoint = [&](int64_t at) {
    cli::commit_checkpoint(out, at, [&](const fs::path& tmp) {
      nn::save_lora((tmp / "lora.safetensors").string(), *pol.model.net);
      if (value) nn::save_tensors((tmp / "value.safetensors").string(), value->state());
      nn::save_tensors((tmp / "optimizer.safetensors").string(), opt.state_dict());
      cli::write_text_atomic(tmp / "state.json", json{{"step", at}, {"rng", "Generator(seed, 5000 + step) per update"}}.dump(2) + "\n");
    });
  };
  if (step == 0 && se >= 0) grid(0);
  if (step == 0 && ev >= 0) {
    json e = evaluate(0);
    if (sd3)
      std::fprintf(stderr, "vgg_train: step 0: reward %.4f\n", e["reward"].get<double>());
    else
      std::fprintf(stderr, "vgg_train: step 0: reward %.4f gold %.4f diversity %.4f FD-to-base %.3f (floor %.3f)\n",
                   e["reward"].get<double>(), e["gold"].get<double>(), e["diversity"].get<double>(),
                   e["fd_base"].get<double>(), e["fd_base_floor"].get<double>());
  }
  const bool relu = cfg["refl_relu"];
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t first = step;
  int64_t skipped_in_a_row = 0;
  // One micro-batch's loss (its statistics into part) from its own draws.
  auto micro_loss = [&](Generator& gen, int64_t mb_batch, json& part) {
    Tensor loss;
    if (method == "vggflow") {
      m::Rollout r = m::sample_rollout(pol, mb_batch, nsteps, shift, gen);
      m::VGGFlowStats st;
      loss = m::vggflow_loss(pol, *value, *rw.reward, r, vo, gen, &st);
      Tensor x1 = sd3 ? r.latents.back() : ops::clamp(r.latents.back(), -1.0, 1.0);
      part["reward"] = mean_reward(*rw.reward, x1);
      if (rw.gold) part["gold"] = mean_reward(*rw.gold, x1);
      part["loss_matching"] = st.matching, part["loss_consistency"] = st.consistency, part["loss_boundary"] = st.boundary;
      part["reward_grad_norm_mean"] = st.grad_norm_mean, part["reward_grad_norm_max"] = st.grad_norm_max;
      part["reward_grad_norm_p80"] = st.grad_norm_p80, part["reward_grad_clip"] = st.clip_threshold;
      part["reward_x1hat"] = st.reward_x1hat;
    } else if (method == "am" || method == "pmp") {
      m::AdjointStats st;
      if (method == "am") {
        loss = m::am_loss(pol, *rw.reward, mb_batch, nsteps, shift, ao, gen, &st);
        part["reward"] = st.reward;  // of the memoryless-SDE samples the adjoint starts from
      } else {
        m::Rollout r = m::sample_rollout(pol, mb_batch, nsteps, shift, gen);
        loss = m::pmp_loss(pol, *rw.reward, r, ao, gen, &st);
        Tensor x1 = sd3 ? r.latents.back() : ops::clamp(r.latents.back(), -1.0, 1.0);
        part["reward"] = mean_reward(*rw.reward, x1);
        if (rw.gold) part["gold"] = mean_reward(*rw.gold, x1);
      }
      part["reward_grad_norm_mean"] = st.grad_norm_mean, part["reward_grad_clip"] = st.clip_threshold;
      part["adjoint_norm"] = st.adjoint_norm;
    } else {
      m::BaselineStats st;
      const int64_t lv = cfg["draft_lv"];
      loss = method == "refl" ? m::refl_loss(pol, *rw.reward, mb_batch, nsteps, shift, relu, gen, &st)
             : lv > 0         ? m::draft_lv_loss(pol, *rw.reward, mb_batch, nsteps, shift, lv, relu, gen, &st)
                              : m::draft_loss(pol, *rw.reward, mb_batch, nsteps, shift, cfg["draft_k"], relu, gen, &st);
      part["reward"] = st.reward, part["graph_step"] = st.step;
    }
    return loss;
  };
  while (step < steps) {
    poisonable->armed = inject_nan > 0 && step + 1 == inject_nan;
    const auto tu = std::chrono::steady_clock::now();
    json line{{"step", step + 1}};
    // micro-batches: each draws its own trajectories (micro-batch 0 from the unsplit update's
    // stream, so one micro-batch is the plain update), its gradient scaled by 1/K and accumulated;
    // one optimizer step per update. Statistics are their means (counts: the first's).
    // A non-finite loss or gradient skips the whole update (no group moves, nothing NaN is
    // stored); ten in a row end the run.
    opt.zero_grad();
    std::string bad;
    for (int64_t mb = 0; mb < micro && bad.empty(); ++mb) {
      Generator gen(seed, 5000 + static_cast<uint64_t>(step) + (static_cast<uint64_t>(mb) << 32));
      json part;
      Tensor loss = micro_loss(gen, batch / micro, part);
      part["loss"] = loss.item();
      if (!std::isfinite(loss.item())) bad = "the loss is not finite";
      else backward(micro == 1 ? loss : ops::mul(loss, 1.0 / static_cast<double>(micro)));
      for (auto& [k, v] : part.items()) {
        if (micro == 1 || !v.is_number_float()) {
          if (mb == 0) line[k] = v;
        } else {
          line[k] = (mb == 0 ? 0.0 : line[k].get<double>()) + v.get<double>() / static_cast<double>(micro);
        }
      }
    }
    poisonable->armed = false;
    if (bad.empty()) bad = nonfinite_gradient(groups);
    if (bad.empty()) {
      nn::StepStats ss = opt.step();
      for (auto& g : ss.groups) line["grad_norm_" + g.name] = g.grad_norm;
      skipped_in_a_row = 0;
    } else {
      opt.zero_grad();
      line["skipped"] = bad;
      std::fprintf(stderr, "\nvgg_train: warning: update %lld skipped: %s\n", static_cast<long long>(step + 1),
                   bad.c_str());
      if (++skipped_in_a_row >= 10)
        throw std::runtime_error("10 updates in a row skipped for non-finite values (last: " + bad + ")");
    }
    ++step;
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double per = el / static_cast<double>(step - first);
    line["sec_per_update"] = per;  // since the first update, evaluations included (the ETA's rate)
    line["update_s"] = since(tu), line["elapsed_s"] = since(t_start);
    cli::append_line(metrics, out / "metrics.jsonl", line.dump());
    std::fprintf(stderr, "\r[%lld/%lld] reward %.4f  loss %.4g  %.1f s/update  ETA %s   ", static_cast<long long>(step),
                 static_cast<long long>(steps), line["reward"].get<double>(), line["loss"].get<double>(), per,
                 cli::format_hms(per * static_cast<double>(steps - step)).c_str());
    if (ev >= 0 && ((ev > 0 && step % ev == 0) || step == steps)) {
      json e = evaluate(step);
      if (sd3)
        std::fprintf(stderr, "\n[%lld] eval: reward %.4f\n", static_cast<long long>(step), e["reward"].get<double>());
      else
        std::fprintf(stderr, "\n[%lld] eval: reward %.4f gold %.4f diversity %.4f FD-to-base %.3f (floor %.3f) FD-real %.3f\n",
                     static_cast<long long>(step), e["reward"].get<double>(), e["gold"].get<double>(),
                     e["diversity"].get<double>(), e["fd_base"].get<double>(), e["fd_base_floor"].get<double>(),
                     e["fd_real"].get<double>());
    }
    if (se >= 0 && ((se > 0 && step % se == 0) || step == steps)) grid(step);
    if (step % ce == 0 || step == steps) checkpoint(step);
  }
  std::fprintf(stderr, "\nvgg_train: done in %s; LoRA in %s\n", cli::format_hms(since(t_start)).c_str(),
               (out / "checkpoint" / "lora.safetensors").string().c_str());
  std::string peak = "host " + format_bytes(host_memory_stats().peak_allocated_bytes);
  if (device.is_cuda()) {
    const AllocatorStats st = memory_stats(device);
    peak += ", " + device.str() + " " + format_bytes(st.peak_allocated_bytes) + " in tensors (" +
            format_bytes(st.peak_reserved_bytes) + " reserved)";
  }
  std::fprintf(stderr, "vgg_train: peak memory: %s\n", peak.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return cli::run_main("vgg_train", [&] { return run(argc, argv); });
}
