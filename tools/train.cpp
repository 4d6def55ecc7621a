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
//
// The run folder, settings, loop and schedule are the trainer's (tools/trainer.h); the method is one
// methods::Method (vggflow/methods/method.h) and the update one methods::Updater.
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "autograd/engine.h"
#include "dist/comm.h"
#include "kernels/matmul.h"
#include "nn/io.h"
#include "nn/optim.h"
#include "tensor/caching_allocator.h"
#include "tensor/json.h"
#include "tensor/storage.h"
#include "tools/trainer.h"
#include "vggflow/clip_rewards.h"
#include "vggflow/evaluate.h"
#include "vggflow/image.h"
#include "vggflow/methods/method.h"
#include "vggflow/sd3.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace vgg;
namespace m = vgg::flow::methods;

namespace {

// The CPU default (2 cores, <= 10 minutes); --preset paper gives the paper's budget.
const std::vector<cli::Setting>& settings() {
  static const std::vector<cli::Setting> s = {
      {"preset", "none", 0, 0, "none | paper: the paper's budget and settings (400 updates of 32 trajectories, 5 bins + the last step, CFG 5, 64 evaluation samples per prompt, checkpoints every 20 updates) under the config file and the flags", {"none", "paper"}},
      {"method", "vggflow", 0, 0, "vggflow | refl | draft | am (Adjoint Matching) | pmp (VGG-Flow-PMP)", m::method_names()},
      {"reward", "aesthetic", 0, 0, "aesthetic | classifier[:CLASS] | brightness | contrast | symmetry"},
      {"steps", 40, 1, 1e6, "updates"},
      {"batch", 8, 1, 4096, "trajectories per update"},
      {"micro_batches", 1, 1, 4096, "split each update into this many micro-batches of batch/K trajectories (own draws), gradients accumulated: memory"},
      {"beta", 300.0, 1e-9, 1e12, "inverse temperature beta = 1/lambda of VGG-Flow, PMP and AM (AM's reward multiplier)"},
      {"am_beta", 0.0, 0, 1e12, "> 0: AM's own reward multiplier instead of --beta"},
      {"loss_weighting", "paper", 0, 0, "VGG-Flow: paper (eq. 15: mean over transitions of matching + consistency, plus alpha * boundary) | code (the official code: consistency residual / beta, boundary on beta * nu, every term / transitions)", {"paper", "code"}},
      {"reward_clamp", true, 0, 0, "the training reward sees clamp(x, -1, 1), the image evaluation scores (as the official code's decoder clamps); false: raw x (sd3: the decoder always clamps)"},
      {"alpha", 1e4, 0, 1e12, "VGG-Flow boundary-loss weight"},
      {"eta", "t2", 0, 0, "VGG-Flow eta_t: t2 | t | 1", {"t2", "t", "1"}},
      {"value_net", "small", 0, 0, "VGG-Flow nu_phi: small (paper) | lora (official code)", {"small", "lora"}},
      {"value_prompt_free", false, 0, 0, "nu_phi sees the empty prompt (official code) instead of the prompt"},
      {"fd", "central", 0, 0, "finite differences: central (paper) | onesided (official code)", {"central", "onesided"}},
      {"derivatives", "fd", 0, 0, "VGG-Flow consistency derivatives: fd (finite differences, eqs. 43-45) | exact (forward-mode JVP + Hessian-vector products)", {"fd", "exact"}},
      {"fd_eps", 1e-3, 1e-9, 1.0, "finite-difference step"},
      {"fd_time_scale", 1.0, 0, 1e6, "factor on the time derivative (official code: 0.001)"},
      {"base_direction_grad", false, 0, 0, "phi also learns through eq. 45's direction (official code)"},
      {"clip_quantile", 0.8, 0, 1, "reward-gradient clip at this batch quantile"},
      {"clip_fixed", 0.0, 0, 1e12, "> 0: fixed reward-gradient clip norm instead (official code's effective 1)"},
      {"bins", 2, 1, 1000, "VGG-Flow and PMP transitions: one per bin plus the last step (paper: 5)"},
      {"am_times", 4, 1, 1000, "Adjoint Matching: loss times per trajectory (half in the first 60% of the steps)"},
      {"lr", -1.0, -1, 1, "learning rate of theta; -1: the method's rate in the paper (5e-4 VGG-Flow; 1e-4 ReFL, DRaFT, AM and PMP; PMP 5e-5 with hps or pickscore)"},
      {"lr_value", -1.0, -1, 1, "VGG-Flow: learning rate of phi; -1: --lr (one rate, as the official code); 0: nu_phi frozen at zero (the ablation without a learned value gradient)"},
      {"weight_decay", 1e-2, 0, 1, "AdamW weight decay"},
      {"max_grad_norm", 1.0, 0, 1e6, "gradient clipping, per group (0 = off)"},
      {"rank", 8, 1, 512, "LoRA rank (alpha = rank) on the attention projections"},
      {"guidance", 4.0, 0, 100, "CFG scale of every velocity"},
      {"sample_steps", 20, 2, 1000, "Euler steps"},
      {"refl_relu", true, 0, 0, "ReFL/DRaFT maximise ReLU(r) (paper) instead of r"},
      {"draft_k", 1, 1, 1000, "DRaFT-K: steps with a graph"},
      {"draft_k_max", 0, 0, 1000, "> 0: DRaFT-K with K drawn uniformly in [1, draft_k_max] every micro-batch (a random truncation time, as the VGG-Flow paper's DRaFT baseline)"},
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
      {"pipeline", "fashion-mnist", 0, 0, "fashion-mnist (the embedded default) | sd3 (a diffusers SD3/SD3.5 folder: --model, --prompts, --reward-weights)", {"fashion-mnist", "sd3"}},
      {"model", "", 0, 0, "sd3: the diffusers pipeline folder (model_index.json, transformer/, vae/, scheduler/)"},
      {"prompts", "", 0, 0, "sd3: the prompt embeddings file (tools/embed_prompts.py)"},
      {"reward_weights", "", 0, 0, "sd3: the reward's weights file (tools/convert_reward.py)"},
      {"text_features", "", 0, 0, "sd3, --reward hps or pickscore: the prompts' text features (tools/convert_reward.py --prompts), one row per prompt of --prompts, in its order"},
      {"decoder", "vae", 0, 0, "sd3: vae (the folder's AutoencoderKL) or an AutoencoderTiny folder (TAESD3) to decode rewards with"},
      {"resolution", 1024, 8, 8192, "sd3: image size (latents resolution/8)"},
      {"compute_dtype", "f32", 0, 0, "f32 | bf16: the dtype the MMDiTs (policy, value net) compute in; parameters and LoRA adapters stay f32 masters (mixed precision)", {"f32", "bf16"}},
      {"reduce", "auto", 0, 0, "data parallel (mpirun -np N): deterministic (every micro-batch's gradient gathered and summed in micro-batch order: the same bits for every N dividing --micro-batches) | fast (one all-reduce per group: NCCL on GPUs) | auto (fast on CUDA, deterministic elsewhere)", {"auto", "deterministic", "fast"}},
      {"zero", 0, 0, 1, "data parallel: 0 (every rank keeps the whole AdamW state) | 1 (ZeRO-1: the moments sharded across the ranks of mpirun -np N, the same numbers)"},
      {"checkpointing", false, 0, 0, "activation checkpointing: the MMDiT per block (policy and value nets) and, sd3, the decoder and the reward's CLIP tower"},
  };
  return s;
}

// The learning rate of θ the paper uses for each method (its App. C.2 and the baselines' sections).
double paper_lr(const std::string& method, const std::string& reward) {
  if (method == "vggflow") return 5e-4;
  if (method == "pmp" && (reward == "hps" || reward == "pickscore")) return 5e-5;
  return 1e-4;  // ReFL, DRaFT, AM, PMP on aesthetic
}

// --preset paper: the paper's budget and settings (Liu et al. §5.1, App. C.2); the config file and
// the flags override each. β stays this pipeline's (the paper's β is for SD3 latents; docs/methods.md).
const std::map<std::string, json>& presets() {
  static const std::map<std::string, json> p = {
      {"paper", json{{"steps", 400}, {"batch", 32}, {"bins", 5}, {"sample_steps", 20}, {"guidance", 5.0},
                     {"eta", "t2"}, {"alpha", 1e4}, {"clip_quantile", 0.8}, {"max_grad_norm", 1.0},
                     {"weight_decay", 1e-2}, {"rank", 8}, {"eval_per_prompt", 64}, {"eval_every", 20},
                     {"ckpt_every", 20}, {"sample_every", 100}}},
  };
  return p;
}

// The checks across settings (the trainer checked each one's type, range and choices).
void validate(json& j) {
  using cli::flag_of;
  if (j["pipeline"] == "sd3") {
    for (const char* k : {"model", "prompts", "reward_weights"})
      if (j[k].get<std::string>().empty()) throw cli::UsageError("--pipeline sd3 needs " + flag_of(k));
    const std::string r = j["reward"];
    if (r != "aesthetic" && r != "hps" && r != "pickscore")
      throw cli::UsageError("--pipeline sd3 takes --reward aesthetic, hps or pickscore, got '" + r + "'");
    const bool text = !j["text_features"].get<std::string>().empty();
    if (r != "aesthetic" && !text)
      throw cli::UsageError("--reward " + r + " needs --text-features (the prompts' text features, tools/convert_reward.py --prompts)");
    if (r == "aesthetic" && text) throw cli::UsageError("--text-features belongs to --reward hps or pickscore");
    if (j["resolution"].get<int64_t>() % 8 != 0) throw cli::UsageError("--resolution must be a multiple of 8");
  } else {
    for (const char* k : {"model", "prompts", "reward_weights", "text_features"})
      if (!j[k].get<std::string>().empty()) throw cli::UsageError(flag_of(k) + " belongs to --pipeline sd3");
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
  if (j["draft_k_max"].get<int64_t>() > j["sample_steps"].get<int64_t>())
    throw cli::UsageError("--draft-k-max must not exceed --sample-steps");
  if (j["draft_k_max"].get<int64_t>() > 0 && j["draft_k"].get<int64_t>() != 1)
    throw cli::UsageError("--draft-k and --draft-k-max exclude each other (a fixed K or a random one)");
  if (j["pipeline"] == "sd3" && !j["reward_clamp"].get<bool>())
    throw cli::UsageError("--reward-clamp false: the sd3 pipeline's decoder always clamps its images");
  // -1: the method's rate (written into the run's config.json as the number it resolved to)
  for (const char* k : {"lr", "lr_value"}) {
    const double v = j[k].get<double>();
    if (v < 0 && v != -1.0) throw cli::UsageError(flag_of(k) + " must be -1 (" + (k == std::string("lr") ? "the method's rate" : "--lr") + ") or in [0, 1], got " + j[k].dump());
  }
  if (j["lr"].get<double>() == -1.0) j["lr"] = paper_lr(j["method"], j["reward"]);
  if (j["lr_value"].get<double>() == -1.0) j["lr_value"] = j["lr"];
}

// The training reward with a test hook: while armed, its gradient is NaN (the value is not).
class PoisonableReward : public flow::Reward {
 public:
  explicit PoisonableReward(std::shared_ptr<flow::Reward> r) : r_(std::move(r)) {}
  std::string name() const override { return r_->name(); }
  Tensor operator()(const Tensor& x) const override { return (*r_)(armed ? m::nan_gradient(x) : x); }
  Tensor score(const Tensor& x, const Tensor& ids) const override { return r_->score(armed ? m::nan_gradient(x) : x, ids); }
  bool uses_prompts() const override { return r_->uses_prompts(); }
  bool armed = false;

 private:
  std::shared_ptr<flow::Reward> r_;
};

// Test hook (CTest train.mpi_rank_dies): VGG_TEST_DIE="R:S" makes rank R exit at once, without a
// word, when it starts update S (0-based), as a crashed process would.
void maybe_die(int rank, int64_t step) {
  const char* v = std::getenv("VGG_TEST_DIE");
  if (v == nullptr) return;
  int r = -1;
  long long at = -1;
  if (std::sscanf(v, "%d:%lld", &r, &at) == 2 && r == rank && at == step) std::_Exit(3);
}

int run(int argc, char** argv) {
  // under mpirun: the job's communicator first (its rank decides who writes the run folder)
  std::shared_ptr<dist::Communicator> comm = dist::launched_by_mpi() ? dist::world("mpi") : nullptr;
  const int rank = comm ? comm->rank() : 0, nproc = comm ? comm->size() : 1;
  const bool lead = rank == 0;
  cli::Trainer::Options to;
  to.rank = rank;
  if (comm) to.barrier = [comm] { comm->barrier(); };
  to.prog = "vgg_train";
  to.description =
      "vgg_train: align the flow model to a reward (VGG-Flow, ReFL, DRaFT, Adjoint Matching, VGG-Flow-PMP).\n"
      "Every setting is a flag and a key of the --config JSON (flags win); OUT/config.json keeps the resolved ones.";
  to.settings = settings();
  to.presets = presets();
  to.validate = validate;
  cli::Trainer trainer(to);
  if (!trainer.parse(argc, argv)) return 0;
  trainer.open();
  const json& cfg = trainer.cfg();
  const fs::path& out = trainer.out();
  const std::string method = cfg["method"], reward_name = cfg["reward"];
  const int64_t steps = cfg["steps"], batch = cfg["batch"], nsteps = cfg["sample_steps"], micro = cfg["micro_batches"];
  const auto seed = cfg["seed"].get<uint64_t>();
  const std::string models = cfg["models"].get<std::string>().empty() ? flow::default_models_dir() : cfg["models"].get<std::string>();
  const std::string base_dir = cfg["base"].get<std::string>().empty() ? models + "/base" : cfg["base"].get<std::string>();

  Device device = Device::parse(cfg.value("device", "cpu"));
  if (comm && cfg["device"] == "cuda" && cuda_device_count() > 0) {  // one GPU per rank, by local rank
    const char* lr = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    device = Device::cuda((lr ? std::atoi(lr) : rank) % cuda_device_count());
  }
  if (comm && micro % nproc != 0)
    throw cli::UsageError("--micro-batches " + std::to_string(micro) + " must be a multiple of the " + std::to_string(nproc) +
                          " processes (mpirun -np): each runs micro-batches/N of every update");
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
    if (clip->uses_prompts()) {  // one row of text features per prompt of the embeddings file, same order
      const std::string tf_path = cfg["text_features"];
      const flow::TextFeatures tf = flow::load_text_features_table(tf_path);
      const std::vector<std::string>& texts = base_model.prompt_texts;
      const int64_t n = base_model.prompts->num_prompts() - 1;
      if (tf.table.size(0) != n)
        throw std::runtime_error(tf_path + ": " + std::to_string(tf.table.size(0)) + " rows of text features for " +
                                 std::to_string(n) + " prompts in " + cfg["prompts"].get<std::string>());
      for (size_t i = 0; i < tf.prompts.size() && i < texts.size(); ++i)
        if (tf.prompts[i] != texts[i])
          throw std::runtime_error(tf_path + ": prompt " + std::to_string(i) + " is '" + tf.prompts[i] + "' where " +
                                   cfg["prompts"].get<std::string>() + " has '" + texts[i] + "'");
      clip->set_prompt_features(tf.table);
    }
    decoded = std::make_shared<flow::DecodedReward>(decode, clip, device, DType::F32);
    rw.reward = decoded;
  } else {
    rw = flow::make_rewards(reward_name, models);
    base_model = flow::load_flow_model(base_dir);
  }
  if (rw.fa) rw.fa->to(device);
  if (rw.fb) rw.fb->to(device);
  // the pixel pipeline's training reward sees the clamped image (sd3: the decoder clamps)
  if (!sd3 && cfg["reward_clamp"].get<bool>()) rw.reward = std::make_shared<flow::ClampedReward>(rw.reward);
  auto poisonable = std::make_shared<PoisonableReward>(rw.reward);
  rw.reward = poisonable;
  const int64_t inject_nan = cfg["inject_nan_grad"];
  m::Policy pol = m::make_policy(base_model, cfg["rank"], cfg["guidance"], seed + 11);
  pol.model.net->to(device);  // adapters included: they stay trainable leaves
  pol.model.net->checkpointing = cfg["checkpointing"];
  const std::optional<DType> compute =
      cfg["compute_dtype"] == "bf16" ? std::optional<DType>(DType::BF16) : std::nullopt;
  pol.model.net->set_compute_dtype(compute);
  if (!device.is_cpu() && lead) std::fprintf(stderr, "vgg_train: networks on %s\n", device.str().c_str());
  if (lead) {
    const std::string advice = kernels::cpu_gemm_advice();
    if (!advice.empty()) std::fprintf(stderr, "vgg_train: note: %s\n", advice.c_str());
  }
  const double shift = pol.model.sampling.shift;

  // the method: its options from the settings
  m::MethodOptions mo;
  mo.name = method, mo.steps = nsteps, mo.shift = shift;
  m::VGGFlowOptions& vo = mo.vggflow;
  vo.beta = cfg["beta"], vo.alpha = cfg["alpha"], vo.eta = m::parse_eta(cfg["eta"]);
  vo.fd_eps = cfg["fd_eps"], vo.central = cfg["fd"] == "central", vo.fd_time_scale = cfg["fd_time_scale"];
  vo.base_direction_grad = cfg["base_direction_grad"], vo.clip_quantile = cfg["clip_quantile"];
  vo.clip_fixed = cfg["clip_fixed"], vo.bins = cfg["bins"];
  vo.derivatives = m::parse_derivatives(cfg["derivatives"]);
  vo.weighting = m::parse_loss_weighting(cfg["loss_weighting"]);
  m::AdjointOptions& ao = mo.adjoint;
  ao.beta = method == "am" && cfg["am_beta"].get<double>() > 0 ? cfg["am_beta"].get<double>() : cfg["beta"].get<double>();
  ao.clip_quantile = cfg["clip_quantile"], ao.clip_fixed = cfg["clip_fixed"];
  ao.bins = cfg["bins"], ao.times = cfg["am_times"];
  mo.relu = cfg["refl_relu"], mo.draft_k = cfg["draft_k"], mo.draft_k_max = cfg["draft_k_max"], mo.draft_lv = cfg["draft_lv"];
  mo.value_net = cfg["value_net"], mo.value_prompt_free = cfg["value_prompt_free"], mo.value_seed = seed + 12;
  mo.value_zero = cfg["lr_value"].get<double>() == 0.0;
  mo.device = device, mo.compute_dtype = compute, mo.checkpointing = cfg["checkpointing"];
  mo.clamp_logged_samples = !sd3;  // latents are logged as they are (the reward decodes them)
  mo.gold = rw.gold;
  std::unique_ptr<m::Method> meth = m::make_method(pol, rw.reward, mo);

  std::vector<nn::ParamGroup> groups(1);
  groups[0].name = "theta";
  groups[0].params = pol.lora_params();
  for (auto& g : meth->extra_groups()) groups.push_back(g);
  for (size_t i = 0; i < groups.size(); ++i) {
    groups[i].lr = i == 0 ? cfg["lr"].get<double>() : cfg["lr_value"].get<double>();
    groups[i].weight_decay = cfg["weight_decay"], groups[i].max_grad_norm = cfg["max_grad_norm"];
  }
  const int64_t zero = cfg["zero"];
  if (zero == 1 && !comm)
    throw cli::UsageError("--zero 1 shards the optimizer across the processes of mpirun -np N; run it under mpirun");
  std::optional<m::Zero1Plan> plan;
  if (zero == 1) plan = m::plan_zero1(groups, rank, nproc);
  nn::AdamW opt(plan ? plan->owned : groups);
  m::Updater updater(opt, groups);
  // data parallel: deterministic sums on the host over MPI; fast all-reduces over NCCL on GPUs
  std::shared_ptr<dist::Communicator> grad_comm;
  const bool deterministic = cfg["reduce"] == "deterministic" || (cfg["reduce"] == "auto" && !device.is_cuda());
  if (comm) {
    grad_comm = !deterministic && device.is_cuda() ? std::shared_ptr<dist::Communicator>(dist::make("nccl")) : comm;
    updater.set_communicator(grad_comm, deterministic);
    if (plan) {
      updater.set_zero1(*plan);
      if (lead) {
        std::string per;
        int64_t all = 0;
        for (size_t r = 0; r < plan->elements.size(); ++r) {
          per += (r ? ", " : "") + format_bytes(static_cast<uint64_t>(plan->elements[r]) * 8);  // two f32 moments
          all += plan->elements[r];
        }
        std::fprintf(stderr, "vgg_train: ZeRO-1: AdamW moments per rank %s (unsharded %s)\n", per.c_str(),
                     format_bytes(static_cast<uint64_t>(all) * 8).c_str());
      }
    }
    if (lead)
      std::fprintf(stderr, "vgg_train: %d processes (%s, %s reduction), %lld micro-batches of %lld trajectories each per update\n",
                   nproc, grad_comm->backend().c_str(), deterministic ? "deterministic" : "fast", static_cast<long long>(micro),
                   static_cast<long long>(batch / micro));
  }

  trainer.start();
  if (trainer.resuming()) {
    const fs::path ck = trainer.checkpoint();  // the newest complete one (tools/durable.h)
    nn::load_lora((ck / "lora.safetensors").string(), *pol.model.net);
    if (!meth->state_file().empty()) meth->load_state(nn::load_tensors((ck / meth->state_file()).string()));
    updater.load_optimizer_state(nn::load_tensors((ck / "optimizer.safetensors").string()));
  }

  // the evaluation reference: base samples and real images, computed once
  flow::EvalOptions eo;
  eo.per_prompt = cfg["eval_per_prompt"];
  eo.sampling = {nsteps, shift, cfg["guidance"].get<double>()};
  eo.seed = 1234;
  eo.device = device;  // evaluation samples where the policy lives
  if (lead)
    std::fprintf(stderr, "vgg_train: %s, reward %s, %lld updates of %lld trajectories -> %s\n", method.c_str(),
               reward_name.c_str(), static_cast<long long>(steps), static_cast<long long>(batch), out.string().c_str());
  flow::EvalReference ref;
  const int64_t ev = cfg["eval_every"];
  if (!sd3 && ev >= 0 && lead) {  // only rank 0 evaluates
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
                                pol.model.latent_size, batch, device);
  };

