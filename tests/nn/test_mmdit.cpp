// MMDiT structure: parameter counts of every config against the specification, the timestep
// sinusoid and σ schedule test vectors, deferred construction, configs and input errors.
#include <cmath>
#include <set>

#include "autograd/engine.h"
#include "nn/mmdit.h"
#include "tensor/factory.h"
#include "tests/nn/hashed.h"
#include "tests/support/test_support.h"
#include "vggflow/schedule.h"

namespace vgg::test {
namespace {

struct CountCase {
  const char* name;
  int64_t params;         // learnable, spec §2.2 / §8.1
  int64_t pos_buffer;     // pos_embed.pos_embed elements
  int64_t file_tensors;   // tensors in a diffusers file (-1: not given by the spec)
};

TEST(MMDiTConfigs, ParameterCountsMatchTheSpecification) {
  const CountCase cases[] = {
      {"tiny", 2277124, 73728, -1},
      {"tiny-sd35m", 2509572, 73728, -1},
      {"tiny-sd35l", 2278148, 73728, -1},
      {"sd3-medium", 2028328000, 56623104, 683},
      {"sd3.5-medium", 2243171520, 226492416, 909},
      {"sd3.5-large", 8056627520, 89653248, 1227},
  };
  for (const auto& c : cases) {
    auto cfg = nn::MMDiTConfig::named(c.name);
    nn::LayerOptions o;
    o.deferred = true;  // no memory: placeholders only
    nn::MMDiT m(cfg, o);
    EXPECT_FALSE(m.materialized());
    EXPECT_EQ(m.num_parameters(), c.params) << c.name;
    EXPECT_EQ(cfg.expected_parameters(), c.params) << c.name;
    auto bufs = m.named_buffers();
    ASSERT_EQ(bufs.size(), 1u);
    EXPECT_EQ(bufs[0].first, "pos_embed.pos_embed");
    EXPECT_EQ(bufs[0].second.numel(), c.pos_buffer) << c.name;
    if (c.file_tensors > 0) EXPECT_EQ(static_cast<int64_t>(m.state_dict().size()), c.file_tensors) << c.name;
  }
  // SD3.5-medium block sizes from the spec: a dual block, a regular one and the last one
  nn::LayerOptions o;
  o.deferred = true;
  nn::MMDiT m(nn::MMDiTConfig::named("sd3.5-medium"), o);
  EXPECT_EQ(m.transformer_blocks[0]->num_parameters(), 101506944);
  EXPECT_EQ(m.transformer_blocks[20]->num_parameters(), 84980992);
  EXPECT_EQ(m.transformer_blocks[23]->num_parameters(), 54294784);
}

TEST(MMDiTConfigs, SmallIsAboutFourteenMillion) {
  auto cfg = nn::MMDiTConfig::named("small");
  EXPECT_GT(cfg.expected_parameters(), 13000000);
  EXPECT_LT(cfg.expected_parameters(), 15000000);
}

TEST(MMDiTConfigs, DiffusersNamesOfTheLastBlock) {
  nn::LayerOptions o;
  o.deferred = true;
  nn::MMDiT m(nn::MMDiTConfig::named("tiny-sd35m"), o);
  std::set<std::string> names;
  for (auto& [n, t] : m.state_dict()) names.insert(n);
  for (const char* n : {"transformer_blocks.3.attn.add_q_proj.weight", "transformer_blocks.3.attn.norm_added_k.weight",
                        "transformer_blocks.3.norm1_context.linear.weight", "transformer_blocks.0.attn2.to_out.0.bias",
                        "transformer_blocks.1.attn2.norm_q.weight", "transformer_blocks.2.ff_context.net.0.proj.weight",
                        "norm_out.linear.bias", "proj_out.weight", "pos_embed.proj.weight",
                        "time_text_embed.text_embedder.linear_2.bias", "context_embedder.weight"})
    EXPECT_TRUE(names.count(n)) << n;
  for (const char* n : {"transformer_blocks.3.attn.to_add_out.weight", "transformer_blocks.3.ff_context.net.2.weight",
                        "transformer_blocks.2.attn2.to_q.weight"})
    EXPECT_FALSE(names.count(n)) << n;
  auto shapes = m.state_dict();
  for (auto& [n, t] : shapes) {
    if (n == "transformer_blocks.3.norm1_context.linear.weight") EXPECT_EQ(t.shape(), (Shape{256, 128}));
    if (n == "transformer_blocks.0.norm1.linear.weight") EXPECT_EQ(t.shape(), (Shape{1152, 128}));
    if (n == "transformer_blocks.2.norm1.linear.weight") EXPECT_EQ(t.shape(), (Shape{768, 128}));
  }
}

TEST(MMDiTConfigs, JsonRoundTripAndErrors) {
  for (const auto& name : nn::MMDiTConfig::names()) {
    auto c = nn::MMDiTConfig::named(name);
    auto back = nn::MMDiTConfig::from_json(c.to_json());
    EXPECT_EQ(back.to_json(), c.to_json()) << name;
    EXPECT_EQ(back.expected_parameters(), c.expected_parameters()) << name;
  }
  EXPECT_TRUE(throws_error([] { nn::MMDiTConfig::from_json("{\"num_layers\": 4,"); }, {"invalid JSON"}));
  EXPECT_TRUE(throws_error([] { nn::MMDiTConfig::from_json("{\"num_layer\": 4}"); }, {"unknown key 'num_layer'"}));
  EXPECT_TRUE(throws_error([] { nn::MMDiTConfig::from_json("{\"num_layers\": \"4\"}"); }, {"'num_layers'", "integer"}));
  EXPECT_TRUE(throws_error([] { nn::MMDiTConfig::from_json("{\"caption_projection_dim\": 1152}"); },
                           {"caption_projection_dim (1152)", "128"}));
  EXPECT_TRUE(throws_error([] { nn::MMDiTConfig::from_json("{\"qk_norm\": \"layer_norm\"}"); }, {"qk_norm"}));
  EXPECT_TRUE(throws_error([] { nn::MMDiTConfig::from_json("{\"dual_attention_layers\": [3]}"); },
                           {"dual_attention_layers entry 3"}));
  EXPECT_TRUE(throws_error([] { nn::MMDiTConfig::named("sd4"); }, {"unknown MMDiT config 'sd4'", "sd3-medium"}));
  // diffusers files carry bookkeeping keys with a leading underscore
  auto c = nn::MMDiTConfig::from_json("{\"_class_name\": \"SD3Transformer2DModel\", \"num_layers\": 3}");
  EXPECT_EQ(c.num_layers, 3);
}

TEST(MMDiTEmbeddings, TimestepSinusoidMatchesTheSpecVectors) {
  // spec §9 (fp32): e[0], e[1], e[127], e[128], e[129], e[255] for t = 1000, 500, 8.928572
  const double want[3][6] = {{0.562379, 0.789627, 0.994232, 0.826880, 0.613588, 0.107254},
                             {-0.883849, 0.945946, 0.998557, -0.467772, 0.324325, 0.053705},
                             {-0.879395, -0.439191, 1.000000, 0.476093, 0.898394, 0.000959}};
  Tensor t = from_vector(std::vector<float>{1000.0f, 500.0f, 8.928572f}, {3}, opts(DType::F32));
  Tensor e = nn::timestep_sinusoid(t, 256, DType::F32, /*diffusers_f32=*/true);
  Tensor exact = nn::timestep_sinusoid(t, 256, DType::F32);  // f64 arithmetic, f32 result
  ASSERT_EQ(e.shape(), (Shape{3, 256}));
  const int64_t idx[6] = {0, 1, 127, 128, 129, 255};
  for (int64_t r = 0; r < 3; ++r)
    for (int k = 0; k < 6; ++k) {
      EXPECT_NEAR(e.at({r, idx[k]}), want[r][k], 2e-6) << "t row " << r << " e[" << idx[k] << "]";
      // f32 arguments t·ω are off by up to ~1000·2^-24 rad: that is the whole difference
      EXPECT_NEAR(exact.at({r, idx[k]}), want[r][k], 1e-4) << "t row " << r << " e[" << idx[k] << "]";
    }
  // frequencies ω_1 and ω_127 (fp32 values in the spec): e[128 + k] = sin(ω_k) at t = 1
  Tensor one = nn::timestep_sinusoid(from_vector(std::vector<double>{1.0}, {1}, opts(DType::F64)), 256, DType::F64);
  EXPECT_NEAR(std::asin(one.at({0, 129})), 0.93057203, 0.93057203 * 6e-8);
  EXPECT_NEAR(std::asin(one.at({0, 255})), 1.0746075e-4, 1.0746075e-4 * 6e-7);
}

TEST(MMDiTEmbeddings, PositionTableLayout) {
  // [1, M², D]: cell (I, J) = row I·M + J; first half encodes the column J, second half the row I
  const int64_t D = 8, M = 4, base = 2;
  Tensor p = nn::sincos_pos_table(D, M, base, DType::F64);
  ASSERT_EQ(p.shape(), (Shape{1, 16, 8}));
  const int64_t I = 1, J = 3;
  const double gx = J * 2.0 / 4.0, gy = I * 2.0 / 4.0;
  const double w1 = 1.0 / std::pow(10000.0, 0.5);
  EXPECT_DOUBLE_EQ(p.at({0, I * M + J, 0}), std::sin(gx));
  EXPECT_DOUBLE_EQ(p.at({0, I * M + J, 1}), std::sin(gx * w1));
  EXPECT_DOUBLE_EQ(p.at({0, I * M + J, 2}), std::cos(gx));
  EXPECT_DOUBLE_EQ(p.at({0, I * M + J, 4}), std::sin(gy));
  EXPECT_DOUBLE_EQ(p.at({0, I * M + J, 7}), std::cos(gy * w1));
}

TEST(FlowSchedule, TwentyStepTableEqualsTheDiffusersAlgorithm) {
  // python3 tools/golden/sigmas.py 20 (diffusers' arithmetic: f32 table, f64 linspace, f32 result)
  const float want[] = {1.0f,        0.981874585f, 0.962385654f, 0.941373229f, 0.918651521f, 0.894003034f, 0.867171943f,
                        0.837854743f, 0.805689275f, 0.770239174f, 0.730974317f, 0.687243879f, 0.638240099f, 0.582947969f,
                        0.520074129f, 0.447944283f, 0.364352196f, 0.266329706f, 0.149787232f, 0.00892857183f, 0.0f};
  auto s = flow::inference_schedule(20, 3.0);
  ASSERT_EQ(s.sigmas.size(), 21u);
  for (size_t i = 0; i < 21; ++i) EXPECT_FLOAT_EQ(s.sigmas[i], want[i]) << "sigma " << i;
}

TEST(FlowSchedule, ShiftValuesFromTheSpec) {
  EXPECT_NEAR(flow::shift_sigma(0.5, 3.0), 0.75, 1e-15);
  EXPECT_NEAR(flow::shift_sigma(0.001, 3.0), 0.0029940, 5e-8);
  EXPECT_NEAR(flow::shift_sigma(0.0029940119760479044, 3.0), 0.0089286, 5e-8);
  auto table = flow::training_sigmas(3.0);
  ASSERT_EQ(table.size(), 1000u);
  EXPECT_EQ(table[0], 1.0);
  EXPECT_NEAR(table[500], 0.75, 1e-7);
  EXPECT_NEAR(table[999], 0.0029940, 5e-8);
}

TEST(FlowSchedule, TwentyEightStepTableReproducesDiffusers) {
  const double want[] = {1.0,      0.987381, 0.974108, 0.960129, 0.945387, 0.929818, 0.913349, 0.895900,
                         0.877382, 0.857692, 0.836717, 0.814325, 0.790368, 0.764677, 0.737056, 0.707278,
                         0.675082, 0.640160, 0.602151, 0.560625, 0.515072, 0.464876, 0.409289, 0.347393,
                         0.278049, 0.199827, 0.110906, 0.008929, 0.0};
  auto s = flow::inference_schedule(28, 3.0);
  ASSERT_EQ(s.sigmas.size(), 29u);
  ASSERT_EQ(s.timesteps.size(), 28u);
  for (size_t i = 0; i < 29; ++i) EXPECT_NEAR(s.sigmas[i], want[i], 1e-6) << "sigma " << i;
  for (size_t i = 0; i < 28; ++i) EXPECT_FLOAT_EQ(s.timesteps[i], s.sigmas[i] * 1000.0f);
  auto four = flow::inference_schedule(4, 3.0);
  const double w4[] = {1.0, 0.857692, 0.602151, 0.008929, 0.0};
  for (size_t i = 0; i < 5; ++i) EXPECT_NEAR(four.sigmas[i], w4[i], 1e-6);
  EXPECT_TRUE(throws_error([] { flow::inference_schedule(0); }, {"steps must be positive"}));
}

// A tiny model with hashed weights, f64.
std::shared_ptr<nn::MMDiT> tiny(const char* name = "tiny") {
  auto m = std::make_shared<nn::MMDiT>(nn::MMDiTConfig::named(name), nn::LayerOptions{DType::F64});
  fill_hashed_parameters(*m);
  return m;
}

struct Inputs {
  Tensor x, t, c, y;
};
Inputs inputs(int64_t B, int64_t H, int64_t W, int64_t nt = 5, DType dt = DType::F64) {
  return {hashed("x", {B, 1, H, W}, 1, 0, dt), from_vector(std::vector<double>{700.0, 20.0, 3.0}, {3}, opts(dt)),
          hashed("c", {B, nt, 64}, 1, 0, dt), hashed("y", {B, 64}, 1, 0, dt)};
}

TEST(MMDiTForward, RejectsBadInputsWithOneLine) {
  auto m = tiny();
  auto in = inputs(3, 16, 12);
  EXPECT_EQ(m->forward(in.x, in.t, in.c, in.y).shape(), (Shape{3, 1, 16, 12}));
  auto bad = inputs(3, 15, 12);
  EXPECT_TRUE(throws_error([&] { m->forward(bad.x, in.t, in.c, in.y); }, {"multiples of the patch size 2"}));
  auto big = inputs(3, 50, 12);
  EXPECT_TRUE(throws_error([&] { m->forward(big.x, in.t, in.c, in.y); }, {"25x6 token grid", "pos_embed_max_size 24"}));
  EXPECT_TRUE(throws_error([&] { m->forward(ops::cat({in.x, in.x}, 1), in.t, in.c, in.y); }, {"hidden_states", "[B, 1"}));
  EXPECT_TRUE(throws_error([&] { m->forward(in.x, ops::slice(in.t, 0, 0, 2), in.c, in.y); }, {"timestep"}));
  EXPECT_TRUE(throws_error([&] { m->forward(in.x, in.t, hashed("c", {3, 5, 32}), in.y); }, {"encoder_hidden_states"}));
  EXPECT_TRUE(throws_error([&] { m->forward(in.x, in.t, in.c, hashed("y", {3, 63})); }, {"pooled_projections"}));
  EXPECT_TRUE(throws_error([&] { m->forward(cast_raw(in.x, DType::F32), in.t, in.c, in.y); }, {"inputs must be f64"}));
  nn::LayerOptions o;
  o.deferred = true;
  nn::MMDiT d(nn::MMDiTConfig::named("tiny"), o);
  EXPECT_TRUE(throws_error([&] { d.forward(in.x, in.t, in.c, in.y); }, {"deferred", "materialize"}));
}

TEST(MMDiTForward, DeferredModelMaterialises) {
  nn::LayerOptions o;
  o.deferred = true;
  nn::MMDiT d(nn::MMDiTConfig::named("tiny"), o);
  Generator g(7);
  d.materialize(DType::F32, Device::cpu(), &g);
  EXPECT_TRUE(d.materialized());
  for (auto& [n, t] : d.named_parameters()) EXPECT_TRUE(t.requires_grad()) << n;
  // the fresh position table of a materialised model is the sin-cos table
  Tensor ref = nn::sincos_pos_table(128, 24, 16, DType::F32);
  EXPECT_TRUE(all_close(d.pos_embed->pos_embed, ref, 0, 0));
  auto in = inputs(3, 8, 8, 5, DType::F32);
  Tensor out = d.forward(in.x, in.t, in.c, in.y);
  for (double v : out.to_vector()) ASSERT_TRUE(std::isfinite(v));
}

TEST(MMDiTForward, TokensDoNotLeakAcrossTheBatch) {
  // sample 1 alone equals sample 1 of a batch of 3 (attention is per sample)
  auto m = tiny("tiny-sd35m");
  auto in = inputs(3, 12, 20);
  NoGradGuard ng;
  Tensor all = m->forward(in.x, in.t, in.c, in.y);
  auto one = [](const Tensor& t) { return ops::contiguous(ops::narrow(t, 0, 1, 1)); };
  Tensor single = m->forward(one(in.x), one(in.t), one(in.c), one(in.y));
  EXPECT_TRUE(all_close(single, one(all), 1e-12, 1e-12));
}

// A config cannot drive allocation or overflow the width: every size has an upper bound, and the
// parameter count implied is checked before anything is allocated (the hostile-input review:
// num_layers 1000000 allocated until memory ran out; heads × head_dim overflowed).
TEST(MMDiTConfigBounds, HugeOrOverflowingSizesAreRefusedBeforeAllocating) {
  auto with = [](auto set) {
    nn::MMDiTConfig c = nn::MMDiTConfig::named("tiny");
    set(c);
    return c;
  };
  EXPECT_TRUE(throws_error([&] { with([](auto& c) { c.num_layers = 1000000; }).validate(); }, {"num_layers", "1000000"}));
  EXPECT_TRUE(throws_error([&] {
    with([](auto& c) {
      c.num_attention_heads = int64_t{1} << 40;
      c.attention_head_dim = int64_t{1} << 40;
    }).validate();
  }, {"attention_head_dim"}));
  EXPECT_TRUE(throws_error([&] {
    with([](auto& c) {
      c.num_layers = 512, c.num_attention_heads = 1024, c.attention_head_dim = 1024, c.caption_projection_dim = 1 << 20;
    }).validate();
  }, {"G parameters"}));
  EXPECT_TRUE(throws_error([&] { with([](auto& c) { c.sample_size = 1 << 20; }).validate(); }, {"sample_size"}));
  EXPECT_NO_THROW(nn::MMDiTConfig::named("sd3.5-large").validate());
  // a model built from a refused config allocates nothing: the constructor validates first
  EXPECT_TRUE(throws_error([&] { nn::MMDiT m(with([](auto& c) { c.num_layers = 1000000; })); }, {"num_layers"}));
}

}  // namespace
}  // namespace vgg::test

