// nn core: module registry, state dicts and their errors, layers against the ops they compose,
// initialisers, and LoRA (identity at init, gradients, enable/disable, merge, save/load).
#include <cmath>
#include <set>

#include "autograd/engine.h"
#include "nn/lora.h"
#include "nn/mmdit.h"
#include "tests/nn/hashed.h"
#include "tests/support/test_support.h"

namespace vgg::test {
namespace {

class Tiny : public nn::Module {
 public:
  Tiny() : fc(std::make_shared<nn::Linear>(4, 3, true, nn::LayerOptions{DType::F64})),
           norm(std::make_shared<nn::LayerNorm>(3, 1e-5, true, nn::LayerOptions{DType::F64})) {
    register_module("fc", fc);
    register_module("norm", norm);
    stats = zeros({3}, opts(DType::F64));
    register_buffer("stats", stats);
    scratch = zeros({2}, opts(DType::F64));
    register_buffer("scratch", scratch, /*persistent=*/false);
  }
  std::string type_name() const override { return "Tiny"; }
  std::shared_ptr<nn::Linear> fc;
  std::shared_ptr<nn::LayerNorm> norm;
  Tensor stats, scratch;
};

TEST(Module, NamesAndStateDict) {
  Tiny m;
  std::vector<std::string> names;
  for (auto& [n, t] : m.named_parameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"fc.weight", "fc.bias", "norm.weight", "norm.bias"}));
  std::vector<std::string> sd;
  for (auto& [n, t] : m.state_dict()) sd.push_back(n);
  EXPECT_EQ(sd, (std::vector<std::string>{"fc.weight", "fc.bias", "norm.weight", "norm.bias", "stats"}));
  EXPECT_EQ(m.num_parameters(), 12 + 3 + 3 + 3);
  EXPECT_EQ(m.find_module("fc"), m.fc.get());
  EXPECT_EQ(m.find_module("nope"), nullptr);
}

TEST(Module, LoadStateDictCopiesAndChecks) {
  Tiny a, b;
  fill_hashed_parameters(a);
  a.stats.set({1}, 5.0);
  b.load_state_dict(a.state_dict());
  for (auto& [n, t] : a.state_dict()) {
    Tensor other;
    for (auto& [n2, t2] : b.state_dict())
      if (n2 == n) other = t2;
    EXPECT_TRUE(all_close(other, t, 0, 0)) << n;
    EXPECT_FALSE(other.same_impl(t)) << n << " must be copied, not shared";
  }
  EXPECT_TRUE(b.fc->weight.requires_grad());

  auto sd = a.state_dict();
  Tensor before = clone_raw(b.fc->weight);
  auto missing = sd;
  missing.erase(missing.begin() + 1);
  missing[0].second = ops::mul(missing[0].second, 2.0);
  EXPECT_TRUE(throws_error([&] { b.load_state_dict(missing); }, {"1 missing key(s): fc.bias"}));
  EXPECT_TRUE(all_close(b.fc->weight, before, 0, 0)) << "a failed load modified the model";
  b.load_state_dict(missing, /*strict=*/false);  // non-strict: loads what is there
  EXPECT_TRUE(all_close(b.fc->weight, ops::mul(before, 2.0), 0, 0));

  auto extra = sd;
  extra.emplace_back("fc.gamma", zeros({3}, opts(DType::F64)));
  EXPECT_TRUE(throws_error([&] { b.load_state_dict(extra); }, {"1 unexpected key(s): fc.gamma"}));
  auto wrong = sd;
  wrong[0].second = zeros({4, 3}, opts(DType::F64));
  EXPECT_TRUE(throws_error([&] { b.load_state_dict(wrong, false); }, {"'fc.weight' has shape [4, 3]", "[3, 4]"}));
  auto twice = sd;
  twice.push_back(sd[0]);
  EXPECT_TRUE(throws_error([&] { b.load_state_dict(twice); }, {"given twice"}));
  // dtype converts on load
  auto f32 = sd;
  for (auto& [n, t] : f32) t = cast_raw(t, DType::F32);
  b.load_state_dict(f32);
  EXPECT_EQ(b.fc->weight.dtype(), DType::F64);
}

TEST(Module, ToDtypeKeepsLeavesAndFlags) {
  Tiny m;
  m.norm->bias.requires_grad_(false);
  m.to(DType::F32);
  for (auto& [n, t] : m.named_parameters()) {
    EXPECT_EQ(t.dtype(), DType::F32) << n;
    EXPECT_TRUE(t.is_leaf()) << n;
  }
  EXPECT_TRUE(m.fc->weight.requires_grad());
  EXPECT_FALSE(m.norm->bias.requires_grad());
  EXPECT_EQ(m.stats.dtype(), DType::F32);
  EXPECT_TRUE(throws_error([&] { m.to(DType::I64); }, {"floating"}));
}

