#include "vggflow/image.h"

#include <fcntl.h>
#include <png.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "tensor/factory.h"

namespace vgg::flow {

namespace {
uint8_t to_byte(double x) {
  const double t = std::floor((x + 1.0) * 127.5 + 0.5);
  if (!(t > 0.0)) return 0;  // also NaN
  return t >= 255.0 ? 255 : static_cast<uint8_t>(t);
}
}  // namespace

void write_png(const std::string& path, const Tensor& img) {
  VGG_CHECK(img.defined(), "write_png: undefined tensor for '", path, "'");
  VGG_CHECK(is_floating(img.dtype()), "write_png: '", path, "': expects a float image, got ", describe(img));
  const bool chw = img.dim() == 3;
  VGG_CHECK(img.dim() == 2 || (chw && (img.size(0) == 1 || img.size(0) == 3)), "write_png: '", path,
            "': expects [H, W], [1, H, W] or [3, H, W], got ", describe(img));
  const int64_t c = chw ? img.size(0) : 1, h = img.size(chw ? 1 : 0), w = img.size(chw ? 2 : 1);
  VGG_CHECK(h >= 1 && w >= 1 && h <= 1000000 && w <= 1000000, "write_png: '", path, "': bad image size ", h, "x", w);
  Tensor t = contiguous_raw(cast_raw(to_device_raw(img, Device::cpu()), DType::F64));
  const double* src = t.data<double>();
  // channels first -> interleaved rows
  std::vector<uint8_t> buf(static_cast<size_t>(c * h * w));
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t i = 0; i < h * w; ++i) buf[static_cast<size_t>(i * c + ch)] = to_byte(src[ch * h * w + i]);

  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(w);
  image.height = static_cast<png_uint_32>(h);
  image.format = c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  const std::string tmp = path + ".tmp";
  const int ok = png_image_write_to_file(&image, tmp.c_str(), 0, buf.data(), static_cast<png_int_32>(w * c), nullptr);
  const std::string why = image.message;
  png_image_free(&image);
  if (!ok) {
    std::remove(tmp.c_str());
    VGG_FAIL("write_png: cannot write '", path, "': ", why);
  }
  // on the disk before it replaces `path` (a crash leaves the old image or the new one)
  const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  const bool synced = fd >= 0 && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  if (!synced) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    VGG_FAIL("write_png: cannot write '", path, "': ", why);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    VGG_FAIL("write_png: cannot rename into '", path, "': ", why);
  }
}

Tensor read_png(const std::string& path) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) {
    const std::string why = image.message;
    png_image_free(&image);
    VGG_FAIL("read_png: cannot read '", path, "': ", why);
  }
  const bool color = (image.format & PNG_FORMAT_FLAG_COLOR) != 0;
  image.format = color ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  const int64_t c = color ? 3 : 1, h = image.height, w = image.width;
  std::vector<uint8_t> buf(static_cast<size_t>(PNG_IMAGE_SIZE(image)));
  if (!png_image_finish_read(&image, nullptr, buf.data(), 0, nullptr)) {
    const std::string why = image.message;
    png_image_free(&image);
    VGG_FAIL("read_png: cannot decode '", path, "': ", why);
  }
  Tensor out = empty({c, h, w}, DType::F32);
  float* o = out.data<float>();
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t i = 0; i < h * w; ++i)
      o[ch * h * w + i] = static_cast<float>(buf[static_cast<size_t>(i * c + ch)] / 127.5 - 1.0);
  return out;
}

Tensor make_grid(const Tensor& images, int64_t nrow, int64_t padding, double pad_value) {
  VGG_CHECK(images.defined() && images.dim() == 4 && images.size(0) >= 1,
            "make_grid: expects images [N, C, H, W] with N >= 1, got ",
            images.defined() ? describe(images) : std::string("an undefined tensor"));
  VGG_CHECK(nrow >= 1, "make_grid: nrow must be >= 1, got ", nrow);
  VGG_CHECK(padding >= 0, "make_grid: padding must be >= 0, got ", padding);
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const int64_t cols = std::min(nrow, n), rows = (n + nrow - 1) / nrow;
  const int64_t gh = rows * (h + padding) + padding, gw = cols * (w + padding) + padding;
  Tensor grid = full({c, gh, gw}, pad_value, {images.dtype(), images.device()});
  const Strides& s = images.strides();
  for (int64_t k = 0; k < n; ++k) {
    const int64_t y0 = padding + (k / nrow) * (h + padding), x0 = padding + (k % nrow) * (w + padding);
    Tensor dst = as_strided_view(grid, {c, h, w}, grid.strides(), grid.offset() + y0 * gw + x0);
    Tensor src = as_strided_view(images, {c, h, w}, {s[1], s[2], s[3]}, images.offset() + k * s[0]);
    copy_into(dst, src);
  }
  return grid;
}

}  // namespace vgg::flow