namespace vgg::test {

// Activation checkpointing per joint block: the output is bit-identical and every gradient (input,
// the trainable parameters) equal to the plain graph's up to the order in which the blocks'
// contributions to shared inputs (the time embedding) are summed.
TEST(MMDiT, BlockCheckpointingGivesTheSameGradients) {
  nn::MMDiTConfig c = nn::MMDiTConfig::named("tiny-sd35m");
  Generator g(5);
  nn::MMDiT net(c, {DType::F64, Device::cpu(), &g});
  Tensor x = test::rnd({2, c.in_channels, 8, 8}, 1), t = from_vector(std::vector<double>{250.0, 900.0}, {2}, opts(DType::F64));
  Tensor ctx = test::rnd({2, 5, c.joint_attention_dim}, 2), pooled = test::rnd({2, c.pooled_projection_dim}, 3);
  auto run = [&](bool ck) {
    net.checkpointing = ck;
    Tensor xi = x.detach().requires_grad_(true);
    Tensor y = net.forward(xi, t, ctx, pooled);
    std::vector<Tensor> wrt = net.parameters(true);
    wrt.insert(wrt.begin(), xi);
    auto gs = grad({ops::sum(ops::square(y))}, wrt, {}, false, /*allow_unused=*/true);
    gs.push_back(y.detach());
    return gs;
  };
  auto a = run(false), b = run(true);
  ASSERT_EQ(a.size(), b.size());
  int64_t compared = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].defined(), b[i].defined()) << "tensor " << i;  // an unused parameter stays unused
    if (!a[i].defined()) continue;
    EXPECT_TRUE(test::all_close(b[i], a[i], 1e-12 * ops::amax(ops::abs(a[i])).item(), 1e-12)) << "tensor " << i;
    ++compared;
  }
  EXPECT_GT(compared, 100);
  EXPECT_TRUE(test::all_close(a.back(), b.back(), 0, 0));  // the output
}

}  // namespace vgg::test