TEST(Layers, LinearIsMatmulPlusBias) {
  nn::Linear l(5, 3, true, {DType::F64});
  Tensor x = rnd({2, 4, 5}, 1);
  Tensor ref = ops::add(ops::matmul(x, ops::transpose(l.weight, 0, 1)), l.bias);
  EXPECT_TRUE(all_close(l.forward(x), ref, 1e-14, 1e-14));
  EXPECT_TRUE(throws_error([&] { l.forward(rnd({2, 4}, 1)); }, {"Linear(5 -> 3)", "must end in 5"}));
  EXPECT_TRUE(throws_error([&] { l.forward(rnd({2, 5}, 1, DType::F32)); }, {"input is f32", "the layer computes in f64"}));
  // default init: kaiming_uniform(a=√5) → U(±1/√in), bias U(±1/√in)
  nn::Linear big(400, 300, true, {DType::F64});
  const double b = 1.0 / std::sqrt(400.0);
  double mx = 0, sum2 = 0;
  for (double v : big.weight.to_vector()) mx = std::max(mx, std::abs(v)), sum2 += v * v;
  EXPECT_LE(mx, b);
  EXPECT_NEAR(sum2 / 120000.0, b * b / 3.0, 0.05 * b * b / 3.0);
}

TEST(Layers, FeedForwardNamesAndMath) {
  nn::FeedForward ff(6, 4, {DType::F64});
  std::vector<std::string> names;
  for (auto& [n, t] : ff.named_parameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"net.0.proj.weight", "net.0.proj.bias", "net.2.weight", "net.2.bias"}));
  Tensor x = rnd({3, 6}, 2);
  Tensor ref = ff.net2->forward(ops::gelu(ff.net0->proj->forward(x), true));
  EXPECT_TRUE(all_close(ff.forward(x), ref, 0, 0));
}

TEST(Layers, NormsEmbeddingConv) {
  nn::RMSNorm r(4, 1e-6, true, {DType::F64});
  r.weight.set({2}, 3.0);
  Tensor x = rnd({2, 4}, 3);
  Tensor want = ops::mul(ops::div(x, ops::sqrt(ops::add(ops::mean(ops::square(x), {-1}, true), 1e-6))), r.weight);
  EXPECT_TRUE(all_close(r.forward(x), want, 1e-14, 1e-14));
  nn::LayerNorm plain(4, 1e-6, false);
  EXPECT_EQ(plain.num_parameters(), 0);
  nn::Embedding e(10, 3, {DType::F64});
  Tensor idx = from_vector(std::vector<int64_t>{3, 3, 9}, {3});
  Tensor out = e.forward(idx);
  EXPECT_TRUE(all_close(ops::narrow(out, 0, 2, 1), ops::narrow(e.weight, 0, 9, 1), 0, 0));
  nn::Conv2d c(2, 5, 3, 1, 1, true, {DType::F64});
  EXPECT_EQ(c.forward(rnd({1, 2, 7, 6}, 4)).shape(), (Shape{1, 5, 7, 6}));
}

TEST(Layers, InitialisersHaveTheirMoments) {
  Generator g(11);
  Tensor w = zeros({200, 300}, opts(DType::F64));
  nn::xavier_uniform_(w, 1.0, &g);
  double s2 = 0;
  for (double v : w.to_vector()) s2 += v * v;
  EXPECT_NEAR(s2 / 60000.0, 2.0 / 500.0, 0.05 * 2.0 / 500.0);
  nn::kaiming_normal_(w, 0.0, &g);
  s2 = 0;
  for (double v : w.to_vector()) s2 += v * v;
  EXPECT_NEAR(s2 / 60000.0, 2.0 / 300.0, 0.05 * 2.0 / 300.0);
  nn::zeros_(w);
  EXPECT_EQ(ops::sum(ops::abs(w)).item(), 0.0);
  EXPECT_TRUE(throws_error([&] { Tensor v = zeros({3}); nn::xavier_uniform_(v); }, {"at least 2 dims"}));
}

// ---- LoRA ----------------------------------------------------------------------------------
std::shared_ptr<nn::MMDiT> tiny_model() {
  auto m = std::make_shared<nn::MMDiT>(nn::MMDiTConfig::named("tiny"), nn::LayerOptions{DType::F64});
  fill_hashed_parameters(*m);
  return m;
}

struct In {
  Tensor x, t, c, y;
};
In tiny_inputs() {
  return {hashed("x", {2, 1, 12, 10}), from_vector(std::vector<double>{640.0, 75.5}, {2}, opts(DType::F64)),
          hashed("c", {2, 5, 64}), hashed("y", {2, 64})};
}

