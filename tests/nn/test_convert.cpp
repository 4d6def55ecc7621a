// Checkpoint layout conversion diffusers <-> Stability: bit-exact round trips, the fused qkv
// and swapped (scale, shift) layouts, and clear errors.
#include <cstring>

#include "nn/convert.h"
#include "nn/mmdit.h"
#include "tests/nn/hashed.h"
#include "tests/support/test_support.h"

namespace vgg::test {
namespace {

Tensor find(const nn::NamedTensors& sd, const std::string& name) {
  for (const auto& [n, t] : sd)
    if (n == name) return t;
  ADD_FAILURE() << "no key " << name;
  return Tensor();
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ca = contiguous_raw(a), cb = contiguous_raw(b);
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), static_cast<size_t>(a.numel()) * itemsize(a.dtype())) == 0;
}

TEST(Convert, RoundTripIsBitExactForEveryConfigShape) {
  for (const char* name : {"tiny", "tiny-sd35m", "tiny-sd35l"}) {
    nn::MMDiT m(nn::MMDiTConfig::named(name), nn::LayerOptions{DType::F32});
    fill_hashed_parameters(m);
    auto sd = m.state_dict();
    EXPECT_EQ(nn::detect_layout(sd), nn::CheckpointLayout::Diffusers);
    auto stab = nn::diffusers_to_stability(sd);
    EXPECT_EQ(nn::detect_layout(stab), nn::CheckpointLayout::Stability);
    auto back = nn::stability_to_diffusers(stab);
    ASSERT_EQ(back.size(), sd.size()) << name;
    for (const auto& [n, t] : sd) EXPECT_TRUE(bit_equal(find(back, n), t)) << name << ": " << n;
    // and the other direction: Stability -> diffusers -> Stability
    auto again = nn::diffusers_to_stability(back);
    ASSERT_EQ(again.size(), stab.size());
    for (size_t i = 0; i < stab.size(); ++i) {
      EXPECT_EQ(again[i].first, stab[i].first);
      EXPECT_TRUE(bit_equal(again[i].second, stab[i].second)) << stab[i].first;
    }
  }
}

TEST(Convert, FusedQkvAndSwappedHalves) {
  nn::MMDiT m(nn::MMDiTConfig::named("tiny-sd35m"), nn::LayerOptions{DType::F64});
  fill_hashed_parameters(m);
  auto sd = m.state_dict();
  auto st = nn::diffusers_to_stability(sd, "");
  // Stability tensor count for the same structure: qkv fusion removes 2 of every 3
  Tensor qkv = find(st, "joint_blocks.1.x_block.attn.qkv.weight");
  ASSERT_EQ(qkv.shape(), (Shape{384, 128}));
  EXPECT_TRUE(bit_equal(ops::narrow(qkv, 0, 128, 128), find(sd, "transformer_blocks.1.attn.to_k.weight")));
  Tensor qkv2 = find(st, "joint_blocks.0.x_block.attn2.qkv.bias");
  EXPECT_TRUE(bit_equal(ops::narrow(qkv2, 0, 256, 128), find(sd, "transformer_blocks.0.attn2.to_v.bias")));
  // the last block's context norm and the final norm: (scale, shift) -> (shift, scale)
  for (auto [s, d] : {std::pair<const char*, const char*>{"joint_blocks.3.context_block.adaLN_modulation.1.weight",
                                                          "transformer_blocks.3.norm1_context.linear.weight"},
                      {"final_layer.adaLN_modulation.1.bias", "norm_out.linear.bias"}}) {
    Tensor a = find(st, s), b = find(sd, d);
    EXPECT_TRUE(bit_equal(ops::narrow(a, 0, 0, 128), ops::narrow(b, 0, 128, 128))) << s;
    EXPECT_TRUE(bit_equal(ops::narrow(a, 0, 128, 128), ops::narrow(b, 0, 0, 128))) << s;
  }
  // a regular block's 6-chunk adaLN is copied, not swapped
  EXPECT_TRUE(bit_equal(find(st, "joint_blocks.2.context_block.adaLN_modulation.1.weight"),
                        find(sd, "transformer_blocks.2.norm1_context.linear.weight")));
  EXPECT_TRUE(bit_equal(find(st, "joint_blocks.1.context_block.attn.ln_k.weight"),
                        find(sd, "transformer_blocks.1.attn.norm_added_k.weight")));
}

TEST(Convert, LoadedThroughEitherLayoutTheModelsAgree) {
  nn::MMDiT a(nn::MMDiTConfig::named("tiny"), nn::LayerOptions{DType::F64});
  fill_hashed_parameters(a);
  nn::MMDiT b(nn::MMDiTConfig::named("tiny"), nn::LayerOptions{DType::F64});
  auto st = nn::diffusers_to_stability(a.state_dict());
  st.emplace_back("first_stage_model.decoder.conv_in.weight", zeros({2}, opts(DType::F64)));  // other components
  int64_t skipped = 0;
  b.load_state_dict(nn::stability_to_diffusers(st, &skipped));
  EXPECT_EQ(skipped, 1);
  Tensor x = hashed("x", {1, 1, 8, 6}), t = full({1}, 321.0, opts(DType::F64));
  Tensor c = hashed("c", {1, 3, 64}), y = hashed("y", {1, 64});
  NoGradGuard ng;
  EXPECT_TRUE(all_close(a.forward(x, t, c, y), b.forward(x, t, c, y), 0, 0));
}

TEST(Convert, Errors) {
  nn::MMDiT m(nn::MMDiTConfig::named("tiny"), nn::LayerOptions{DType::F32});
  auto sd = m.state_dict();
  auto extra = sd;
  extra.emplace_back("transformer_blocks.0.attn.to_z.weight", zeros({2}));
  EXPECT_TRUE(throws_error([&] { nn::diffusers_to_stability(extra); }, {"unexpected key", "to_z"}));
  auto missing = sd;
  missing.erase(missing.begin() + 20);
  const std::string want = "missing key '" + sd[20].first + "'";
  EXPECT_TRUE(throws_error([&] { nn::diffusers_to_stability(missing); }, {want.c_str()}));
  auto st = nn::diffusers_to_stability(sd);
  st[5].first = "model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight_bad";
  EXPECT_TRUE(throws_error([&] { nn::stability_to_diffusers(st); }, {"missing key"}));
  EXPECT_TRUE(throws_error([&] { nn::detect_layout({{"foo", zeros({1})}}); }, {"neither diffusers"}));
}

}  // namespace
}  // namespace vgg::test
