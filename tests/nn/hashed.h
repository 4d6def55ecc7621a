// Hashed tensors: values from a counter-based hash of (name, index), computed bit-identically
// by tools/golden/mmdit_ref.py, so golden cases need no stored weights.
//   h0 = FNV-1a 64(name); z = splitmix64-finaliser(h0 + (i + 1)·0x9E3779B97F4A7C15)
//   v  = 2·((z >> 11)·2^-53) − 1 ∈ [−1, 1)
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "nn/module.h"
#include "tensor/factory.h"

namespace vgg::test {

inline std::vector<double> hashed_uniform(const std::string& name, int64_t n) {
  uint64_t h0 = 0xCBF29CE484222325ull;
  for (unsigned char c : name) h0 = (h0 ^ c) * 0x100000001B3ull;
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    uint64_t z = h0 + static_cast<uint64_t>(i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    v[static_cast<size_t>(i)] = 2.0 * (static_cast<double>(z >> 11) * 0x1.0p-53) - 1.0;
  }
  return v;
}

inline Tensor hashed(const std::string& name, const Shape& shape, double scale = 1.0, double offset = 0.0,
                     DType dtype = DType::F64) {
  std::vector<double> v = hashed_uniform(name, numel_of(shape));
  for (double& x : v) x = x * scale + offset;
  return cast_raw(from_vector(v, shape, opts(DType::F64)), dtype);
}

// The golden weight rule of mmdit_ref.py (pos_embed.pos_embed keeps its sin-cos table).
inline void fill_hashed_parameters(nn::Module& m) {
  for (auto& [name, t] : m.named_parameters()) {
    Tensor v;
    const auto& s = t.shape();
    const std::string leaf = name.substr(0, name.rfind('.'));
    const std::string last = leaf.substr(leaf.rfind('.') + 1);
    if (s.size() == 1 && last.rfind("norm_", 0) == 0 && name.size() > 7 && name.ends_with(".weight")) {
      v = hashed(name, s, 0.3, 1.0);
    } else if (s.size() >= 2) {
      int64_t fan_in = numel_of(s) / s[0];
      v = hashed(name, s, std::sqrt(3.0) / std::sqrt(static_cast<double>(fan_in)));
    } else {
      v = hashed(name, s, 0.1);
    }
    NoGradGuard ng;
    copy_into(t, cast_raw(v, t.dtype()));
  }
}

}  // namespace vgg::test
