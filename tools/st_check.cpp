// vgg_st_check: the C++ half of the safetensors interoperability test (tools/golden/safetensors_interop.py).
//   vgg_st_check write FILE        writes the fixed content below with save_safetensors
//   vgg_st_check verify FILE       loads a file written by the Python package and checks its fixed content
//   vgg_st_check verify-bf16 FILE  the same for the Python-written bf16 file
//   vgg_st_check finite FILE       every floating-point tensor of any file is free of NaN and Inf
//   vgg_st_check close A B RTOL    the same tensor names and shapes, and every value of A within
//                                  RTOL·(|b| + max|B's tensor|·1e-3) of B's (floating tensors; others equal)
// Exit 0 on success; 1 on a mismatch or a load error (one line on stderr); 2 on a usage error.
//
// Content written (i = row-major element index):
//   f32    [2, 3] f32   i * 0.5 - 1
//   f32_t  [3, 2] f32   the transpose of f32 (saved from a non-contiguous view)
//   f64    [4]    f64   i / 3
//   bf16   [3, 2] bf16  i * 0.25 - 0.5
//   i32    [5]    i32   i - 2
//   i64    [2, 2] i64   -2^40, 7, 2^53 + 1, -1
//   bool   [4]    bool  1, 0, 0, 1
//   scalar []     f32   3.5
//   empty  [0, 3] f32
//   metadata {"producer": "vgg_st_check", "note": "σ ✓"}
// Content verified (as written by numpy through safetensors.numpy.save_file):
//   f32 [2, 3] F32 (i - 2.5) * 0.75; f64 [3] F64 i / 7; f16 [9] F16 bits 0000 8000 3c00 0001 7bff 7c00 fc00
//   3555 7e00; i64 [2, 2] I64 -2^40, 7, 2^53 + 1, -1; i32 [3] I32 -5, 0, 5; u8 [3] U8 0, 200, 255;
//   i8 [2] I8 -128, 127; i16 [2] I16 -32768, 32767; bool [3] BOOL 1, 0, 1; scalar [] F64 -1.25;
//   empty [2, 0] F32; metadata {"producer": "safetensors_interop.py", "format": "np"}
// and in the bf16 file: bf16 [2, 2] BF16 bits 3f80 c000 3e80 7f80 (1, -2, 0.25, inf), no metadata.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "tensor/factory.h"
#include "tensor/safetensors.h"

using namespace vgg;

namespace {
struct Mismatch : std::runtime_error {
  using std::runtime_error::runtime_error;
};

Tensor from_f64(const std::vector<double>& v, const Shape& shape, DType dt) { return from_vector(v, shape, {dt}); }

std::vector<double> index_values(int64_t n, double scale, double shift) {
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<double>(i) * scale + shift;
  return v;
}

void write_file(const std::string& path) {
  Tensor f32 = from_f64(index_values(6, 0.5, -1), {2, 3}, DType::F32);
  std::vector<double> thirds(4);
  for (int i = 0; i < 4; ++i) thirds[i] = static_cast<double>(i) / 3.0;
  Tensor f32_t = as_strided_view(f32, {3, 2}, {1, 3}, 0);
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"f32", f32},
      {"f32_t", f32_t},
      {"f64", from_f64(thirds, {4}, DType::F64)},
      {"bf16", from_f64(index_values(6, 0.25, -0.5), {3, 2}, DType::BF16)},
      {"i32", from_f64(index_values(5, 1, -2), {5}, DType::I32)},
      {"i64", from_vector(std::vector<int64_t>{-(1LL << 40), 7, (1LL << 53) + 1, -1}, {2, 2})},
      {"bool", from_f64({1, 0, 0, 1}, {4}, DType::Bool)},
      {"scalar", scalar_tensor(3.5)},
      {"empty", zeros({0, 3})}};
  save_safetensors(path, tensors, {{"producer", "vgg_st_check"}, {"note", "σ ✓"}});
}

