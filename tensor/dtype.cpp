#include "tensor/dtype.h"

#include "tensor/error.h"

namespace vgg {

size_t itemsize(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::Bool: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
    case DType::I64: return "i64";
    case DType::Bool: return "bool";
  }
  return "?";
}

bool is_floating(DType t) { return t == DType::F32 || t == DType::F64 || t == DType::BF16; }
bool is_integral(DType t) { return t == DType::I32 || t == DType::I64; }

DType dtype_from_name(const std::string& n) {
  if (n == "f32" || n == "float32" || n == "float") return DType::F32;
  if (n == "f64" || n == "float64" || n == "double") return DType::F64;
  if (n == "bf16" || n == "bfloat16") return DType::BF16;
  if (n == "i32" || n == "int32") return DType::I32;
  if (n == "i64" || n == "int64") return DType::I64;
  if (n == "bool") return DType::Bool;
  VGG_FAIL("unknown dtype '", n, "' (expected f32, f64, bf16, i32, i64 or bool)");
}

}  // namespace vgg
