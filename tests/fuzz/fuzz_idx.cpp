// IDX image and label reader (vggflow/data.cpp load_idx), plain and gzip'd. The input is two files:
// bytes 0-1 (little-endian) give the length of the image file, which follows; the label file is the
// rest. Each input is read as is and again padded to 32x32 with a limit of one item.
#include <zlib.h>

#include <cstring>

#include "tests/fuzz/fuzz_common.h"
#include "vggflow/data.h"

using namespace vgg;

namespace {
std::string be32(uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
  return std::string(b, 4);
}
std::string gzip(const std::string& in) {
  z_stream z{};
  if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::string out(deflateBound(&z, in.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}
std::string pair(const std::string& images, const std::string& labels) {
  const uint16_t n = static_cast<uint16_t>(images.size());
  return std::string(reinterpret_cast<const char*>(&n), 2) + images + labels;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const auto dir = fuzz::seed_dir();
  if (dir.empty()) return 0;
  std::string pixels;
  for (int i = 0; i < 2 * 4 * 3; ++i) pixels += static_cast<char>(i * 10);
  const std::string images = be32(0x803) + be32(2) + be32(4) + be32(3) + pixels;
  const std::string labels = be32(0x801) + be32(2) + std::string("\x03\x09", 2);
  fuzz::write_bytes(dir / "plain", pair(images, labels));
  fuzz::write_bytes(dir / "gzip", pair(gzip(images), gzip(labels)));
  fuzz::write_bytes(dir / "gzip-images", pair(gzip(images), labels));
  // reproducers: a header promising 2^31 items in a short file, a label out of range, trailing data
  fuzz::write_bytes(dir / "lying-header", pair(be32(0x803) + be32(0x7fffffff) + be32(28) + be32(28) + pixels, labels));
  fuzz::write_bytes(dir / "bad-label", pair(images, be32(0x801) + be32(2) + std::string("\x03\xff", 2)));
  fuzz::write_bytes(dir / "trailing", pair(images + "x", labels));
  std::exit(0);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  uint16_t n = 0;
  std::memcpy(&n, data, 2);
  const size_t ni = std::min<size_t>(n, size - 2);
  const std::string im = fuzz::as_file(data + 2, ni, "images-idx3-ubyte");
  const std::string lb = fuzz::as_file(data + 2 + ni, size - 2 - ni, "labels-idx1-ubyte");
  fuzz::expect_clean([&] { flow::load_idx(im, lb); });
  fuzz::expect_clean([&] { flow::load_idx(im, lb, /*pad_to=*/32, /*limit=*/1); });
  return 0;
}
