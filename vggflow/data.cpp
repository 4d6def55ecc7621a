#include "vggflow/data.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "tensor/factory.h"

namespace vgg::flow {

namespace {

constexpr int64_t kMaxItems = 10'000'000;
constexpr int64_t kMaxSide = 4096;
constexpr uint32_t kImagesMagic = 0x00000803;  // unsigned bytes, 3 dims
constexpr uint32_t kLabelsMagic = 0x00000801;  // unsigned bytes, 1 dim

// "offset N", naming the decompressed stream for gzip files.
std::string where(int64_t offset, bool gzip) {
  std::ostringstream os;
  os << "offset " << offset << (gzip ? " of the decompressed data" : "");
  return os.str();
}

// A file read as one byte stream; gzip files (magic 1f 8b) are inflated on the fly, other files are
// passed through unchanged.
class ByteStream {
 public:
  explicit ByteStream(const std::string& path) : path_(path) {
    std::error_code ec;
    VGG_CHECK(!std::filesystem::is_directory(path, ec), "load_idx: '", path, "' is a directory, not an IDX file");
    std::FILE* f = std::fopen(path.c_str(), "rb");
    VGG_CHECK(f != nullptr, "load_idx: cannot open '", path, "': ", std::strerror(errno));
    unsigned char m[2] = {0, 0};
    const size_t got = std::fread(m, 1, 2, f);
    std::fclose(f);
    gzip_ = got == 2 && m[0] == 0x1f && m[1] == 0x8b;
    gz_ = gzopen(path.c_str(), "rb");
    VGG_CHECK(gz_ != nullptr, "load_idx: cannot open '", path, "'");
    gzbuffer(gz_, 1 << 20);
  }
  ~ByteStream() { gzclose(gz_); }
  ByteStream(const ByteStream&) = delete;
  ByteStream& operator=(const ByteStream&) = delete;

  // Reads up to n bytes into dst and returns the count: fewer than n only at the end of the data.
  int64_t read(void* dst, int64_t n) {
    auto* p = static_cast<unsigned char*>(dst);
    int64_t done = 0;
    while (done < n) {
      const auto chunk = static_cast<unsigned>(std::min<int64_t>(n - done, int64_t{1} << 26));
      const int r = gzread(gz_, p + done, chunk);
      done += std::max(r, 0);
      if (r == static_cast<int>(chunk)) continue;
      // a short read: the end of the data, or inflate failed right after the last byte delivered
      int err = Z_OK;
      std::string msg = gzerror(gz_, &err);
      if (msg.rfind(path_ + ": ", 0) == 0) msg = msg.substr(path_.size() + 2);
      VGG_CHECK(r >= 0 && err == Z_OK, "load_idx: '", path_, "' has corrupt or truncated gzip data at ",
                where(pos_ + done), ": ", msg);
      break;
    }
    pos_ += done;
    return done;
  }
  bool gzip() const { return gzip_; }
  std::string where(int64_t offset) const { return flow::where(offset, gzip_); }

