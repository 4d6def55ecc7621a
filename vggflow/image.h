// 8-bit PNG files and image grids.
//   values:  an image value x in [−1, 1] is stored as the byte clamp(floor((x + 1)·127.5 + 0.5), 0, 255),
//            NaN as 0; reading maps byte v back to the f32 value v/127.5 − 1, so values on that grid round
//            trip exactly.
//   layout:  [H, W] or [1, H, W] is grey, [3, H, W] is RGB (channels first, as the models produce).
#pragma once
#include <cstdint>
#include <string>

#include "tensor/tensor.h"

namespace vgg::flow {

// Writes img (any float dtype, any device) to path through a temporary file renamed into place.
void write_png(const std::string& path, const Tensor& img);

// Reads a grey or RGB PNG (alpha is dropped, 16-bit samples are reduced to 8) as f32 [C, H, W] in [−1, 1].
Tensor read_png(const std::string& path);

// Tiles images [N, C, H, W] row-major, nrow per row, into one [C, H', W'] image of the same dtype with
// H' = rows·(H + padding) + padding, W' = min(nrow, N)·(W + padding) + padding, rows = ceil(N / nrow);
// gaps and the unused cells of the last row hold pad_value (1 = white).
Tensor make_grid(const Tensor& images, int64_t nrow, int64_t padding = 2, double pad_value = 1.0);

}  // namespace vgg::flow