template <typename... Args>
void require(bool ok, const Args&... args) {
  if (ok) return;
  std::ostringstream os;
  ((os << args), ...);
  throw Mismatch(os.str());
}

// Checks name, stored dtype, loaded dtype, shape and the exact bytes of the loaded tensor.
template <typename T>
void expect(const SafetensorsFile& f, const std::map<std::string, std::string>& stored, const std::string& name,
            const std::string& st_dtype, DType dt, const Shape& shape, const std::vector<T>& want) {
  require(f.contains(name), "tensor '", name, "' is missing");
  require(stored.count(name) && stored.at(name) == st_dtype, "tensor '", name, "' is stored as ",
          stored.count(name) ? stored.at(name) : "?", ", expected ", st_dtype);
  const Tensor& t = f.at(name);
  require(t.dtype() == dt, "tensor '", name, "' loaded as ", dtype_name(t.dtype()), ", expected ", dtype_name(dt));
  require(t.shape() == shape, "tensor '", name, "' has shape ", shape_str(t.shape()), ", expected ", shape_str(shape));
  require(static_cast<size_t>(t.numel()) == want.size() && itemsize(dt) == sizeof(T), "tensor '", name,
          "': internal size mismatch");
  for (size_t i = 0; i < want.size(); ++i) {
    T got;
    std::memcpy(&got, static_cast<const char*>(t.data_ptr()) + i * sizeof(T), sizeof(T));
    bool same = std::memcmp(&got, &want[i], sizeof(T)) == 0;
    if constexpr (std::is_floating_point_v<T>) same = same || (std::isnan(got) && std::isnan(want[i]));
    if constexpr (std::is_same_v<T, uint16_t> || std::is_same_v<T, uint8_t>)
      require(same, "tensor '", name, "' element ", i, " is ", int(got), ", expected ", int(want[i]));
    else
      require(same, "tensor '", name, "' element ", i, " is ", got, ", expected ", want[i]);
  }
}

void verify_file(const std::string& path, bool bf16_file) {
  SafetensorsFile f = load_safetensors(path);
  std::map<std::string, std::string> stored;
  for (const TensorInfo& e : read_safetensors_header(path)) stored[e.name] = e.dtype;
  if (bf16_file) {
    require(f.tensors.size() == 1, "expected 1 tensor, found ", f.tensors.size());
    expect<uint16_t>(f, stored, "bf16", "BF16", DType::BF16, {2, 2}, {0x3f80, 0xc000, 0x3e80, 0x7f80});
    require(f.metadata.empty(), "expected no metadata, found ", f.metadata.size(), " entries");
    return;
  }
  require(f.tensors.size() == 11, "expected 11 tensors, found ", f.tensors.size());
  std::vector<float> f32(6);
  for (int i = 0; i < 6; ++i) f32[i] = static_cast<float>((i - 2.5) * 0.75);
  expect<float>(f, stored, "f32", "F32", DType::F32, {2, 3}, f32);
  expect<double>(f, stored, "f64", "F64", DType::F64, {3}, {0.0, 1.0 / 7.0, 2.0 / 7.0});
  expect<float>(f, stored, "f16", "F16", DType::F32, {9},
                {0.0f, -0.0f, 1.0f, 0x1p-24f, 65504.0f, INFINITY, -INFINITY, 0.333251953125f, NAN});
  expect<int64_t>(f, stored, "i64", "I64", DType::I64, {2, 2}, {-(1LL << 40), 7, (1LL << 53) + 1, -1});
  expect<int32_t>(f, stored, "i32", "I32", DType::I32, {3}, {-5, 0, 5});
  expect<int32_t>(f, stored, "u8", "U8", DType::I32, {3}, {0, 200, 255});
  expect<int32_t>(f, stored, "i8", "I8", DType::I32, {2}, {-128, 127});
  expect<int32_t>(f, stored, "i16", "I16", DType::I32, {2}, {-32768, 32767});
  expect<uint8_t>(f, stored, "bool", "BOOL", DType::Bool, {3}, {1, 0, 1});
  expect<double>(f, stored, "scalar", "F64", DType::F64, {}, {-1.25});
  expect<float>(f, stored, "empty", "F32", DType::F32, {2, 0}, {});
  std::map<std::string, std::string> md = {{"producer", "safetensors_interop.py"}, {"format", "np"}};
  require(f.metadata == md, "metadata differs (", f.metadata.size(), " entries)");
}
// Throws a Mismatch naming the first tensor with a NaN or Inf.
void check_finite(const std::string& path) {
  SafetensorsFile f = load_safetensors(path);
  for (const auto& [name, t] : f.tensors) {
    if (!is_floating(t.dtype()) || t.numel() == 0) continue;
    std::vector<double> v = t.to_vector();
    for (size_t i = 0; i < v.size(); ++i)
      require(std::isfinite(v[i]), "tensor '", name, "' element ", i, " is ", v[i]);
  }
}

