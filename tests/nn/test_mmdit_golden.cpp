// MMDiT parity against the float64 reference tools/golden/mmdit_ref.py (written from the
// specification; torch only as an f64 autograd calculator). Weights and inputs are hashed
// tensors (tests/nn/hashed.h) that both sides compute bit for bit, so only outputs, input
// gradients and fingerprints of every parameter gradient and traced stage are stored.
//
// Tolerances: f64 engine vs reference 1e-9 relative (summation order only); f32 engine
// forward max |Δ| <= 1e-5 · std(reference output).
#include <cmath>
#include <fstream>
#include <sstream>

#include "autograd/engine.h"
#include "nn/mmdit.h"
#include "tensor/npy.h"
#include "tests/nn/hashed.h"
#include "tests/support/test_support.h"

namespace vgg::test {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Shape parse_dims(const std::string& s) {
  Shape out;
  std::istringstream is(s);
  std::string tok;
  while (std::getline(is, tok, 'x')) out.push_back(std::stoll(tok));
  return out;
}

struct Case {
  nn::MMDiTConfig cfg;
  Shape xshape;
  std::vector<double> ts;
  int64_t nt = 0;
  std::vector<std::pair<std::string, Shape>> params;
  std::vector<std::string> trace_names;
};

Case load_case(const std::string& name) {
  const std::string d = data_path("mmdit/" + name + "/");
  Case c;
  c.cfg = nn::MMDiTConfig::from_json(read_file(d + "config.json"));
  std::istringstream cs(read_file(d + "case.txt"));
  std::string line;
  while (std::getline(cs, line)) {
    std::istringstream ls(line);
    std::string key;
    ls >> key;
    if (key == "x") {
      std::string dims;
      ls >> dims;
      c.xshape = parse_dims(dims);
    } else if (key == "timesteps") {
      double v;
      while (ls >> v) c.ts.push_back(v);
    } else if (key == "nt") {
      ls >> c.nt;
    }
  }
  std::istringstream ps(read_file(d + "params.txt"));
  while (std::getline(ps, line)) {
    std::istringstream ls(line);
    std::string n, dims;
    ls >> n >> dims;
    c.params.emplace_back(n, parse_dims(dims));
  }
  std::istringstream ts(read_file(d + "trace.txt"));
  while (std::getline(ts, line)) c.trace_names.push_back(line);
  return c;
}

std::vector<double> fingerprint(const std::string& name, const Tensor& t) {
  Tensor v = cast_raw(contiguous_raw(t.detach()), DType::F64);
  Tensor probe = hashed("probe." + name, v.shape());
  const double* a = v.data<double>();
  const double* p = probe.data<double>();
  double s = 0, s2 = 0, sp = 0;
  for (int64_t i = 0; i < v.numel(); ++i) s += a[i], s2 += a[i] * a[i], sp += a[i] * p[i];
  return {s, s2, sp};
}

bool close(double a, double b, double rel, double scale) { return std::abs(a - b) <= rel * (std::abs(b) + scale); }

class GoldenMMDiT : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenMMDiT, ForwardAndGradientsMatchTheF64Reference) {
  Case c = load_case(GetParam());
  const std::string d = data_path("mmdit/" + GetParam() + "/");
  nn::MMDiT model(c.cfg, {DType::F64});
  // names, order and shapes of the state dict equal the reference's diffusers list
  auto sd = model.state_dict();
  ASSERT_EQ(sd.size(), c.params.size());
  std::map<std::string, Shape> ours;
  for (auto& [n, t] : sd) ours[n] = t.shape();
  for (auto& [n, s] : c.params) {
    ASSERT_TRUE(ours.count(n)) << "the engine has no tensor named " << n;
    EXPECT_EQ(ours[n], s) << n;
  }
  fill_hashed_parameters(model);

  const int64_t B = c.xshape[0];
  Tensor x = hashed("input.x", c.xshape).requires_grad_(true);
  Tensor ctx = hashed("input.context", {B, c.nt, c.cfg.joint_attention_dim}).requires_grad_(true);
  Tensor pooled = hashed("input.pooled", {B, c.cfg.pooled_projection_dim}).requires_grad_(true);
  Tensor t = from_vector(c.ts, {B}, opts(DType::F64));