  cli::Trainer::Loop loop;
  loop.steps = steps;
  loop.eval_every = ev, loop.sample_every = cfg["sample_every"], loop.ckpt_every = cfg["ckpt_every"];
  loop.evaluate = [&](int64_t at) {
    const auto te = std::chrono::steady_clock::now();
    json e;
    if (sd3) {  // the reward of eval_per_prompt samples of every prompt
      std::vector<int64_t> ids;
      for (int64_t p = 0; p < n_prompts; ++p) ids.insert(ids.end(), static_cast<size_t>(eo.per_prompt), p);
      Tensor lat = sd3_latents(ids, eo.seed);
      const Tensor ids_t = from_vector(ids, {static_cast<int64_t>(ids.size())});
      double sum = 0;
      for (int64_t i = 0; i < lat.size(0); i += batch) {
        NoGradGuard ng;
        const int64_t b = std::min(batch, lat.size(0) - i);
        sum += ops::sum(decoded->score(ops::narrow(lat, 0, i, b), ops::narrow(ids_t, 0, i, b))).item();
      }
      e = json{{"reward", sum / static_cast<double>(lat.size(0))}, {"samples", lat.size(0)}};
    } else {
      // at update 0 the adapters add exactly zero (B = 0), so the model's seed-A samples are the
      // base's, which the reference already holds
      Tensor imgs = at == 0 ? ref.base_images_a
                            : flow::sample_images(pol.model.velocity(), *pol.model.prompts,
                                                  flow::per_class_ids(eo.per_prompt), eo.sampling, eo.seed, 32, 80, device);
      e = flow::evaluate_images(imgs, rw, ref);
    }
    e["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - te).count();
    trainer.log(json{{"step", at}, {"eval", e}, {"elapsed_s", trainer.elapsed()}});
    if (at == 0)
      std::fprintf(stderr, "vgg_train: step 0:");
    else
      std::fprintf(stderr, "\n[%lld] eval:", static_cast<long long>(at));
    if (sd3)
      std::fprintf(stderr, " reward %.4f\n", e["reward"].get<double>());
    else
      std::fprintf(stderr, " reward %.4f gold %.4f diversity %.4f FD-to-base %.3f (floor %.3f) FD-real %.3f\n",
                   e["reward"].get<double>(), e["gold"].get<double>(), e["diversity"].get<double>(),
                   e["fd_base"].get<double>(), e["fd_base_floor"].get<double>(), e["fd_real"].get<double>());
  };
  loop.sample = [&](int64_t at) {
    char name[64];
    std::snprintf(name, sizeof name, "step_%06lld.png", static_cast<long long>(at));
    if (sd3) {  // one image of each of the first 8 prompts
      std::vector<int64_t> ids;
      for (int64_t p = 0; p < std::min<int64_t>(8, n_prompts); ++p) ids.push_back(p);
      flow::write_png((out / "samples" / name).string(), flow::make_grid(decoded->images(sd3_latents(ids, seed + 99)), 4));
      return;
    }
    Tensor img = flow::sample_images(pol.model.velocity(), *pol.model.prompts, flow::per_class_ids(6), eo.sampling, seed + 99,
                                     32, 80, device);
    flow::write_png((out / "samples" / name).string(), flow::make_grid(img, 6));
  };
  loop.checkpoint = [&](int64_t at) {  // every rank: the optimizer state may be gathered (ZeRO-1)
    const nn::NamedTensors os = updater.optimizer_state();
    trainer.commit(at, [&](const fs::path& tmp) {
      nn::save_lora((tmp / "lora.safetensors").string(), *pol.model.net);
      if (!meth->state_file().empty()) nn::save_tensors((tmp / meth->state_file()).string(), meth->state());
      nn::save_tensors((tmp / "optimizer.safetensors").string(), os);
    }, json{{"rng", "Generator(seed, 5000 + step) per update"}});
  };
  // One update: micro-batches each draw their own trajectories (micro-batch 0 from the unsplit
  // update's stream, so one micro-batch is the plain update); see methods::Updater.
  json last;
  loop.update = [&](int64_t step) {
    maybe_die(rank, step);
    poisonable->armed = inject_nan > 0 && step + 1 == inject_nan;
    last = updater.update(micro, [&](int64_t mb, json& part) {
      Generator gen(seed, 5000 + static_cast<uint64_t>(step) + (static_cast<uint64_t>(mb) << 32));
      return meth->loss(batch / micro, gen, part);
    });
    poisonable->armed = false;
    return last;
  };
  loop.progress = [&] {
    char b[96];
    std::snprintf(b, sizeof b, "reward %.4f  loss %.4g", last.value("reward", NAN), last.value("loss", NAN));
    return std::string(b);
  };
  trainer.run(loop);
  grad_comm.reset();
  if (comm) comm->barrier();  // every rank is done before rank 0 reports (and MPI is finalised)
  if (!lead) return 0;
  std::fprintf(stderr, "\nvgg_train: done in %s; LoRA in %s\n", cli::format_hms(trainer.elapsed()).c_str(),
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
  const int rc = cli::run_main("vgg_train", [&] { return run(argc, argv); });
  if (rc == 0) vgg::dist::shutdown();  // MPI_Finalize; after an error the process exits and mpirun ends the job
  return rc;
}
