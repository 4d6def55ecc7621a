// vgg_pretrain — trains the base flow-matching model of the embedded default: an SD3-structured
// MMDiT (config "tiny" unless told) plus the prompt tables, on Fashion-MNIST padded to 32×32,
// with the SD3 flow-matching loss, AdamW + linear warm-up, and an EMA of the weights.
//
//   vgg_pretrain [--out DIR] [--steps N] [--batch B] [--lr X] ... (see --help)
//   vgg_pretrain --out DIR --resume [--steps N]      continue a run (only --steps may change)
//
// The run directory holds config.json (the resolved settings), metrics.jsonl (one JSON object
// per logged step), samples/step_NNNNNN.png (one row per prompt, fixed seeds, EMA weights) and
// checkpoint/ (transformer, prompts, EMA, optimizer state, state.json), a link to the newest complete
// ckpt-<step>/ folder switched by one rename (tools/durable.h). A
// run resumed from its checkpoint continues bit-identically to one that was never stopped.
// The settings, run folder and loop are the trainer's (tools/trainer.h), shared with vgg_train; the
// update is methods::Updater (a non-finite loss or gradient skips the update and the EMA).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "nn/io.h"
#include "nn/mmdit.h"
#include "nn/optim.h"
#include "tensor/json.h"
#include "tools/trainer.h"
#include "vggflow/methods/method.h"
#include "vggflow/data.h"
#include "vggflow/image.h"
#include "vggflow/model.h"
#include "vggflow/prompts.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace vgg;

namespace {

const std::vector<cli::Setting>& settings() {
  static const std::vector<cli::Setting> s = {
      {"config", "tiny", 0, 0, "MMDiT config name (tiny, small, ...) or a diffusers config.json"},
      {"steps", 4000, 1, 9e15, "optimizer steps"},
      {"batch", 32, 1, 4096, "images per step"},
      {"lr", 3e-4, 0, 1, "AdamW learning rate after warm-up"},
      {"warmup", 200, 0, 9e15, "linear warm-up steps"},
      {"weight_decay", 0.0, 0, 1, "AdamW weight decay"},
      {"max_grad_norm", 1.0, 0, 1e6, "gradient clipping (0 = off)"},
      {"ema", 0.999, 0, 1, "EMA decay of the weights"},
      {"shift", 1.0, 1e-3, 1e3, "shift of the training sigma table and of the sampler"},
      {"drop", 0.1, 0, 1, "prompt dropout for classifier-free guidance"},
      {"tokens", 8, 1, 512, "text tokens per prompt"},
      {"seed", 0, 0, 9e15, "seed of every random draw"},
      {"data", "", 0, 0, "IDX files (default: the dataset-fashion-mnist package)"},
      {"limit", 0, 0, 9e15, "use only the first N training images (0 = all)"},
      {"log_every", 10, 1, 9e15, "metrics.jsonl interval (the loss is the interval's mean)"},
      {"sample_every", 500, 0, 9e15, "sample grid interval (0 = only at the end)"},
      {"ckpt_every", 500, 1, 9e15, "checkpoint interval (always at the end)"},
      {"sample_steps", 20, 1, 1000, "Euler steps of the sample grids"},
      {"guidance", 4.0, 0, 100, "CFG scale of the sample grids"},
  };
  return s;
}

// The resolved settings (trainer.cfg()) with typed getters.
struct Settings {
  json j;
  std::string config() const { return j["config"]; }
  int64_t i(const char* k) const { return j[k].get<int64_t>(); }
  double d(const char* k) const { return j[k].get<double>(); }
};

nn::MMDiTConfig model_config(const std::string& c) {
  if (c.size() > 5 && c.substr(c.size() - 5) == ".json") {
    std::ifstream in(c);
    if (!in) throw std::runtime_error("cannot open config " + c);
    std::stringstream ss;
    ss << in.rdbuf();
    return nn::MMDiTConfig::from_json(ss.str());
  }
  return nn::MMDiTConfig::named(c);
}



// The trainable state of a run and everything derived from the settings.
struct Run {
  Settings s;
  nn::MMDiTConfig cfg;
  std::shared_ptr<nn::MMDiT> model, ema_model;
  std::shared_ptr<flow::PromptEncoder> prompts, ema_prompts;
  std::unique_ptr<nn::AdamW> opt;
  std::unique_ptr<nn::EMA> ema;
  std::vector<Tensor> params, ema_params;

