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
#include "tools/cli.h"
#include "vggflow/data.h"
#include "vggflow/image.h"
#include "vggflow/model.h"
#include "vggflow/prompts.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace vgg;

namespace {

constexpr const char* kHelp = R"(usage: vgg_pretrain [flags]
  --out DIR            run directory (default runs/pretrain); must not hold a checkpoint unless --resume
  --resume             continue the run in --out from its checkpoint (only --steps may be changed)
  --config NAME|FILE   MMDiT config name (tiny, small, ...) or diffusers config.json (default tiny)
  --steps N            optimizer steps (default 4000)
  --batch B            images per step (default 32)
  --lr X               AdamW learning rate after warm-up (default 3e-4)
  --warmup N           linear warm-up steps (default 200)
  --weight-decay X     AdamW weight decay (default 0)
  --max-grad-norm X    gradient clipping, 0 = off (default 1)
  --ema X              EMA decay of the weights (default 0.999)
  --shift X            shift of the training sigma table and of the sampler (default 1)
  --drop X             prompt dropout for classifier-free guidance (default 0.1)
  --tokens N           text tokens per prompt (default 8)
  --seed S             seed of every random draw (default 0)
  --data DIR           IDX files (default: the dataset-fashion-mnist package)
  --limit N            use only the first N training images (default all)
  --log-every N        metrics.jsonl interval (default 10)
  --sample-every N     sample grid interval, 0 = only at the end (default 500)
  --ckpt-every N       checkpoint interval (default 500; always at the end)
  --sample-steps N     Euler steps of the sample grids (default 20)
  --guidance X         CFG scale of the sample grids (default 4)
)";

const std::set<std::string> kValueFlags = {
    "--out",   "--config", "--steps", "--batch", "--lr",    "--warmup",    "--weight-decay", "--max-grad-norm",
    "--ema",   "--shift",  "--drop",  "--tokens", "--seed", "--data",      "--limit",        "--log-every",
    "--sample-every", "--ckpt-every", "--sample-steps", "--guidance"};

struct Settings {
  json j;  // the resolved settings, written to config.json
  std::string config() const { return j["config"]; }
  int64_t i(const char* k) const { return j[k].get<int64_t>(); }
  double d(const char* k) const { return j[k].get<double>(); }
};

Settings resolve(const cli::Flags& f) {
  Settings s;
  s.j["config"] = f.str("--config", "tiny");
  s.j["steps"] = f.integer("--steps", 4000, 1);
  s.j["batch"] = f.integer("--batch", 32, 1, 4096);
  s.j["lr"] = f.real("--lr", 3e-4, 0, 1);
  s.j["warmup"] = f.integer("--warmup", 200, 0);
  s.j["weight_decay"] = f.real("--weight-decay", 0.0, 0, 1);
  s.j["max_grad_norm"] = f.real("--max-grad-norm", 1.0, 0, 1e6);
  s.j["ema"] = f.real("--ema", 0.999, 0, 1);
  s.j["shift"] = f.real("--shift", 1.0, 1e-3, 1e3);
  s.j["drop"] = f.real("--drop", 0.1, 0, 1);
  s.j["tokens"] = f.integer("--tokens", 8, 1, 512);
  s.j["seed"] = f.integer("--seed", 0, 0);
  s.j["data"] = f.str("--data", "");
  s.j["limit"] = f.integer("--limit", 0, 0);
  s.j["log_every"] = f.integer("--log-every", 10, 1);
  s.j["sample_every"] = f.integer("--sample-every", 500, 0);
  s.j["ckpt_every"] = f.integer("--ckpt-every", 500, 1);
  s.j["sample_steps"] = f.integer("--sample-steps", 20, 1, 1000);
  s.j["guidance"] = f.real("--guidance", 4.0, 0, 100);
  return s;
}