TEST(LoRA, AttachesToTheDefaultAndTrainingScriptTargets) {
  auto m = tiny_model();
  auto paths = nn::attach_lora(*m, {});
  EXPECT_EQ(paths.size(), 16u);  // to_q, to_k, to_v, to_out.0 of 4 blocks
  EXPECT_EQ(paths[0], "transformer_blocks.0.attn.to_q");
  auto m2 = tiny_model();
  nn::LoRAConfig cfg;
  cfg.targets = nn::sd3_training_script_targets();
  EXPECT_EQ(nn::attach_lora(*m2, cfg).size(), 31u);  // 3 blocks × 8 + the last block's 7
  EXPECT_TRUE(throws_error([&] { nn::attach_lora(*m2, cfg); }, {"already carries an adapter"}));
  auto m3 = tiny_model();
  cfg.targets = {"attn.to_qq"};
  EXPECT_TRUE(throws_error([&] { nn::attach_lora(*m3, cfg); }, {"no module", "matches the targets"}));
  cfg.targets = {"ff.net.0"};
  EXPECT_TRUE(throws_error([&] { nn::attach_lora(*m3, cfg); }, {"is a GELUProj, not a Linear"}));
  // adapters are trainable, the wrapped base is frozen, and the state dict is unchanged
  auto trainable = m->named_parameters(true);
  int64_t lora = 0;
  for (auto& [n, t] : trainable) lora += n.find(".lora_") != std::string::npos;
  EXPECT_EQ(lora, 32);
  EXPECT_EQ(m->state_dict().size(), tiny_model()->state_dict().size());
  EXPECT_FALSE(dynamic_cast<nn::Linear*>(m->find_module("transformer_blocks.0.attn.to_q"))->weight.requires_grad());
  EXPECT_EQ(m->adapter_parameters().size(), 32u);
  // A ~ N(0, 1/r²): rank 4 → std 0.25
  auto* l = dynamic_cast<nn::LoRALinear*>(m->find_module("transformer_blocks.1.attn.to_v"));
  ASSERT_NE(l, nullptr);
  double s2 = 0;
  for (double v : l->lora_A.to_vector()) s2 += v * v;
  EXPECT_NEAR(std::sqrt(s2 / 512.0), 0.25, 0.03);
  EXPECT_EQ(ops::sum(ops::abs(l->lora_B)).item(), 0.0);
}

TEST(LoRA, AtInitTheModelIsTheBaseAndOnlyBGetsGradient) {
  auto base = tiny_model();
  auto m = tiny_model();
  nn::LoRAConfig cfg;
  cfg.targets = nn::sd3_training_script_targets();
  nn::attach_lora(*m, cfg);
  In in = tiny_inputs();
  Tensor ref;
  {
    NoGradGuard ng;
    ref = base->forward(in.x, in.t, in.c, in.y);
  }
  Tensor out = m->forward(in.x, in.t, in.c, in.y);
  EXPECT_TRUE(all_close(out, ref, 0, 0)) << "LoRA at init must leave the output unchanged";
  auto ad = m->adapter_parameters();
  std::vector<Tensor> ps;
  for (auto& [n, t] : ad) ps.push_back(t);
  auto g = grad({ops::sum(ops::mul(out, hashed("w", out.shape())))}, ps, {}, false, /*allow_unused=*/true);
  double a_norm = 0, b_norm = 0;
  int64_t unused = 0;
  for (size_t i = 0; i < ad.size(); ++i) {
    if (!g[i].defined()) {  // only the last block's add_q_proj (its text output is discarded)
      EXPECT_NE(ad[i].first.find("transformer_blocks.3.attn.add_q_proj"), std::string::npos) << ad[i].first;
      ++unused;
      continue;
    }
    double n2 = ops::sum(ops::square(g[i])).item();
    (ad[i].first.find("lora_A") != std::string::npos ? a_norm : b_norm) += n2;
  }
  EXPECT_EQ(unused, 2);
  EXPECT_EQ(a_norm, 0.0) << "dL/dA must be exactly 0 while B = 0";
  EXPECT_GT(b_norm, 1e-6) << "dL/dB must be non-zero";
}

