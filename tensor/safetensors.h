// safetensors reader and writer (https://github.com/huggingface/safetensors):
//   8 bytes   little-endian u64 N, the header length
//   N bytes   UTF-8 JSON object {name: {"dtype", "shape", "data_offsets": [begin, end]}, ...} with an
//             optional "__metadata__" string -> string map; may be padded with trailing spaces
//   the rest  the data section: raw little-endian, row-major tensor bytes; offsets are relative to its start
//
// Writing: keys sorted, "__metadata__" only when non-empty, the header padded with spaces so that the
// data starts at a multiple of 8, tensors packed back to back in the order given. dtypes written: F32,
// F64, BF16, I32, I64, BOOL. The file is written to `<path>.tmp.<pid>` and renamed over `path`, so a
// failure never leaves a partial file and never destroys an existing one.
//
// Reading: F32, F64, BF16, I32, I64, BOOL as themselves; F16 is widened to f32 (exactly); I8, U8 and
// I16 are widened to i32. Everything is loaded to the CPU. The checks follow the reference loader: the
// tensors, sorted by offset, must tile the data section exactly — an overlap, a hole between tensors or
// bytes after the last one are errors (the reference rejects such files, so no conforming writer makes
// them). Stricter than the reference: an entry with unknown fields and a tensor name given twice are
// rejected too. Every error is a vgg::Error naming the file and, where it applies, the tensor and offset.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace vgg {

struct SafetensorsFile {
  std::string path;
  std::vector<std::pair<std::string, Tensor>> tensors;  // in file order (by data offset)
  std::map<std::string, std::string> metadata;

  const Tensor* find(const std::string& name) const;  // null when absent
  const Tensor& at(const std::string& name) const;    // throws naming the file when absent
  bool contains(const std::string& name) const { return find(name) != nullptr; }
};

// One header entry as stored: dtype is the safetensors name ("F32", "BF16", ...); begin/end are byte
// offsets into the data section.
struct TensorInfo {
  std::string name;
  std::string dtype;
  Shape shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// Tensors may be non-contiguous or on another device (they are copied to a contiguous CPU buffer).
// Duplicate or empty names are errors.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads every tensor to the CPU. With `convert_to` (a floating dtype), floating tensors are cast to it;
// integer and bool tensors are left as they are.
SafetensorsFile load_safetensors(const std::string& path, std::optional<DType> convert_to = std::nullopt);

// Validates the header (the same checks as load_safetensors, without reading the data) and returns the
// entries in file order; `metadata`, when given, receives "__metadata__".
std::vector<TensorInfo> read_safetensors_header(const std::string& path,
                                                std::map<std::string, std::string>* metadata = nullptr);

// IEEE 754 binary16 bits -> float (exact, including subnormals, infinities and NaN payloads).
float half_bits_to_float(uint16_t h);

}  // namespace vgg