// A run's saved config.json, each setting checked exactly as its flag is (ranges, types, unknown keys).
Settings saved_settings(const fs::path& path) {
  const json j = read_json_file(path.string());
  if (!j.is_object()) throw std::runtime_error(path.string() + ": the config must be a JSON object");
  std::vector<std::string> args = {"vgg_pretrain"};
  for (const auto& [k, v] : j.items()) {
    const bool text = k == "config" || k == "data";
    if (text ? !v.is_string() : !v.is_number())
      throw std::runtime_error(path.string() + ": '" + k + "' must be " + (text ? "a string" : "a number") + ", got " +
                               v.dump());
    std::string flag = "--" + k;
    for (char& c : flag)
      if (c == '_') c = '-';
    if (!kValueFlags.count(flag) || flag == "--out") throw std::runtime_error(path.string() + ": unknown setting '" + k + "'");
    args.push_back(flag + "=" + (text ? v.get<std::string>() : v.dump()));
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  try {
    const cli::Flags f(static_cast<int>(argv.size()), argv.data(), kValueFlags, {});
    if (f.positional().size()) throw cli::UsageError("unexpected value");
    for (const std::string& k : kValueFlags)
      if (k != "--out" && !f.has(k)) throw cli::UsageError("lacks '" + k.substr(2) + "'");
    return resolve(f);
  } catch (const cli::UsageError& e) {
    throw std::runtime_error(path.string() + ": " + e.what());
  }
}

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


json read_json(const fs::path& p) { return read_json_file(p.string()); }  // strict, errors name the file

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

  // ckpt-<step>/ written in full, then `checkpoint` switched to it by one rename (tools/durable.h)
  void save(const fs::path& dir, int64_t step, std::pair<int64_t, int64_t> data_state) {
    cli::commit_checkpoint(dir, step, [&](const fs::path& tmp) {
      nn::save_weights((tmp / "transformer.safetensors").string(), *model, {{"config", cfg.to_json()}});
      nn::save_weights((tmp / "prompts.safetensors").string(), *prompts);
      nn::save_tensors((tmp / "ema.safetensors").string(), ema->state_dict());
      nn::save_tensors((tmp / "optimizer.safetensors").string(), opt->state_dict());
      cli::write_text_atomic(tmp / "state.json",
                             json{{"step", step}, {"epoch", data_state.first}, {"position", data_state.second}}.dump(2) + "\n");
    });
    // the EMA weights as a ready-to-use model (what the other tools load)
    ema->copy_to(ema_params);
    nn::save_weights((dir / "model_ema.safetensors.tmp").string(), *ema_model, {{"config", cfg.to_json()}});
    fs::rename(dir / "model_ema.safetensors.tmp", dir / "model_ema.safetensors");
    nn::save_weights((dir / "prompts_ema.safetensors.tmp").string(), *ema_prompts);
    fs::rename(dir / "prompts_ema.safetensors.tmp", dir / "prompts_ema.safetensors");
  }

  json load(const fs::path& dir) {
    const fs::path c = cli::latest_checkpoint(dir);  // the newest complete one
    nn::load_weights((c / "transformer.safetensors").string(), *model);
    nn::load_weights((c / "prompts.safetensors").string(), *prompts);
    ema->load_state_dict(nn::load_tensors((c / "ema.safetensors").string()));
    opt->load_state_dict(nn::load_tensors((c / "optimizer.safetensors").string()));
    return read_json(c / "state.json");
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
  cli::Flags f(argc, argv, kValueFlags, {"--resume", "--help"});
  if (f.has("--help")) {
    std::printf("%s", kHelp);
    return 0;
  }
  if (!f.positional().empty()) throw cli::UsageError("unexpected argument '" + f.positional()[0] + "' (see --help)");
  const fs::path out = f.str("--out", "runs/pretrain");
  const bool resume = f.has("--resume");
  Settings s = resolve(f);  // validates every flag, also on resume
  std::optional<cli::RunLock> lock;  // one process per run folder, held until exit
  bool restart = false;              // --resume of a run that never reached its first checkpoint
  if (resume) {
    for (const char* k : {"--config", "--batch", "--lr", "--warmup", "--weight-decay", "--max-grad-norm", "--ema",
                          "--shift", "--drop", "--tokens", "--seed", "--data", "--limit"})
      if (f.has(k)) throw cli::UsageError(std::string(k) + " cannot change on --resume (only --steps can)");
    const fs::path ck = cli::latest_checkpoint(out);
    if (ck.empty() && !fs::exists(out / "config.json")) throw std::runtime_error("--resume: no run in " + out.string());
    lock.emplace(out);
    const int64_t new_steps = s.i("steps");
    s = saved_settings(out / "config.json");  // checked as the flags are
    if (f.has("--steps")) s.j["steps"] = new_steps;
    if (ck.empty()) {  // killed or failed before its first checkpoint: start over with its settings
      restart = true;
      std::fprintf(stderr, "vgg_pretrain: %s has no checkpoint yet: starting over with its saved settings\n",
                   out.string().c_str());
    }
  }
  if (resume && !restart) {
    const fs::path ck = cli::latest_checkpoint(out);
    const json st = read_json(ck / "state.json");
    for (const char* k : {"step", "epoch", "position"})
      if (!st.is_object() || !st.contains(k) || !st[k].is_number_integer() || st[k].get<int64_t>() < 0)
        throw std::runtime_error((ck / "state.json").string() + ": '" + k + "' must be a non-negative integer");
    if (st["step"].get<int64_t>() > s.i("steps"))
      throw cli::UsageError("--steps " + std::to_string(s.i("steps")) + " is before the checkpoint's step " +
                            std::to_string(st["step"].get<int64_t>()) + " (a run cannot be shortened by resuming it)");
  } else if (!resume) {
    lock.emplace(out);
    if (cli::holds_a_run(out))
      throw std::runtime_error(out.string() + " already holds a run (use --resume, or another --out)");
  }
  fs::create_directories(out / "samples");
  Run r(s);
  flow::ImageSet train = flow::load_fashion_mnist(true, s.j["data"].get<std::string>(), 32, s.i("limit"));
  flow::BatchIterator batches(train, s.i("batch"), static_cast<uint64_t>(s.i("seed")));
  int64_t step = 0;
  // config.json first: a run killed before its metrics file exists is resumed (started over) from it
  cli::write_text_atomic(out / "config.json", s.j.dump(2) + "\n");
  if (resume && !restart) {
    json st = r.load(out);
    step = st["step"].get<int64_t>();
    batches.set_state(st["epoch"].get<int64_t>(), st["position"].get<int64_t>());
    // updates after the checkpoint are logged again by the resumed run: keep the lines up to it
    cli::write_durable(out / "metrics.jsonl", cli::lines_up_to_step((out / "metrics.jsonl").string(), step));
  } else {
    cli::write_durable(out / "metrics.jsonl", "");
  }
  const int64_t steps = s.i("steps");
  std::fprintf(stderr, "vgg_pretrain: %s, %lld parameters, %lld training images, steps %lld..%lld, batch %lld -> %s\n",
               s.config().c_str(), static_cast<long long>(r.model->num_parameters()),
               static_cast<long long>(train.n), static_cast<long long>(step), static_cast<long long>(steps),
               static_cast<long long>(s.i("batch")), out.string().c_str());
  std::ofstream metrics(out / "metrics.jsonl", std::ios::app);
  const auto sched = nn::LRSchedule::linear_warmup(s.i("warmup"));
  flow::TimestepSampling ts;
  ts.shift = s.d("shift");
  auto t0 = std::chrono::steady_clock::now();
  const int64_t first = step;
  double loss_sum = 0;
  int64_t loss_n = 0;
  while (step < steps) {
    Tensor x0, y;
    batches.next_cycled(x0, y);
    const int64_t B = x0.size(0);
    Generator g(static_cast<uint64_t>(s.i("seed")), 1000 + static_cast<uint64_t>(step));
    Tensor ids = r.prompts->drop(y, s.d("drop"), g);
    Tensor sigma = flow::sample_training_sigmas(B, ts, g);
    Tensor eps = randn(x0.shape(), {}, &g);
    flow::Conditioning c = r.prompts->encode(ids);
    Tensor u = r.model->forward(flow::noise_sample(x0, eps, sigma), ops::mul(sigma, 1000.0), c.context, c.pooled);
    Tensor loss = ops::mean(ops::square(ops::sub(u, flow::velocity_target(x0, eps))));
    r.opt->zero_grad();
    backward(loss);
    nn::apply_schedule(*r.opt, sched, step);
    nn::StepStats st = r.opt->step();
    r.ema->update();
    ++step;
    const double lv = loss.item();
    if (!std::isfinite(lv)) throw std::runtime_error("loss is " + std::to_string(lv) + " at step " + std::to_string(step));
    loss_sum += lv, ++loss_n;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double per_step = elapsed / static_cast<double>(step - first);
    if (step % s.i("log_every") == 0 || step == steps) {
      cli::append_line(metrics, out / "metrics.jsonl", json{{"step", step},
                      {"loss", loss_sum / static_cast<double>(loss_n)},
                      {"lr", r.opt->lr(0)},
                      {"grad_norm", st.groups[0].grad_norm},
                      {"clipped", st.groups[0].clipped},
                      {"sec_per_step", per_step},
                      {"images_per_sec", static_cast<double>(B) / per_step}}
                     .dump());
      loss_sum = 0, loss_n = 0;
    }
    std::fprintf(stderr, "\r[%lld/%lld] loss %.4f  lr %.2e  %.2f s/step  ETA %s   ", static_cast<long long>(step),
                 static_cast<long long>(steps), lv, r.opt->lr(0), per_step,
                 cli::format_hms(per_step * static_cast<double>(steps - step)).c_str());
    if (step % s.i("ckpt_every") == 0 || step == steps) r.save(out, step, batches.state());
    if ((s.i("sample_every") > 0 && step % s.i("sample_every") == 0) || step == steps) {
      char name[64];
      std::snprintf(name, sizeof name, "step_%06lld.png", static_cast<long long>(step));
      r.sample_grid(out / "samples" / name);
    }
  }
  std::fprintf(stderr, "\nvgg_pretrain: done at step %lld; EMA model in %s\n", static_cast<long long>(step),
               (out / "model_ema.safetensors").string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return cli::run_main("vgg_pretrain", [&] { return run(argc, argv); });
}