 private:
  std::string path_;
  gzFile gz_ = nullptr;
  bool gzip_ = false;
  int64_t pos_ = 0;
};

uint32_t be32(const unsigned char* b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;  // row-major, prod(dims) bytes
  int64_t header = 0;         // bytes before the data
  bool gzip = false;          // offsets in messages are of the decompressed data
};

// Reads a whole unsigned-byte IDX file: magic, big-endian dims (each in [1, max_dims[i]]), exactly
// prod(dims) data bytes and nothing after them.
IdxArray read_idx(const std::string& path, uint32_t magic, const std::vector<int64_t>& max_dims, const char* what) {
  ByteStream s(path);
  const int64_t ndim = static_cast<int64_t>(max_dims.size());
  IdxArray a;
  a.header = 4 + 4 * ndim;
  unsigned char hdr[4 + 4 * 4];
  int64_t got = s.read(hdr, 4);
  VGG_CHECK(got == 4, "load_idx: '", path, "' is truncated in its header: expected ", a.header,
            " header bytes, the data ends at ", s.where(got));
  const uint32_t m = be32(hdr);
  VGG_CHECK(m == magic, "load_idx: '", path, "' has magic ", hex32(m), " at offset 0, expected ", hex32(magic), " (",
            what, ")");
  got += s.read(hdr + 4, a.header - 4);
  VGG_CHECK(got == a.header, "load_idx: '", path, "' is truncated in its header: expected ", a.header,
            " header bytes, the data ends at ", s.where(got));
  int64_t total = 1;
  for (int64_t i = 0; i < ndim; ++i) {
    const int64_t d = be32(hdr + 4 + 4 * i);
    VGG_CHECK(d >= 1 && d <= max_dims[i], "load_idx: '", path, "' has dimension ", i, " = ", d, " at ",
              s.where(4 + 4 * i), ", expected 1 to ", max_dims[i]);
    a.dims.push_back(d);
    total *= d;
  }
  // grow the buffer as data arrives, so a lying header cannot make us allocate more than the file holds
  int64_t done = 0;
  while (done < total) {
    const int64_t step = std::min<int64_t>(total - done, int64_t{1} << 24);
    a.data.resize(static_cast<size_t>(done + step));
    const int64_t r = s.read(a.data.data() + done, step);
    done += r;
    if (r < step) break;
  }
  VGG_CHECK(done == total, "load_idx: '", path, "' is truncated: expected ", total, " data bytes from offset ",
            a.header, ", the data ends at ", s.where(a.header + done));
  unsigned char extra = 0;
  VGG_CHECK(s.read(&extra, 1) == 0, "load_idx: '", path, "' has trailing data at ", s.where(a.header + total),
            " (the header promises ", total, " data bytes after ", a.header, " header bytes)");
  a.gzip = s.gzip();
  return a;
}

}  // namespace

ImageSet load_idx(const std::string& images_path, const std::string& labels_path, int64_t pad_to, int64_t limit,
                  int64_t num_classes) {
  VGG_CHECK(pad_to >= 0, "load_idx: pad_to must be >= 0, got ", pad_to);
  VGG_CHECK(limit >= 0, "load_idx: limit must be >= 0, got ", limit);
  VGG_CHECK(num_classes >= 1 && num_classes <= 256, "load_idx: num_classes must be in [1, 256], got ", num_classes);
  IdxArray im =
      read_idx(images_path, kImagesMagic, {kMaxItems, kMaxSide, kMaxSide}, "IDX unsigned-byte images [n, h, w]");
  IdxArray lb = read_idx(labels_path, kLabelsMagic, {kMaxItems}, "IDX unsigned-byte labels [n]");
  VGG_CHECK(im.dims[0] == lb.dims[0], "load_idx: '", images_path, "' holds ", im.dims[0], " images but '", labels_path,
            "' holds ", lb.dims[0], " labels");
  for (size_t i = 0; i < lb.data.size(); ++i)
    VGG_CHECK(lb.data[i] < num_classes, "load_idx: '", labels_path, "' has label ", int(lb.data[i]), " at ",
              where(lb.header + static_cast<int64_t>(i), lb.gzip), ", expected a value below ",
              num_classes);

  const int64_t h0 = im.dims[1], w0 = im.dims[2];
  VGG_CHECK(pad_to == 0 || (pad_to >= h0 && pad_to >= w0), "load_idx: pad_to ", pad_to, " is smaller than the ", h0,
            "x", w0, " images of '", images_path, "'");
  ImageSet set;
  set.n = limit > 0 ? std::min(limit, im.dims[0]) : im.dims[0];
  set.h = pad_to > 0 ? pad_to : h0;
  set.w = pad_to > 0 ? pad_to : w0;
  set.num_classes = num_classes;
  float lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = static_cast<float>(v / 127.5 - 1.0);
  set.images = empty({set.n, 1, set.h, set.w}, DType::F32);
  float* out = set.images.data<float>();
  const int64_t top = (set.h - h0) / 2, left = (set.w - w0) / 2, plane = set.h * set.w;
  for (int64_t i = 0; i < set.n; ++i) {
    float* o = out + i * plane;
    if (pad_to > 0) std::fill(o, o + plane, -1.0f);
    const uint8_t* src = im.data.data() + i * h0 * w0;
    for (int64_t r = 0; r < h0; ++r)
      for (int64_t c = 0; c < w0; ++c) o[(top + r) * set.w + left + c] = lut[src[r * w0 + c]];
  }
  set.labels = empty({set.n}, DType::I64);
  int64_t* lab = set.labels.data<int64_t>();
  for (int64_t i = 0; i < set.n; ++i) lab[i] = lb.data[static_cast<size_t>(i)];
  return set;
}

std::string default_data_dir() {
  const char* env = std::getenv("VGG_DATA_DIR");
  if (env != nullptr && *env != '\0') return env;
  return "/usr/share/datasets/fashion-mnist";
}

ImageSet load_fashion_mnist(bool train, const std::string& dir_in, int64_t pad_to, int64_t limit) {
  namespace fs = std::filesystem;
  const std::string dir = dir_in.empty() ? default_data_dir() : dir_in;
  const std::string split = train ? "train" : "t10k";
  auto find = [&](const std::string& kind, const std::string& idx) {
    const std::string stem = split + "-" + kind + "-" + idx + "-ubyte";
    for (const std::string& name : {stem + ".gz", stem, split + "-" + kind + "." + idx + "-ubyte"}) {
      std::error_code ec;
      fs::path p = fs::path(dir) / name;
      if (fs::is_regular_file(p, ec)) return p.string();
    }
    return std::string();
  };
  const std::string images = find("images", "idx3"), labels = find("labels", "idx1");
  if (images.empty() || labels.empty()) {
    std::error_code ec;
    const std::string file = split + (images.empty() ? "-images-idx3" : "-labels-idx1") + "-ubyte[.gz]";
    const std::string missing = fs::is_directory(dir, ec) ? "no " + file : "the directory does not exist";
    VGG_FAIL("Fashion-MNIST not found in ", dir, " (", missing,
             "; install the Debian package dataset-fashion-mnist, or point VGG_DATA_DIR (or vgg_pretrain's --data) at a folder with ", split,
             "-images-idx3-ubyte[.gz] and ", split, "-labels-idx1-ubyte[.gz])");
  }
  return load_idx(images, labels, pad_to, limit, 10);
}

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names = {"t-shirt/top", "trouser", "pullover", "dress", "coat",
                                                 "sandal",      "shirt",   "sneaker",  "bag",   "ankle boot"};
  return names;
}