  explicit Run(const Settings& settings) : s(settings), cfg(model_config(settings.config())) {
    VGG_CHECK(cfg.in_channels == 1 && cfg.out_channels == 1, "vgg_pretrain: the config must have 1 channel in and out");
    VGG_CHECK(cfg.sample_size >= 32, "vgg_pretrain: the config's sample_size must be >= 32 (images are 32x32)");
    Generator g(static_cast<uint64_t>(s.i("seed")), 0);
    nn::LayerOptions o{DType::F32, Device::cpu(), &g};
    model = std::make_shared<nn::MMDiT>(cfg, o);
    prompts = std::make_shared<flow::PromptEncoder>(11, s.i("tokens"), cfg.joint_attention_dim,
                                                    cfg.pooled_projection_dim, o);
    // DiT-style: adaLN-Zero modulations and the output projection start at zero
    for (auto& [name, m] : model->named_modules())
      if (auto* l = dynamic_cast<nn::Linear*>(m);
          l && (name.ends_with("norm1.linear") || name.ends_with("norm1_context.linear") || name == "norm_out.linear" ||
                name == "proj_out")) {
        nn::zeros_(l->weight);
        nn::zeros_(l->bias);
      }
    ema_model = std::make_shared<nn::MMDiT>(cfg, o);
    ema_prompts = std::make_shared<flow::PromptEncoder>(11, s.i("tokens"), cfg.joint_attention_dim,
                                                        cfg.pooled_projection_dim, o);
    nn::ParamGroup grp;
    grp.name = "model";
    for (auto* m : {static_cast<nn::Module*>(model.get()), static_cast<nn::Module*>(prompts.get())})
      for (auto& [n, t] : m->named_parameters()) {
        grp.params.push_back(t);
        grp.param_names.push_back((m == model.get() ? "transformer." : "prompts.") + n);
      }
    for (auto* m : {static_cast<nn::Module*>(ema_model.get()), static_cast<nn::Module*>(ema_prompts.get())})
      for (auto& t : m->parameters()) ema_params.push_back(t);
    params = grp.params;
    grp.lr = s.d("lr");
    grp.weight_decay = s.d("weight_decay");
    grp.max_grad_norm = s.d("max_grad_norm");
    auto names = grp.param_names;
    opt = std::make_unique<nn::AdamW>(std::vector<nn::ParamGroup>{grp});
    ema = std::make_unique<nn::EMA>(params, s.d("ema"), /*warmup=*/true, names);
  }

  // ckpt-<step>/ through the trainer (state.json with the data position), then the EMA weights
  // as a ready-to-use model (what the other tools load)
  void save(cli::Trainer& t, int64_t step, std::pair<int64_t, int64_t> data_state) {
    t.commit(step, [&](const fs::path& tmp) {
      nn::save_weights((tmp / "transformer.safetensors").string(), *model, {{"config", cfg.to_json()}});
      nn::save_weights((tmp / "prompts.safetensors").string(), *prompts);
      nn::save_tensors((tmp / "ema.safetensors").string(), ema->state_dict());
      nn::save_tensors((tmp / "optimizer.safetensors").string(), opt->state_dict());
    }, json{{"epoch", data_state.first}, {"position", data_state.second}});
    const fs::path& dir = t.out();
    ema->copy_to(ema_params);
    nn::save_weights((dir / "model_ema.safetensors.tmp").string(), *ema_model, {{"config", cfg.to_json()}});
    fs::rename(dir / "model_ema.safetensors.tmp", dir / "model_ema.safetensors");
    nn::save_weights((dir / "prompts_ema.safetensors.tmp").string(), *ema_prompts);
    fs::rename(dir / "prompts_ema.safetensors.tmp", dir / "prompts_ema.safetensors");
  }

  void load(const fs::path& c) {
    nn::load_weights((c / "transformer.safetensors").string(), *model);
    nn::load_weights((c / "prompts.safetensors").string(), *prompts);
    ema->load_state_dict(nn::load_tensors((c / "ema.safetensors").string()));
    opt->load_state_dict(nn::load_tensors((c / "optimizer.safetensors").string()));
  }

