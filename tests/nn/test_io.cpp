// Files: model weights, LoRA adapters (PEFT names) and optimizer state through safetensors,
// each round trip bit-exact, and bad files rejected without touching the model.
#include <cstring>
#include <filesystem>

#include "autograd/engine.h"
#include "nn/io.h"
#include "nn/mmdit.h"
#include "nn/optim.h"
#include "tensor/safetensors.h"
#include "tests/nn/hashed.h"
#include "tests/support/test_support.h"

namespace vgg::test {
namespace {

namespace fs = std::filesystem;

class NnFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("vgg_nn_io_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& f) const { return (dir_ / f).string(); }
  fs::path dir_;
};

bool bit_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ca = contiguous_raw(a), cb = contiguous_raw(b);
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), static_cast<size_t>(a.numel()) * itemsize(a.dtype())) == 0;
}

std::shared_ptr<nn::MMDiT> model(DType dt, const char* cfg = "tiny-sd35m") {
  auto m = std::make_shared<nn::MMDiT>(nn::MMDiTConfig::named(cfg), nn::LayerOptions{dt});
  fill_hashed_parameters(*m);
  return m;
}

Tensor run(nn::MMDiT& m) {
  DType dt = m.param_dtype();
  NoGradGuard ng;
  return m.forward(hashed("x", {2, 1, 10, 14}, 1, 0, dt), full({2}, 250.0, opts(dt)), hashed("c", {2, 3, 64}, 1, 0, dt),
                   hashed("y", {2, 64}, 1, 0, dt));
}

TEST_F(NnFiles, WeightsRoundTripBitExactly) {
  for (DType dt : {DType::F32, DType::F64}) {
    auto a = model(dt);
    nn::save_weights(path("w.safetensors"), *a, {{"config", a->config().to_json()}});
    nn::MMDiT b(nn::MMDiTConfig::named("tiny-sd35m"), nn::LayerOptions{dt});
    auto meta = nn::load_weights(path("w.safetensors"), b);
    EXPECT_EQ(meta["config"], a->config().to_json());
    auto sa = a->state_dict(), sb = b.state_dict();
    ASSERT_EQ(sa.size(), sb.size());
    for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(bit_equal(sa[i].second, sb[i].second)) << sa[i].first;
    EXPECT_TRUE(bit_equal(run(*a), run(b)));
  }
  // f32 file into an f64 model: converted on load
  auto a = model(DType::F32);
  nn::save_weights(path("w32.safetensors"), *a);
  nn::MMDiT c(nn::MMDiTConfig::named("tiny-sd35m"), nn::LayerOptions{DType::F64});
  nn::load_weights(path("w32.safetensors"), c);
  EXPECT_TRUE(all_close(run(c), run(*a), 1e-5, 1e-5));
}

TEST_F(NnFiles, WrongModelIsRejectedAndLeftUntouched) {
  auto a = model(DType::F32, "tiny");
  nn::save_weights(path("tiny.safetensors"), *a);
  auto b = model(DType::F32, "tiny-sd35m");
  Tensor before = run(*b);
  EXPECT_TRUE(throws_error([&] { nn::load_weights(path("tiny.safetensors"), *b); },
                           {"tiny.safetensors", "norm1.linear.weight' has shape [768, 128]", "[1152, 128]"}));
  EXPECT_TRUE(bit_equal(run(*b), before));
  EXPECT_TRUE(throws_error([&] { nn::load_weights(path("absent.safetensors"), *b); }, {"absent.safetensors"}));
}

