// safetensors reader (tensor/safetensors.cpp): header length, JSON, dtypes, shapes, offsets, data.
#include <cstring>

#include "tensor/factory.h"
#include "tensor/safetensors.h"
#include "tests/fuzz/fuzz_common.h"

using namespace vgg;

namespace {
// a safetensors file with the given JSON header and data bytes
std::string raw(const std::string& header, const std::string& data) {
  const uint64_t n = header.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + header + data;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const auto dir = fuzz::seed_dir();
  if (dir.empty()) return 0;
  save_safetensors((dir / "dtypes.safetensors").string(),
                   std::vector<std::pair<std::string, Tensor>>{
                       {"f32", from_vector(std::vector<double>{0, 1, 2, 3, 4, 5}, {2, 3})},
                       {"f64", scalar_tensor(2.5, opts(DType::F64))},
                       {"bf16", arange(0, 4, 1, opts(DType::BF16))},
                       {"i64", arange(0, 2, 1, opts(DType::I64))},
                       {"i32", arange(0, 3, 1, opts(DType::I32))},
                       {"b", from_vector(std::vector<double>{1, 0, 1}, {3}, opts(DType::Bool))},
                       {"empty", zeros({0, 5})}},
                   {{"format", "pt"}, {"note", "seed"}});
  save_safetensors((dir / "one.safetensors").string(), std::vector<std::pair<std::string, Tensor>>{{"w", ones({2, 2})}});
  const std::string four(4, '\0');
  // the narrow integers and F16, which the writer does not produce
  fuzz::write_bytes(dir / "narrow.safetensors",
                    raw("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                        "\"b\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[4,6]},"
                        "\"c\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]},"
                        "\"d\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[8,10]}}",
                        std::string("\x00\x3c\x00\xc0\x7f\x80\x00\xff\x34\x12", 10)));
  // reproducers of fixed findings: a number beyond double's range, a field twice, an empty tensor
  // whose other sizes overflow the strides
  fuzz::write_bytes(dir / "crash-number-overflow", raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e309],\"data_offsets\":[0,4]}}", four));
  fuzz::write_bytes(dir / "crash-field-twice",
                    raw("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,4]}}", four));
  fuzz::write_bytes(dir / "crash-empty-huge-strides",
                    raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[0,4611686018427387904,4611686018427387904],\"data_offsets\":[0,0]}}", ""));
  std::exit(0);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string p = fuzz::as_file(data, size, "input.safetensors");
  fuzz::expect_clean([&] { read_safetensors_header(p); });
  fuzz::expect_clean([&] {
    SafetensorsFile f = load_safetensors(p);
    for (const auto& [name, t] : f.tensors) (void)t.numel();
  });
  fuzz::expect_clean([&] { load_safetensors(p, DType::F64); });
  return 0;
}
