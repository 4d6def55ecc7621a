// NumPy .npy (format 1.0/2.0/3.0) reader and writer for test data: f32, f64, i32, i64, bool
// (little-endian, C order). bf16 tensors are written as f32.
#pragma once
#include <string>

#include "tensor/tensor.h"

namespace vgg {

void save_npy(const std::string& path, const Tensor& t);
Tensor load_npy(const std::string& path);

}  // namespace vgg
