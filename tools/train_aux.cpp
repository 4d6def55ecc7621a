// vgg_train_aux — trains the reward and evaluation networks of the embedded default
// (vggflow/nets.h) on Fashion-MNIST padded to 32×32 and reports test accuracy.
//
//   vgg_train_aux --net fa|fb --out FILE.safetensors [--epochs N] [--batch B] [--lr X] [--seed S]
//                 [--data DIR] [--limit N] [--force]
//   vgg_train_aux --probe --net fa|fb --weights NET.safetensors --out PROBE.safetensors [--lambda X]
//                 fits the aesthetic probe w·e/‖e‖ + b on the network's normalised embeddings of the
//                 training images to the synthetic quality score (vggflow/rewards.h) by ridge
//                 regression, and reports R² on the test set.
//
// The file holds the weights and, in its metadata, the net kind, the test accuracy and the
// command line that produced it. An existing file is not overwritten without --force.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "autograd/engine.h"
#include "nn/io.h"
#include "nn/optim.h"
#include "tools/cli.h"
#include "vggflow/data.h"
#include "vggflow/metrics.h"
#include "vggflow/rewards.h"
#include "vggflow/nets.h"

using namespace vgg;

namespace {

std::string command_line(int argc, char** argv) {
  std::string cmd = "vgg_train_aux";
  for (int i = 1; i < argc; ++i) cmd += std::string(" ") + argv[i];
  return cmd;
}

int fit_probe(const cli::Flags& f, const std::string& kind, const std::string& out, int argc, char** argv) {
  const std::string weights = f.str("--weights", "");
  if (weights.empty()) throw cli::UsageError("--probe needs --weights NET.safetensors");
  const double lambda = f.real("--lambda", 1.0, 0, 1e9);
  auto net = flow::load_feature_net(weights, kind);
  flow::ImageSet train = flow::load_fashion_mnist(true, f.str("--data", ""), 32, f.integer("--limit", 0, 0));
  flow::ImageSet test = flow::load_fashion_mnist(false, f.str("--data", ""), 32);
  Tensor q_train = flow::synthetic_quality(train.images, train.labels);
  Tensor q_test = flow::synthetic_quality(test.images, test.labels);
  Tensor e_train = flow::unit_rows(flow::embed_all(*net, train.images)), e_test = flow::unit_rows(flow::embed_all(*net, test.images));
  flow::RidgeFit fit = flow::fit_ridge(e_train, q_train, lambda);
  flow::AestheticProbe probe(net, from_vector(fit.w, {static_cast<int64_t>(fit.w.size())}, opts(DType::F32)), fit.b);
  Tensor pred;
  {
    NoGradGuard ng;
    pred = probe(test.images);
  }
  const double r2_test = flow::r_squared(pred, q_test);
  std::vector<double> pv = pred.to_vector();
  double lo = pv[0], hi = pv[0];
  for (double v : pv) lo = std::min(lo, v), hi = std::max(hi, v);
  char buf[160];
  std::snprintf(buf, sizeof buf, "%.4f", r2_test);
  const std::string r2s = buf;
  std::snprintf(buf, sizeof buf, "%.4f", fit.r2);
  flow::save_aesthetic_probe(out, probe,
                             {{"net", kind}, {"r2_test", r2s}, {"r2_train", buf}, {"lambda", std::to_string(lambda)},
                              {"score", "pref[class] + clamp(z_class(edge sharpness), -2.5, 2.5) (vggflow/rewards.h)"},
                              {"command", command_line(argc, argv)}});
  std::fprintf(stderr, "vgg_train_aux: %s probe R^2 %.4f train, %.4f test; test predictions in [%.2f, %.2f] -> %s\n",
               kind.c_str(), fit.r2, r2_test, lo, hi, out.c_str());
  return 0;
}

int run(int argc, char** argv) {
  cli::Flags f(argc, argv,
               {"--net", "--out", "--epochs", "--batch", "--lr", "--seed", "--data", "--limit", "--weights", "--lambda"},
               {"--force", "--help", "--probe"});
  if (f.has("--help")) {
    std::printf(
        "usage: vgg_train_aux --net fa|fb --out FILE.safetensors [--epochs N (3)] [--batch B (128)] [--lr X (2e-3)]\n"
        "                     [--seed S (fa: 1, fb: 2)] [--data DIR] [--limit N] [--force]\n"
        "       vgg_train_aux --probe --net fa|fb --weights NET.safetensors --out PROBE.safetensors [--lambda X (1)]\n"
        "                     [--data DIR] [--limit N] [--force]\n");
    return 0;
  }
  if (!f.positional().empty()) throw cli::UsageError("unexpected argument '" + f.positional()[0] + "'");
  const std::string kind = f.str("--net", "");
  if (kind != "fa" && kind != "fb") throw cli::UsageError("--net must be fa or fb");
  const std::string out = f.str("--out", "");
  if (out.empty()) throw cli::UsageError("--out FILE is required");
  const int64_t epochs = f.integer("--epochs", 3, 1, 1000), batch = f.integer("--batch", 128, 1, 65536);
  const double lr = f.real("--lr", 2e-3, 0, 1);
  const int64_t seed = f.integer("--seed", kind == "fa" ? 1 : 2, 0), limit = f.integer("--limit", 0, 0);
  if (std::filesystem::exists(out) && !f.has("--force")) throw std::runtime_error(out + " exists (use --force)");
  if (f.has("--probe")) return fit_probe(f, kind, out, argc, argv);

  flow::ImageSet train = flow::load_fashion_mnist(true, f.str("--data", ""), 32, limit);
  flow::ImageSet test = flow::load_fashion_mnist(false, f.str("--data", ""), 32);
  Generator g(static_cast<uint64_t>(seed), 0);
  flow::FeatureNet net(kind, {DType::F32, Device::cpu(), &g});
  nn::ParamGroup grp;
  grp.name = kind;
  for (auto& [n, t] : net.named_parameters()) grp.params.push_back(t), grp.param_names.push_back(n);
  grp.lr = lr;
  grp.weight_decay = 1e-4;
  nn::AdamW opt({grp});
  flow::BatchIterator it(train, batch, static_cast<uint64_t>(seed));
  const int64_t total = epochs * it.batches_per_epoch();
  const auto sched = nn::LRSchedule::cosine(std::min<int64_t>(100, total / 10), total, 0.0);
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = 0; step < total; ++step) {
    Tensor x, y;
    it.next_cycled(x, y);
    Tensor logp = ops::log_softmax(net.logits(x), 1);
    Tensor loss = ops::neg(ops::mean(ops::gather(logp, 1, ops::unsqueeze(y, 1))));
    opt.zero_grad();
    backward(loss);
    nn::apply_schedule(opt, sched, step);
    opt.step();
    if ((step + 1) % 20 == 0 || step + 1 == total) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "\r[%lld/%lld] loss %.4f  %.1f s", static_cast<long long>(step + 1),
                   static_cast<long long>(total), loss.item(), s);
    }
  }
  const double acc = flow::class_accuracy(net, test.images, test.labels);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string cmd = command_line(argc, argv);
  char accs[32];
  std::snprintf(accs, sizeof accs, "%.4f", acc);
  nn::save_weights(out, net,
                   {{"kind", kind}, {"test_accuracy", accs}, {"command", cmd}, {"train_seconds", std::to_string(secs)}});
  std::fprintf(stderr, "\nvgg_train_aux: %s test accuracy %.2f%% (%lld images), %.0f s -> %s\n", kind.c_str(), 100 * acc,
               static_cast<long long>(test.n), secs, out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return cli::run_main("vgg_train_aux", [&] { return run(argc, argv); });
}