TEST(LoRA, EnableDisableMergeUnmerge) {
  auto m = tiny_model();
  auto base = tiny_model();
  nn::attach_lora(*m, {});
  for (auto& [n, t] : m->adapter_parameters())
    if (n.find("lora_B") != std::string::npos) {
      NoGradGuard ng;
      copy_into(t, hashed(n, t.shape(), 0.05));
    }
  In in = tiny_inputs();
  NoGradGuard ng;
  Tensor ref = base->forward(in.x, in.t, in.c, in.y);
  Tensor on = m->forward(in.x, in.t, in.c, in.y);
  EXPECT_GT(ops::amax(ops::abs(ops::sub(on, ref))).item(), 1e-4) << "a non-zero B must change the output";
  nn::set_lora_enabled(*m, false);
  EXPECT_TRUE(all_close(m->forward(in.x, in.t, in.c, in.y), ref, 0, 0)) << "disabled adapters = the base model";
  nn::set_lora_enabled(*m, true);
  Tensor w0 = clone_raw(dynamic_cast<nn::Linear*>(m->find_module("transformer_blocks.2.attn.to_k"))->weight);
  nn::merge_lora(*m);
  EXPECT_TRUE(all_close(m->forward(in.x, in.t, in.c, in.y), on, 1e-11, 1e-11)) << "merged = unmerged";
  nn::unmerge_lora(*m);
  EXPECT_TRUE(all_close(dynamic_cast<nn::Linear*>(m->find_module("transformer_blocks.2.attn.to_k"))->weight, w0, 1e-15,
                        1e-15));
  EXPECT_TRUE(all_close(m->forward(in.x, in.t, in.c, in.y), on, 1e-11, 1e-11));
}

TEST(LoRA, FusedPathEqualsTheExplicitComposition) {
  // y = x Wᵀ + b + (α/r)(x Aᵀ) Bᵀ with α ≠ r
  nn::Linear base(6, 5, true, {DType::F64});
  Generator g(3);
  nn::LoRALinear l(base, 2, 3.0, &g);
  {
    NoGradGuard ng;
    copy_into(l.lora_B, hashed("B", {5, 2}));
  }
  Tensor x = rnd({4, 6}, 5);
  Tensor want = ops::add(base.forward(x), ops::mul(ops::matmul(ops::matmul(x, ops::transpose(l.lora_A, 0, 1)),
                                                               ops::transpose(l.lora_B, 0, 1)),
                                                   1.5));
  EXPECT_TRUE(all_close(l.forward(x), want, 1e-14, 1e-14));
  EXPECT_DOUBLE_EQ(l.scaling(), 1.5);
  EXPECT_TRUE(throws_error([&] { nn::LoRALinear bad(base, 6, 1.0, &g); }, {"rank 6 must be in [1, 5]"}));
  // gradients of A and B through the adapter path
  auto fn = [&](const std::vector<Tensor>& ins) {
    Tensor low = ops::matmul(x, ops::transpose(ins[0], 0, 1));
    return ops::mul(ops::matmul(low, ops::transpose(ins[1], 0, 1)), 1.5);
  };
  EXPECT_GRADCHECK(gradcheck(fn, {clone_raw(l.lora_A).requires_grad_(true), clone_raw(l.lora_B).requires_grad_(true)}));
}

TEST(LoRA, StateDictRoundTripInPeftNames) {
  auto m = tiny_model();
  nn::LoRAConfig cfg;
  cfg.seed = 5;
  nn::attach_lora(*m, cfg);
  for (auto& [n, t] : m->adapter_parameters()) {
    NoGradGuard ng;
    copy_into(t, hashed(n, t.shape()));
  }
  auto sd = nn::lora_state_dict(*m);
  ASSERT_EQ(sd.size(), 32u);
  EXPECT_EQ(sd[0].first, "transformer.transformer_blocks.0.attn.to_q.lora_A.weight");
  EXPECT_EQ(sd[0].second.shape(), (Shape{4, 128}));
  EXPECT_EQ(sd[1].first, "transformer.transformer_blocks.0.attn.to_q.lora_B.weight");
  EXPECT_EQ(sd[1].second.shape(), (Shape{128, 4}));
  auto meta = nn::lora_metadata(*m);
  EXPECT_EQ(meta["lora_rank"], "4");
  auto m2 = tiny_model();
  nn::attach_lora(*m2, {});
  nn::load_lora_state_dict(*m2, sd);
  In in = tiny_inputs();
  NoGradGuard ng;
  EXPECT_TRUE(all_close(m2->forward(in.x, in.t, in.c, in.y), m->forward(in.x, in.t, in.c, in.y), 0, 0));
  auto bad = sd;
  bad.pop_back();
  EXPECT_TRUE(throws_error([&] { nn::load_lora_state_dict(*m2, bad); }, {"missing key", "lora_B"}));
  bad = sd;
  bad[0].second = zeros({8, 128}, opts(DType::F64));
  EXPECT_TRUE(throws_error([&] { nn::load_lora_state_dict(*m2, bad); }, {"shape [8, 128]", "[4, 128]"}));
  bad = sd;
  bad[0].first = "transformer.nope.lora_A.weight";
  EXPECT_TRUE(throws_error([&] { nn::load_lora_state_dict(*m2, bad); }, {"unexpected key 'transformer.nope"}));
}

}  // namespace
}  // namespace vgg::test
