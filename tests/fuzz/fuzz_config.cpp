// JSON the tools read (tensor/json.h: configs, run state, safetensors headers) and the MMDiT config
// (nn/mmdit.cpp from_json + validate). A config that is accepted must survive its own round trip:
// from_json(to_json(c)) gives c's JSON again.
#include <string>

#include "nn/mmdit.h"
#include "tensor/json.h"
#include "tests/fuzz/fuzz_common.h"

using namespace vgg;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const auto dir = fuzz::seed_dir();
  if (dir.empty()) return 0;
  for (const auto& name : nn::MMDiTConfig::names())
    fuzz::write_bytes(dir / ("mmdit-" + name + ".json"), nn::MMDiTConfig::named(name).to_json());
  fuzz::write_bytes(dir / "train-config.json", "{\"method\": \"vggflow\", \"steps\": 40, \"beta\": 0.5, \"eta\": \"t2\", \"seed\": 0}");
  fuzz::write_bytes(dir / "state.json", "{\"step\": 8, \"epoch\": 0, \"position\": 64}");
  // reproducers: too many layers, heads x head_dim overflowing, a key twice, a number out of range
  fuzz::write_bytes(dir / "crash-layers", "{\"num_layers\": 1000000}");
  fuzz::write_bytes(dir / "crash-dim-overflow", "{\"num_attention_heads\": 4294967296, \"attention_head_dim\": 4294967296}");
  fuzz::write_bytes(dir / "crash-key-twice", "{\"steps\": 8, \"steps\": 9}");
  fuzz::write_bytes(dir / "crash-1e309", "{\"steps\": 1e309}");
  std::exit(0);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  fuzz::expect_clean([&] { parse_json(text, "input"); });
  fuzz::expect_clean([&] {
    const nn::MMDiTConfig c = nn::MMDiTConfig::from_json(text);
    (void)c.dim();
    const std::string again = c.to_json();
    if (nn::MMDiTConfig::from_json(again).to_json() != again) std::abort();  // round trip lost something
  });
  return 0;
}