  std::vector<std::pair<std::string, std::vector<double>>> traces;
  Tensor out = model.forward(x, t, ctx, pooled,
                             [&](const std::string& n, const Tensor& v) { traces.emplace_back(n, fingerprint(n, v)); });

  // stage fingerprints: name the first stage that diverges
  Tensor tr = load_npy(d + "trace.npy");
  ASSERT_EQ(traces.size(), c.trace_names.size());
  for (size_t i = 0; i < traces.size(); ++i) {
    ASSERT_EQ(traces[i].first, c.trace_names[i]);
    const double s2 = tr.at({static_cast<int64_t>(i), 1});
    for (int k = 0; k < 3; ++k) {
      const double ref = tr.at({static_cast<int64_t>(i), k});
      ASSERT_TRUE(close(traces[i].second[static_cast<size_t>(k)], ref, 1e-9, std::sqrt(s2)))
          << "first diverging stage: " << traces[i].first << " (fingerprint " << k << ": "
          << traces[i].second[static_cast<size_t>(k)] << " vs " << ref << ")";
    }
  }

  Tensor ref_out = load_npy(d + "out.npy");
  EXPECT_TRUE(all_close(out, ref_out, 1e-9, 1e-9));

  Tensor R = hashed("input.loss_weight", out.shape());
  auto params = model.named_parameters();
  std::vector<Tensor> inputs{x, ctx, pooled};
  for (auto& [n, p] : params) inputs.push_back(p);
  // the last block's add_q_proj feeds only the discarded text output: no gradient (zero)
  auto grads = grad({ops::sum(ops::mul(out, R))}, inputs, {}, false, /*allow_unused=*/true);
  for (size_t i = 0; i < grads.size(); ++i)
    if (!grads[i].defined()) grads[i] = zeros_like(inputs[i]);
  EXPECT_TRUE(all_close(grads[0], load_npy(d + "dx.npy"), 1e-9, 1e-9)) << "dL/dx";
  EXPECT_TRUE(all_close(grads[1], load_npy(d + "dcontext.npy"), 1e-9, 1e-9)) << "dL/dcontext";
  EXPECT_TRUE(all_close(grads[2], load_npy(d + "dpooled.npy"), 1e-9, 1e-9)) << "dL/dpooled";
  Tensor pg = load_npy(d + "pgrad.npy");
  ASSERT_EQ(pg.size(0), static_cast<int64_t>(params.size()));
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& name = params[i].first;
    ASSERT_EQ(name, c.params[i].first);
    auto fp = fingerprint(name, grads[i + 3]);
    const double ref_norm = pg.at({static_cast<int64_t>(i), 1});
    EXPECT_TRUE(close(std::sqrt(fp[1]), ref_norm, 1e-9, 1e-12)) << "|dL/d " << name << "| " << std::sqrt(fp[1])
                                                                 << " vs " << ref_norm;
    EXPECT_TRUE(close(fp[2], pg.at({static_cast<int64_t>(i), 0}), 1e-9, ref_norm))
        << "<dL/d " << name << ", probe> " << fp[2] << " vs " << pg.at({static_cast<int64_t>(i), 0});
  }

  // the f32 engine against the f64 reference
  model.to(DType::F32);
  NoGradGuard ng;
  Tensor out32 = model.forward(cast_raw(x, DType::F32), cast_raw(t, DType::F32), cast_raw(ctx, DType::F32),
                               cast_raw(pooled, DType::F32));
  std::vector<double> a = out32.to_vector(), r = ref_out.to_vector();
  double mean = 0, var = 0, maxd = 0;
  for (double v : r) mean += v;
  mean /= static_cast<double>(r.size());
  for (double v : r) var += (v - mean) * (v - mean);
  const double sd_ref = std::sqrt(var / static_cast<double>(r.size()));
  for (size_t i = 0; i < r.size(); ++i) maxd = std::max(maxd, std::abs(a[i] - r[i]));
  EXPECT_LE(maxd, 1e-5 * sd_ref) << "f32 forward: max |delta| " << maxd << ", output std " << sd_ref;
  RecordProperty("f32_max_abs_delta_over_std", std::to_string(maxd / sd_ref));
  std::cout << "[ f32 vs f64 ] " << GetParam() << ": max |delta| / std = " << maxd / sd_ref << "\n";
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenMMDiT, ::testing::Values("sd3_28x20", "sd3_32x32_t0", "sd35m_20x28"));

}  // namespace
}  // namespace vgg::test