  // One row per prompt (10 classes), `cols` fixed seeds, EMA weights, CFG.
  void sample_grid(const fs::path& path, int64_t cols = 8) {
    ema->copy_to(ema_params);
    auto f = [&](const Tensor& x, const Tensor& t, const flow::Conditioning& c) {
      return ema_model->forward(x, t, c.context, c.pooled);
    };
    Tensor img = flow::sample_images(f, *ema_prompts, flow::per_class_ids(cols),
                                     {s.i("sample_steps"), s.d("shift"), s.d("guidance")},
                                     static_cast<uint64_t>(s.i("seed")) + 7, 32, 10 * cols);
    flow::write_png(path.string(), flow::make_grid(img, cols));
  }
};

int run(int argc, char** argv) {
  cli::Trainer::Options to;
  to.prog = "vgg_pretrain";
  to.description =
      "vgg_pretrain: train the base flow-matching model of the embedded default (an SD3-structured MMDiT on\n"
      "Fashion-MNIST 32x32) with AdamW, linear warm-up and an EMA of the weights.";
  to.settings = settings();
  to.default_out = "runs/pretrain";
  to.config_file = false;  // --config names the MMDiT config
  to.state_keys = {"step", "epoch", "position"};
  cli::Trainer trainer(to);
  if (!trainer.parse(argc, argv)) return 0;
  trainer.open();
  const Settings s{trainer.cfg()};
  Run r(s);
  flow::ImageSet train = flow::load_fashion_mnist(true, s.j["data"].get<std::string>(), 32, s.i("limit"));
  flow::BatchIterator batches(train, s.i("batch"), static_cast<uint64_t>(s.i("seed")));
  trainer.start();
  if (trainer.resuming()) {
    r.load(trainer.checkpoint());
    batches.set_state(trainer.checkpoint_state()["epoch"].get<int64_t>(), trainer.checkpoint_state()["position"].get<int64_t>());
  }
  const int64_t steps = s.i("steps");
  const fs::path& out = trainer.out();
  std::fprintf(stderr, "vgg_pretrain: %s, %lld parameters, %lld training images, steps %lld..%lld, batch %lld -> %s\n",
               s.config().c_str(), static_cast<long long>(r.model->num_parameters()),
               static_cast<long long>(train.n), static_cast<long long>(trainer.step()), static_cast<long long>(steps),
               static_cast<long long>(s.i("batch")), out.string().c_str());
  const auto sched = nn::LRSchedule::linear_warmup(s.i("warmup"));
  flow::TimestepSampling ts;
  ts.shift = s.d("shift");
  nn::ParamGroup all;
  all.name = "model", all.params = r.params;
  flow::methods::Updater updater(*r.opt, {all});
  double loss_sum = 0, last_loss = 0;
  int64_t loss_n = 0;

  cli::Trainer::Loop loop;
  loop.steps = steps;
  loop.sample_every = s.i("sample_every"), loop.ckpt_every = s.i("ckpt_every");
  loop.at_start = false;
  loop.update = [&](int64_t step) -> json {
    Tensor x0, y;
    batches.next_cycled(x0, y);
    const int64_t B = x0.size(0);
    nn::apply_schedule(*r.opt, sched, step);
    json l = updater.update(1, [&](int64_t, json&) {
      Generator g(static_cast<uint64_t>(s.i("seed")), 1000 + static_cast<uint64_t>(step));
      Tensor ids = r.prompts->drop(y, s.d("drop"), g);
      Tensor sigma = flow::sample_training_sigmas(B, ts, g);
      Tensor eps = randn(x0.shape(), {}, &g);
      flow::Conditioning c = r.prompts->encode(ids);
      Tensor u = r.model->forward(flow::noise_sample(x0, eps, sigma), ops::mul(sigma, 1000.0), c.context, c.pooled);
      return ops::mean(ops::square(ops::sub(u, flow::velocity_target(x0, eps))));
    });
    if (updater.skipped()) return l;  // logged with its reason; the EMA does not move
    r.ema->update();
    last_loss = l["loss"].get<double>();
    loss_sum += last_loss, ++loss_n;
    if ((step + 1) % s.i("log_every") != 0 && step + 1 != steps) return nullptr;
    const nn::GroupStepStats& st = updater.last_step().groups[0];
    json line{{"loss", loss_sum / static_cast<double>(loss_n)}, {"lr", r.opt->lr(0)}, {"grad_norm", st.grad_norm},
              {"clipped", st.clipped}};
    loss_sum = 0, loss_n = 0;
    return line;
  };
  loop.progress = [&] {
    char b[96];
    std::snprintf(b, sizeof b, "loss %.4f  lr %.2e", last_loss, r.opt->lr(0));
    return std::string(b);
  };
  loop.checkpoint = [&](int64_t at) { r.save(trainer, at, batches.state()); };
  loop.sample = [&](int64_t at) {
    char name[64];
    std::snprintf(name, sizeof name, "step_%06lld.png", static_cast<long long>(at));
    r.sample_grid(out / "samples" / name);
  };
  trainer.run(loop);
  std::fprintf(stderr, "\nvgg_pretrain: done at step %lld; EMA model in %s\n", static_cast<long long>(trainer.step()),
               (out / "model_ema.safetensors").string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return cli::run_main("vgg_pretrain", [&] { return run(argc, argv); });
}