TEST_F(NnFiles, LoraFileInPeftFormat) {
  auto a = model(DType::F32);
  nn::LoRAConfig cfg;
  cfg.rank = 8;
  cfg.alpha = 16;
  cfg.targets = nn::sd3_training_script_targets();
  nn::attach_lora(*a, cfg);
  for (auto& [n, t] : a->adapter_parameters()) {
    NoGradGuard ng;
    copy_into(t, hashed(n, t.shape(), 0.1, 0, DType::F32));
  }
  nn::save_lora(path("lora.safetensors"), *a);
  auto hdr = read_safetensors_header(path("lora.safetensors"));
  ASSERT_EQ(hdr.size(), 62u);  // 31 modules × (A, B)
  bool seen = false;
  for (const auto& h : hdr)
    if (h.name == "transformer.transformer_blocks.3.attn.add_k_proj.lora_B.weight") {
      seen = true;
      EXPECT_EQ(h.shape, (Shape{128, 8}));
      EXPECT_EQ(h.dtype, "F32");
    }
  EXPECT_TRUE(seen);

  auto b = model(DType::F32);
  nn::attach_lora(*b, cfg);
  nn::load_lora(path("lora.safetensors"), *b);
  EXPECT_TRUE(bit_equal(run(*a), run(*b)));
  // a model whose adapters have another alpha refuses the file; one without adapters too
  auto c = model(DType::F32);
  cfg.alpha = 8;
  nn::attach_lora(*c, cfg);
  EXPECT_TRUE(throws_error([&] { nn::load_lora(path("lora.safetensors"), *c); }, {"lora_alpha is 16"}));
  auto d = model(DType::F32);
  EXPECT_TRUE(throws_error([&] { nn::load_lora(path("lora.safetensors"), *d); }, {"carries no adapters"}));
  // metadata that is not a number is one line naming the file and the key (it was a bare "stod")
  {
    auto st = load_safetensors(path("lora.safetensors"));
    for (const char* bad : {"abc", "16x", ""}) {
      auto meta = st.metadata;
      meta["lora_alpha"] = bad;
      save_safetensors(path("lora_bad.safetensors"), st.tensors, meta);
      auto m = model(DType::F32);
      cfg.alpha = 16;
      nn::attach_lora(*m, cfg);
      EXPECT_TRUE(throws_error([&] { nn::load_lora(path("lora_bad.safetensors"), *m); },
                               {"lora_bad.safetensors", "metadata lora_alpha", "not a number"}))
          << bad;
      auto m2 = model(DType::F32);
      EXPECT_TRUE(throws_error([&] { nn::attach_lora_file(path("lora_bad.safetensors"), *m2); },
                               {"lora_bad.safetensors", "lora_alpha", "not a number"}))
          << bad;
    }
    cfg.alpha = 8;
  }
  // attach_lora_file rebuilds the adapters from the file alone: paths, rank 8 and alpha 16
  auto e = model(DType::F32);
  EXPECT_EQ(nn::attach_lora_file(path("lora.safetensors"), *e).size(), 31u);
  EXPECT_TRUE(bit_equal(run(*a), run(*e)));
  EXPECT_TRUE(throws_error([&] { nn::attach_lora_file(path("lora.safetensors"), *e); }, {"already carries adapters"}));
  nn::save_weights(path("weights.safetensors"), *d);
  auto f = model(DType::F32);
  EXPECT_TRUE(throws_error([&] { nn::attach_lora_file(path("weights.safetensors"), *f); },
                           {"weights.safetensors", "no 'transformer.<module>.lora_A.weight'"}));
}

TEST_F(NnFiles, OptimizerStateThroughAFileResumesBitExactly) {
  // LoRA fine-tuning of the tiny model: 3 steps, save (adapters + AdamW state), 2 more steps;
  // a fresh process-like restart from the files must reach bit-identical adapters.
  auto make = [](std::shared_ptr<nn::MMDiT>& m, std::unique_ptr<nn::AdamW>& opt) {
    m = model(DType::F32, "tiny");
    nn::attach_lora(*m, {});
    nn::ParamGroup g;
    g.name = "lora";
    for (auto& [n, t] : m->adapter_parameters()) g.params.push_back(t), g.param_names.push_back(n);
    g.lr = 1e-3;
    g.max_grad_norm = 0.5;
    opt = std::make_unique<nn::AdamW>(std::vector<nn::ParamGroup>{g});
  };
  auto step = [](nn::MMDiT& m, nn::AdamW& opt, int k) {
    Tensor x = hashed("x" + std::to_string(k), {2, 1, 8, 8}, 1, 0, DType::F32);
    Tensor out = m.forward(x, full({2}, 100.0 * k + 50), hashed("c", {2, 3, 64}, 1, 0, DType::F32),
                           hashed("y", {2, 64}, 1, 0, DType::F32));
    opt.zero_grad();
    backward(ops::mean(ops::square(ops::sub(out, x))));
    opt.step();
  };
  std::shared_ptr<nn::MMDiT> a, b;
  std::unique_ptr<nn::AdamW> oa, ob;
  make(a, oa);
  for (int k = 0; k < 3; ++k) step(*a, *oa, k);
  nn::save_lora(path("lora.safetensors"), *a);
  nn::save_tensors(path("opt.safetensors"), oa->state_dict(), {{"step", "3"}});
  for (int k = 3; k < 5; ++k) step(*a, *oa, k);

  make(b, ob);
  nn::load_lora(path("lora.safetensors"), *b);
  std::map<std::string, std::string> meta;
  ob->load_state_dict(nn::load_tensors(path("opt.safetensors"), &meta));
  EXPECT_EQ(meta["step"], "3");
  for (int k = 3; k < 5; ++k) step(*b, *ob, k);
  auto la = a->adapter_parameters(), lb = b->adapter_parameters();
  ASSERT_EQ(la.size(), lb.size());
  double moved = 0;
  for (size_t i = 0; i < la.size(); ++i) {
    EXPECT_TRUE(bit_equal(la[i].second, lb[i].second)) << la[i].first;
    moved += ops::sum(ops::abs(la[i].second)).item();
  }
  EXPECT_GT(moved, 0.0);
}

}  // namespace
}  // namespace vgg::test