Tensor randperm(int64_t n, Generator& g) {
  VGG_CHECK(n >= 0, "randperm: n must be >= 0, got ", n);
  Tensor out = empty({n}, DType::I64);
  int64_t* p = out.data<int64_t>();
  std::iota(p, p + n, int64_t{0});
  if (n < 2) return out;
  // two 32-bit words per swap: j = (hi·2³² + lo) mod (i + 1), biased by less than (i + 1)/2⁶⁴
  Tensor words = randint(0, int64_t{1} << 32, {2 * (n - 1)}, {DType::I64}, &g);
  const int64_t* wd = words.data<int64_t>();
  for (int64_t i = n - 1, k = 0; i >= 1; --i, k += 2) {
    const uint64_t r = (static_cast<uint64_t>(wd[k]) << 32) | static_cast<uint64_t>(wd[k + 1]);
    std::swap(p[i], p[static_cast<int64_t>(r % static_cast<uint64_t>(i + 1))]);
  }
  return out;
}

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  VGG_CHECK(epoch >= 0, "epoch_permutation: epoch must be >= 0, got ", epoch);
  Generator g(seed, kShuffleStream + static_cast<uint64_t>(epoch));
  Tensor p = randperm(n, g);
  const int64_t* d = p.data<int64_t>();
  return std::vector<int64_t>(d, d + n);
}

// ---- BatchIterator --------------------------------------------------------------------------
BatchIterator::BatchIterator(const ImageSet& data, int64_t batch, uint64_t seed, bool drop_last)
    : data_(data), batch_(batch), seed_(seed), drop_last_(drop_last) {
  VGG_CHECK(data.images.defined() && data.labels.defined(), "BatchIterator: the image set is empty (no tensors)");
  VGG_CHECK(data.images.dim() >= 1 && data.labels.dim() == 1 && data.images.size(0) == data.labels.size(0),
            "BatchIterator: images ", describe(data.images), " and labels ", describe(data.labels),
            " must have the same first dimension");
  const int64_t n = data.images.size(0);
  VGG_CHECK(n >= 1, "BatchIterator: the image set holds no images");
  VGG_CHECK(batch >= 1, "BatchIterator: batch must be >= 1, got ", batch);
  VGG_CHECK(!drop_last || batch <= n, "BatchIterator: batch ", batch, " exceeds the ", n,
            " images with drop_last (an epoch would be empty)");
}

int64_t BatchIterator::batches_per_epoch() const {
  const int64_t n = data_.images.size(0);
  return drop_last_ ? n / batch_ : (n + batch_ - 1) / batch_;
}

const std::vector<int64_t>& BatchIterator::order() {
  if (order_epoch_ != epoch_) {
    order_ = epoch_permutation(data_.images.size(0), seed_, epoch_);
    order_epoch_ = epoch_;
  }
  return order_;
}

bool BatchIterator::next(Tensor& x, Tensor& y) {
  const int64_t n = data_.images.size(0);
  if (pos_ + (drop_last_ ? batch_ : 1) > n) {
    ++epoch_;
    pos_ = 0;
    return false;
  }
  const int64_t b = std::min(batch_, n - pos_);
  const std::vector<int64_t>& ord = order();
  Tensor idx = from_vector(std::vector<int64_t>(ord.begin() + pos_, ord.begin() + pos_ + b), {b});
  NoGradGuard ng;
  x = ops::index_select(data_.images, 0, idx);
  y = ops::index_select(data_.labels, 0, idx);
  pos_ += b;
  return true;
}

void BatchIterator::next_cycled(Tensor& x, Tensor& y) {
  if (!next(x, y)) VGG_CHECK(next(x, y), "BatchIterator: an epoch yielded no batch");
}

void BatchIterator::set_state(int64_t epoch, int64_t position) {
  const int64_t n = data_.images.size(0);
  VGG_CHECK(epoch >= 0 && position >= 0 && position <= n, "BatchIterator: state (epoch ", epoch, ", position ",
            position, ") is out of range for ", n, " images");
  epoch_ = epoch;
  pos_ = position;
}

}  // namespace vgg::flow
