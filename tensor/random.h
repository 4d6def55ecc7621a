// Random number generation state. A Generator is (seed, subsequence, offset); each draw of
// n values consumes ceil(n/4) Philox blocks and advances the offset, so a draw's values depend
// only on the seed and the draws before it, never on threads or device.
#pragma once
#include <cstdint>

namespace vgg {

struct Generator {
  uint64_t seed = 0;
  uint64_t subsequence = 0;
  uint64_t offset = 0;  // in 4-value blocks
  Generator() = default;
  explicit Generator(uint64_t s, uint64_t sub = 0) : seed(s), subsequence(sub) {}
  // Reserves blocks for n values and returns the starting offset.
  uint64_t take(int64_t n) {
    uint64_t o = offset;
    offset += static_cast<uint64_t>((n + 3) / 4);
    return o;
  }
};

// The process-wide default generator (seed 0 until manual_seed is called).
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace vgg
