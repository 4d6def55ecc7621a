// vgg_demo: trains a 2-layer MLP on a synthetic regression task with the engine's autograd
// and plain SGD with momentum, printing the loss as it falls. Flags: --steps N, --seed S.
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "autograd/ops.h"

using namespace vgg;

namespace {
// target: y = sin(2 x0) * cos(x1) + 0.5 x2^2 - 0.3 x3
Tensor target(const Tensor& x) {
  auto c = [&](int64_t i) { return ops::narrow(x, 1, i, 1); };
  return ops::sin(c(0) * 2.0) * ops::cos(c(1)) + ops::square(c(2)) * 0.5 - c(3) * 0.3;
}

int64_t parse_int(const std::string& flag, const char* v, long long min) {
  char* end = nullptr;
  errno = 0;
  long long n = std::strtoll(v, &end, 10);
  if (!*v || *end || errno || n < min)
    throw Error(flag + ": expected an integer >= " + std::to_string(min) + ", got '" + v + "'");
  return n;
}
}  // namespace

int main(int argc, char** argv) {
  int64_t steps = 300, seed = 0;
  try {  // usage errors: one line, exit 2
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if ((a == "--steps" || a == "--seed") && i + 1 >= argc) {
        std::fprintf(stderr, "vgg_demo: %s needs a value (see --help)\n", a.c_str());
        return 2;
      } else if (a == "--steps" || a == "--seed") {
        (a == "--steps" ? steps : seed) = parse_int(a, argv[++i], a == "--steps" ? 1 : 0);
      } else if (a == "--help" || a == "-h") {
        std::printf("usage: vgg_demo [--steps N] [--seed S]\n"
                    "Trains a 4-64-1 tanh MLP on y = sin(2x0)cos(x1) + x2^2/2 - 0.3x3 with SGD + momentum.\n");
        return 0;
      } else {
        std::fprintf(stderr, "vgg_demo: unknown argument '%s' (see --help)\n", a.c_str());
        return 2;
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vgg_demo: %s\n", e.what());
    return 2;
  }
  try {
    Generator gen(static_cast<uint64_t>(seed));
    const int64_t in = 4, hidden = 64, batch = 256;
    Tensor w1 = randn({in, hidden}, {}, &gen) * (1.0 / std::sqrt(double(in)));
    Tensor b1 = zeros({hidden});
    Tensor w2 = randn({hidden, 1}, {}, &gen) * (1.0 / std::sqrt(double(hidden)));
    Tensor b2 = zeros({1});
    std::vector<Tensor> params = {w1, b1, w2, b2};
    std::vector<Tensor> velocity;
    for (auto& p : params) {
      p.requires_grad_(true);
      velocity.push_back(zeros_like(p));
    }
    Tensor xtest = uniform({1024, in}, -1.5, 1.5, {}, &gen);
    Tensor ytest = target(xtest);
    const double lr = 0.05, momentum = 0.9;
    auto t0 = std::chrono::steady_clock::now();
    std::printf("vgg_demo: 2-layer MLP (%lld -> %lld -> 1), batch %lld, SGD lr %.2f momentum %.1f\n",
                (long long)in, (long long)hidden, (long long)batch, lr, momentum);
    double first = 0, last = 0;
    for (int64_t step = 0; step <= steps; ++step) {
      Tensor x = uniform({batch, in}, -1.5, 1.5, {}, &gen);
      Tensor y = target(x);
      Tensor pred = ops::matmul(ops::tanh(ops::matmul(x, w1) + b1), w2) + b2;
      Tensor loss = ops::mean(ops::square(pred - y));
      for (auto& p : params) p.set_grad(Tensor());
      backward(loss);
      {
        NoGradGuard ng;
        for (size_t i = 0; i < params.size(); ++i) {
          ops::mul_(velocity[i], momentum);
          ops::add_(velocity[i], params[i].grad());
          ops::add_(params[i], velocity[i], -lr);
        }
      }
      if (step % 50 == 0 || step == steps) {
        NoGradGuard ng;
        Tensor tp = ops::matmul(ops::tanh(ops::matmul(xtest, w1) + b1), w2) + b2;
        double test = ops::mean(ops::square(tp - ytest)).item();
        if (step == 0) first = test;
        last = test;
        std::printf("step %5lld  train loss %.5f  test loss %.5f\n", (long long)step, loss.item(), test);
      }
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("test loss %.5f -> %.5f (%.1fx lower) in %.2f s\n", first, last, first / last, secs);
    return last < first ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vgg_demo: %s\n", e.what());
    return 1;
  }
}