// Throws a Mismatch naming the first tensor of a that differs from b's beyond rtol.
void check_close(const std::string& a, const std::string& b, double rtol) {
  SafetensorsFile fa = load_safetensors(a), fb = load_safetensors(b);
  require(fa.tensors.size() == fb.tensors.size(), a, " has ", fa.tensors.size(), " tensors, ", b, " ", fb.tensors.size());
  for (const auto& [name, ta] : fa.tensors) {
    const Tensor* tb = fb.find(name);
    require(tb != nullptr, "tensor '", name, "' is not in ", b);
    require(ta.shape() == tb->shape() && ta.dtype() == tb->dtype(), "tensor '", name, "' differs in shape or dtype");
    const std::vector<double> va = ta.to_vector(), vb = tb->to_vector();
    double scale = 0;
    for (double v : vb) scale = std::max(scale, std::abs(v));
    for (size_t i = 0; i < va.size(); ++i) {
      const double tol = is_floating(ta.dtype()) ? rtol * (std::abs(vb[i]) + 1e-3 * scale) : 0.0;
      require(std::abs(va[i] - vb[i]) <= tol, "tensor '", name, "' element ", i, ": ", va[i], " vs ", vb[i]);
    }
  }
}
}  // namespace

int main(int argc, char** argv) {
  std::string cmd = argc > 1 ? argv[1] : "";
  const bool close = cmd == "close";
  if ((close && argc != 5) || (!close && (argc != 3 || (cmd != "write" && cmd != "verify" && cmd != "verify-bf16" && cmd != "finite")))) {
    std::fprintf(stderr, "usage: vgg_st_check write|verify|verify-bf16|finite FILE | close A B RTOL\n");
    return 2;
  }
  try {
    if (close) {
      char* end = nullptr;
      const double rtol = std::strtod(argv[4], &end);
      if (end == argv[4] || *end != '\0' || !(rtol >= 0)) {
        std::fprintf(stderr, "vgg_st_check: close: RTOL must be a number >= 0, got '%s'\n", argv[4]);
        return 2;
      }
      check_close(argv[2], argv[3], rtol);
      std::printf("close %s %s\n", argv[2], argv[3]);
    } else if (cmd == "write") {
      write_file(argv[2]);
      std::printf("wrote %s\n", argv[2]);
    } else if (cmd == "finite") {
      check_finite(argv[2]);
      std::printf("finite %s\n", argv[2]);
    } else {
      verify_file(argv[2], cmd == "verify-bf16");
      std::printf("verified %s\n", argv[2]);
    }
    return 0;
  } catch (const Mismatch& e) {
    std::fprintf(stderr, "vgg_st_check: %s: mismatch: %s\n", argv[2], e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vgg_st_check: %s\n", e.what());
  }
  return 1;
}
