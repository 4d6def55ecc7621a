// IDX loading (real Fashion-MNIST and malformed files), deterministic batching, PNG files and grids.
// The real-data tests fail, naming the Debian package, when Fashion-MNIST is not installed.
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "tensor/factory.h"
#include "tests/support/test_support.h"
#include "vggflow/data.h"
#include "vggflow/image.h"

using namespace vgg;
namespace fs = std::filesystem;

namespace {

using Bytes = std::vector<uint8_t>;

// A fresh empty directory under the test temp dir.
std::string tmp_dir(const std::string& name) {
  fs::path p = fs::path(::testing::TempDir()) / ("vgg_data_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

void write_file(const std::string& path, const Bytes& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(f.good()) << path;
}

void put32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

// IDX images [n, h, w] with pixel (i, r, c) = pix(i, r, c).
template <typename F>
Bytes idx_images(uint32_t n, uint32_t h, uint32_t w, F pix) {
  Bytes b;
  put32(b, 0x803);
  put32(b, n);
  put32(b, h);
  put32(b, w);
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t r = 0; r < h; ++r)
      for (uint32_t c = 0; c < w; ++c) b.push_back(static_cast<uint8_t>(pix(i, r, c)));
  return b;
}
Bytes idx_images(uint32_t n, uint32_t h, uint32_t w) {
  return idx_images(n, h, w, [](uint32_t i, uint32_t r, uint32_t c) { return (i * 7 + r * 3 + c) % 256; });
}

Bytes idx_labels(const Bytes& labels) {
  Bytes b;
  put32(b, 0x801);
  put32(b, static_cast<uint32_t>(labels.size()));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

// The byte a loaded pixel came from.
int byte_of(double x) { return static_cast<int>(std::lround((x + 1.0) * 127.5)); }

const flow::ImageSet& test_split() {
  static const flow::ImageSet s = flow::load_fashion_mnist(false);
  return s;
}
const flow::ImageSet& train_split() {
  static const flow::ImageSet s = flow::load_fashion_mnist(true);
  return s;
}

std::vector<int64_t> histogram(const Tensor& labels, int64_t k) {
  std::vector<int64_t> h(static_cast<size_t>(k), 0);
  const int64_t* p = labels.data<int64_t>();
  for (int64_t i = 0; i < labels.numel(); ++i) ++h[static_cast<size_t>(p[i])];
  return h;
}

int64_t byte_sum(const Tensor& images, int64_t first, int64_t count) {
  const int64_t plane = images.numel() / images.size(0);
  const float* p = images.data<float>() + first * plane;
  int64_t s = 0;
  for (int64_t i = 0; i < count * plane; ++i) s += byte_of(p[i]);
  return s;
}

}  // namespace

// ---- real Fashion-MNIST -----------------------------------------------------------------------

TEST(DataFashionMnist, TestSplitShapeLabelsAndKnownValues) {
  const flow::ImageSet& s = test_split();
  EXPECT_EQ(s.n, 10000);
  EXPECT_EQ(s.h, 28);
  EXPECT_EQ(s.w, 28);
  EXPECT_EQ(s.images.dtype(), DType::F32);
  EXPECT_EQ(s.images.shape(), (Shape{10000, 1, 28, 28}));
  EXPECT_EQ(s.labels.dtype(), DType::I64);
  EXPECT_EQ(s.labels.shape(), (Shape{10000}));
  EXPECT_EQ(histogram(s.labels, 10), std::vector<int64_t>(10, 1000));
  // the first test image is an ankle boot; byte sums computed independently with numpy from the .gz files
  EXPECT_EQ(s.labels.at({0}), 9);
  EXPECT_EQ(flow::fashion_mnist_classes()[9], "ankle boot");
  EXPECT_EQ(byte_sum(s.images, 0, 1), 33456);
  EXPECT_EQ(byte_sum(s.images, 0, s.n), 573469082);
  const std::vector<int64_t> first10 = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(s.labels.at({i}), first10[static_cast<size_t>(i)]) << i;
  // range exactly [-1, 1], and every value on the byte grid v/127.5 - 1
  const float* p = s.images.data<float>();
  float lo = 2, hi = -2;
  int64_t off_grid = 0;
  for (int64_t i = 0; i < s.images.numel(); ++i) {
    lo = std::min(lo, p[i]);
    hi = std::max(hi, p[i]);
    off_grid += p[i] != static_cast<float>(byte_of(p[i]) / 127.5 - 1.0);
  }
  EXPECT_EQ(lo, -1.0f);
  EXPECT_EQ(hi, 1.0f);
  EXPECT_EQ(off_grid, 0);
}

TEST(DataFashionMnist, TrainSplit) {
  const flow::ImageSet& s = train_split();
  EXPECT_EQ(s.n, 60000);
  EXPECT_EQ(s.images.shape(), (Shape{60000, 1, 28, 28}));
  EXPECT_EQ(histogram(s.labels, 10), std::vector<int64_t>(10, 6000));
  const std::vector<int64_t> first10 = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(s.labels.at({i}), first10[static_cast<size_t>(i)]) << i;
  EXPECT_EQ(byte_sum(s.images, 0, s.n), int64_t{3431114169});
}

TEST(DataFashionMnist, PaddedTo32WithBackgroundBorder) {
  flow::ImageSet p = flow::load_fashion_mnist(false, "", 32, 500);
  const flow::ImageSet& s = test_split();
  ASSERT_EQ(p.images.shape(), (Shape{500, 1, 32, 32}));
  EXPECT_EQ(p.n, 500);
  EXPECT_EQ(p.h, 32);
  EXPECT_EQ(p.w, 32);
  int64_t border_bad = 0, inner_bad = 0;
  for (int64_t i = 0; i < 500; i += 7)
    for (int64_t r = 0; r < 32; ++r)
      for (int64_t c = 0; c < 32; ++c) {
        const double v = p.images.at({i, 0, r, c});
        if (r < 2 || r >= 30 || c < 2 || c >= 30)
          border_bad += v != -1.0;
        else
          inner_bad += v != s.images.at({i, 0, r - 2, c - 2});
      }
  EXPECT_EQ(border_bad, 0);
  EXPECT_EQ(inner_bad, 0);
  EXPECT_EQ(p.labels.to_vector(), ops::slice(s.labels, 0, 0, 500).to_vector());
}

TEST(DataFashionMnist, PlainIdxFilesMatchGzip) {
  // the test split written back as uncompressed IDX files loads to the same tensors
  const flow::ImageSet& s = test_split();
  std::string dir = tmp_dir("plain");
  Bytes im, lb;
  put32(im, 0x803);
  put32(im, 10000);
  put32(im, 28);
  put32(im, 28);
  for (int64_t i = 0; i < s.images.numel(); ++i) im.push_back(static_cast<uint8_t>(byte_of(s.images.data<float>()[i])));
  for (int64_t i = 0; i < s.n; ++i) lb.push_back(static_cast<uint8_t>(s.labels.data<int64_t>()[i]));
  write_file(dir + "/t10k-images-idx3-ubyte", im);
  write_file(dir + "/t10k-labels-idx1-ubyte", idx_labels(lb));
  flow::ImageSet q = flow::load_fashion_mnist(false, dir);
  ASSERT_EQ(q.images.shape(), s.images.shape());
  EXPECT_EQ(std::memcmp(q.images.data_ptr(), s.images.data_ptr(), sizeof(float) * s.images.numel()), 0);
  EXPECT_EQ(q.labels.to_vector(), s.labels.to_vector());
  fs::remove_all(dir);
}

TEST(DataFashionMnist, TruncatedGzipNamesTheFile) {
  std::string dir = tmp_dir("gz");
  const std::string src = flow::default_data_dir() + "/t10k-labels-idx1-ubyte.gz";
  std::ifstream f(src, std::ios::binary);
  ASSERT_TRUE(f.good()) << "Fashion-MNIST not found in " << flow::default_data_dir()
                        << " (install the Debian package dataset-fashion-mnist)";
  Bytes b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  b.resize(b.size() / 2);
  write_file(dir + "/t10k-labels-idx1-ubyte.gz", b);
  write_file(dir + "/t10k-images-idx3-ubyte", idx_images(10000, 1, 1));
  EXPECT_TRUE(test::throws_error([&] { flow::load_fashion_mnist(false, dir); },
                                 {"t10k-labels-idx1-ubyte.gz", "truncated gzip data at offset",
                                  "of the decompressed data"}));
  fs::remove_all(dir);
}

TEST(DataFashionMnist, BatchesOfAnEpochCoverTheTestSplit) {
  flow::BatchIterator it(test_split(), 128, 7, /*drop_last=*/false);
  EXPECT_EQ(it.batches_per_epoch(), 79);
  Tensor x, y;
  std::vector<int64_t> hist(10, 0);
  int64_t batches = 0, images = 0;
  while (it.next(x, y)) {
    ++batches;
    images += x.size(0);
    EXPECT_EQ(x.shape(), (Shape{y.size(0), 1, 28, 28}));
    for (int64_t i = 0; i < y.numel(); ++i) ++hist[static_cast<size_t>(y.data<int64_t>()[i])];
  }
  EXPECT_EQ(batches, 79);
  EXPECT_EQ(images, 10000);
  EXPECT_EQ(hist, std::vector<int64_t>(10, 1000));
}

TEST(DataFashionMnist, GridOfTestImagesRoundTripsThroughPng) {
  flow::ImageSet p = flow::load_fashion_mnist(false, "", 32, 16);
  Tensor grid = flow::make_grid(p.images, 4);
  ASSERT_EQ(grid.shape(), (Shape{1, 4 * 34 + 2, 4 * 34 + 2}));
  std::string path = tmp_dir("grid") + "/grid.png";
  flow::write_png(path, grid);
  Tensor back = flow::read_png(path);
  EXPECT_EQ(back.shape(), grid.shape());
  EXPECT_EQ(back.to_vector(), grid.to_vector());
}

TEST(DataFashionMnist, MissingDirectoryNamesThePackage) {
  EXPECT_TRUE(test::throws_error([] { flow::load_fashion_mnist(true, "/nonexistent/fmnist"); },
                                 {"Fashion-MNIST not found in /nonexistent/fmnist", "does not exist",
                                  "dataset-fashion-mnist", "VGG_DATA_DIR", "train-images-idx3-ubyte[.gz]"}));
  std::string dir = tmp_dir("empty");
  EXPECT_TRUE(test::throws_error([&] { flow::load_fashion_mnist(false, dir); },
                                 {"Fashion-MNIST not found in", "no t10k-images-idx3-ubyte[.gz]",
                                  "dataset-fashion-mnist"}));
  write_file(dir + "/t10k-images-idx3-ubyte", idx_images(2, 3, 3));
  EXPECT_TRUE(test::throws_error([&] { flow::load_fashion_mnist(false, dir); },
                                 {"no t10k-labels-idx1-ubyte[.gz]", "dataset-fashion-mnist"}));
  fs::remove_all(dir);
}

TEST(DataFashionMnist, DataDirFromEnvironment) {
  const char* old = std::getenv("VGG_DATA_DIR");
  const std::string saved = old ? old : "";
  setenv("VGG_DATA_DIR", "/somewhere/else", 1);
  EXPECT_EQ(flow::default_data_dir(), "/somewhere/else");
  EXPECT_TRUE(test::throws_error([] { flow::load_fashion_mnist(true); }, {"not found in /somewhere/else"}));
  setenv("VGG_DATA_DIR", "", 1);
  EXPECT_EQ(flow::default_data_dir(), "/usr/share/datasets/fashion-mnist");
  if (old)
    setenv("VGG_DATA_DIR", saved.c_str(), 1);
  else
    unsetenv("VGG_DATA_DIR");
}

// ---- IDX files written here ---------------------------------------------------------------------

TEST(DataIdx, SyntheticValuesPaddingLimitAndNames) {
  std::string dir = tmp_dir("synthetic");
  // dotted MNIST-style names are accepted too
  write_file(dir + "/train-images.idx3-ubyte", idx_images(5, 3, 4));
  write_file(dir + "/train-labels.idx1-ubyte", idx_labels({3, 0, 9, 9, 1}));
  flow::ImageSet s = flow::load_fashion_mnist(true, dir);
  ASSERT_EQ(s.images.shape(), (Shape{5, 1, 3, 4}));
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t r = 0; r < 3; ++r)
      for (int64_t c = 0; c < 4; ++c)
        EXPECT_EQ(s.images.at({i, 0, r, c}), static_cast<float>(((i * 7 + r * 3 + c) % 256) / 127.5 - 1.0));
  EXPECT_EQ(s.labels.to_vector(), (std::vector<double>{3, 0, 9, 9, 1}));
  // pad 3x4 onto 6x6: rows 1..3 (one above, two below), columns 1..4
  flow::ImageSet p = flow::load_idx(dir + "/train-images.idx3-ubyte", dir + "/train-labels.idx1-ubyte", 6, 2);
  ASSERT_EQ(p.images.shape(), (Shape{2, 1, 6, 6}));
  EXPECT_EQ(p.n, 2);
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t r = 0; r < 6; ++r)
      for (int64_t c = 0; c < 6; ++c) {
        const bool inside = r >= 1 && r < 4 && c >= 1 && c < 5;
        EXPECT_EQ(p.images.at({i, 0, r, c}), inside ? s.images.at({i, 0, r - 1, c - 1}) : -1.0) << r << "," << c;
      }
  EXPECT_EQ(p.labels.to_vector(), (std::vector<double>{3, 0}));
  // a limit beyond the file keeps everything; num_classes widens the label check
  EXPECT_EQ(flow::load_idx(dir + "/train-images.idx3-ubyte", dir + "/train-labels.idx1-ubyte", 0, 99).n, 5);
  write_file(dir + "/l12", idx_labels({11, 0, 1, 2, 3}));
  EXPECT_EQ(flow::load_idx(dir + "/train-images.idx3-ubyte", dir + "/l12", 0, 0, 12).labels.at({0}), 11);
  fs::remove_all(dir);
}

TEST(DataIdx, RejectsMalformedFiles) {
  std::string dir = tmp_dir("bad");
  const std::string im = dir + "/im", lb = dir + "/lb", good_im = dir + "/good_im", good_lb = dir + "/good_lb";
  write_file(good_im, idx_images(3, 4, 5));  // 16 + 60 bytes
  write_file(good_lb, idx_labels({1, 2, 3}));
  ASSERT_EQ(flow::load_idx(good_im, good_lb).n, 3);

  // missing files
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(dir + "/none", good_lb); },
                                 {"cannot open", "/none", "No such file"}));
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(dir, good_lb); }, {"is a directory"}));
  // bad magic: a label file given as images, and garbage
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(good_lb, good_lb); },
                                 {good_lb.c_str(), "magic 0x00000801 at offset 0", "expected 0x00000803"}));
  write_file(im, {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '!', 0, 0, 0, 0, 1});
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(im, good_lb); }, {"magic 0x68656c6c"}));
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(good_im, good_im); }, {"expected 0x00000801"}));
  // truncated header
  Bytes b = idx_images(3, 4, 5);
  write_file(im, Bytes(b.begin(), b.begin() + 10));
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(im, good_lb); },
                                 {im.c_str(), "truncated in its header", "expected 16", "ends at offset 10"}));
  write_file(im, Bytes(b.begin(), b.begin() + 2));
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(im, good_lb); }, {"truncated in its header", "offset 2"}));
  // truncated payload
  write_file(im, Bytes(b.begin(), b.end() - 10));
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(im, good_lb); },
                                 {im.c_str(), "expected 60 data bytes from offset 16", "ends at offset 66"}));
  // trailing bytes
  Bytes t = b;
  t.push_back(0);
  write_file(im, t);
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(im, good_lb); }, {im.c_str(), "trailing data at offset 76"}));
  Bytes tl = idx_labels({1, 2, 3});
  tl.push_back(7);
  write_file(lb, tl);
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(good_im, lb); }, {lb.c_str(), "trailing data at offset 11"}));
  // label out of range (offset of the byte)
  write_file(lb, idx_labels({1, 10, 2}));
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(good_im, lb); },
                                 {lb.c_str(), "label 10 at offset 9", "below 10"}));
  // count mismatch
  write_file(lb, idx_labels({1, 2, 3, 4}));
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(good_im, lb); }, {"holds 3 images but", "holds 4 labels"}));
  // insane dimensions
  write_file(im, idx_images(3, 0, 5));
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(im, good_lb); }, {"dimension 1 = 0 at offset 8", "1 to 4096"}));
  Bytes big;
  put32(big, 0x803);
  put32(big, 3);
  put32(big, 5000);
  put32(big, 5);
  write_file(im, big);
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(im, good_lb); }, {"dimension 1 = 5000", "1 to 4096"}));
  Bytes many;
  put32(many, 0x803);
  put32(many, 0xffffffffu);
  put32(many, 4096);
  put32(many, 4096);
  write_file(im, many);
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(im, good_lb); }, {"dimension 0 = 4294967295", "1 to 10000000"}));
  // a header promising far more data than the file holds fails on the data, without allocating it
  Bytes huge;
  put32(huge, 0x803);
  put32(huge, 10000000);
  put32(huge, 4096);
  put32(huge, 4096);
  huge.resize(100, 0);
  write_file(im, huge);
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(im, good_lb); }, {"truncated", "ends at offset 100"}));
  // arguments
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(good_im, good_lb, 3); }, {"pad_to 3 is smaller than the 4x5"}));
  EXPECT_TRUE(test::throws_error([&] { flow::load_idx(good_im, good_lb, 0, -1); }, {"limit must be >= 0"}));
  fs::remove_all(dir);
}

// ---- BatchIterator --------------------------------------------------------------------------------

namespace {
// n images whose pixels and label both equal their index.
flow::ImageSet indexed_set(int64_t n) {
  flow::ImageSet s;
  s.n = n;
  s.h = s.w = 2;
  s.images = empty({n, 1, 2, 2});
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < 4; ++k) s.images.data<float>()[i * 4 + k] = static_cast<float>(i);
  s.labels = arange(0, static_cast<double>(n), 1, {DType::I64});
  return s;
}

// The label sequences of the next `count` batches (crossing epochs).
std::vector<std::vector<double>> take(flow::BatchIterator& it, int count) {
  std::vector<std::vector<double>> out;
  Tensor x, y;
  for (int i = 0; i < count; ++i) {
    it.next_cycled(x, y);
    EXPECT_EQ(x.size(0), y.size(0));
    for (int64_t j = 0; j < y.numel(); ++j) EXPECT_EQ(x.at({j, 0, 1, 1}), y.at({j}));  // rows stay paired
    out.push_back(y.to_vector());
  }
  return out;
}
}  // namespace

TEST(BatchIterator, EachEpochIsAPermutation) {
  flow::ImageSet s = indexed_set(10);
  flow::BatchIterator it(s, 3, 5, /*drop_last=*/false);
  EXPECT_EQ(it.batches_per_epoch(), 4);
  std::vector<std::vector<double>> seen(3);
  for (int e = 0; e < 3; ++e) {
    EXPECT_EQ(it.epoch(), e);
    Tensor x, y;
    std::vector<int64_t> sizes;
    while (it.next(x, y)) {
      sizes.push_back(y.size(0));
      for (double v : y.to_vector()) seen[e].push_back(v);
    }
    EXPECT_EQ(sizes, (std::vector<int64_t>{3, 3, 3, 1}));
    std::vector<double> sorted = seen[e];
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, (std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})) << "epoch " << e;
  }
  EXPECT_EQ(it.epoch(), 3);
  EXPECT_NE(seen[0], seen[1]);
  EXPECT_NE(seen[1], seen[2]);
}

TEST(BatchIterator, DropLastSkipsThePartialBatch) {
  flow::ImageSet s = indexed_set(10);
  flow::BatchIterator it(s, 4, 1);
  EXPECT_EQ(it.batches_per_epoch(), 2);
  Tensor x, y;
  std::set<double> seen;
  int batches = 0;
  while (it.next(x, y)) {
    ++batches;
    EXPECT_EQ(y.size(0), 4);
    for (double v : y.to_vector()) seen.insert(v);
  }
  EXPECT_EQ(batches, 2);
  EXPECT_EQ(seen.size(), 8u);  // distinct
  EXPECT_EQ(it.state(), (std::pair<int64_t, int64_t>{1, 0}));
}

TEST(BatchIterator, SameSeedSameBatchesDifferentSeedDifferent) {
  flow::ImageSet s = indexed_set(50);
  flow::BatchIterator a(s, 8, 42), b(s, 8, 42), c(s, 8, 43);
  auto ta = take(a, 20), tb = take(b, 20), tc = take(c, 20);
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, tc);
  EXPECT_EQ(a.epoch(), 3);  // 6 batches per epoch
}

TEST(BatchIterator, ResumeFromStateReproducesTheRest) {
  flow::ImageSet s = indexed_set(23);
  flow::BatchIterator a(s, 5, 9, /*drop_last=*/false);
  take(a, 3);
  auto [epoch, pos] = a.state();
  EXPECT_EQ(epoch, 0);
  EXPECT_EQ(pos, 15);
  auto rest = take(a, 9);  // crosses two epoch boundaries
  flow::BatchIterator b(s, 5, 9, false);
  b.set_state(epoch, pos);
  EXPECT_EQ(take(b, 9), rest);
  EXPECT_EQ(a.state(), b.state());
  EXPECT_TRUE(test::throws_error([&] { b.set_state(0, 24); }, {"out of range for 23 images"}));
  EXPECT_TRUE(test::throws_error([&] { b.set_state(-1, 0); }, {"out of range"}));
}

TEST(BatchIterator, RejectsBadArguments) {
  flow::ImageSet s = indexed_set(4);
  EXPECT_TRUE(test::throws_error([&] { flow::BatchIterator(s, 0, 1); }, {"batch must be >= 1"}));
  EXPECT_TRUE(test::throws_error([&] { flow::BatchIterator(s, 5, 1); }, {"batch 5 exceeds the 4 images"}));
  flow::BatchIterator ok(s, 5, 1, /*drop_last=*/false);
  Tensor x, y;
  ASSERT_TRUE(ok.next(x, y));
  EXPECT_EQ(y.size(0), 4);
  EXPECT_TRUE(test::throws_error([] { flow::BatchIterator(flow::ImageSet{}, 1, 1); }, {"BatchIterator"}));
}

TEST(BatchIterator, PermutationIsUniformAndThreadIndependent) {
  // all 6 orders of 3 items, about equally often over many seeds
  std::map<std::vector<int64_t>, int> counts;
  const int trials = 6000;
  for (int sd = 0; sd < trials; ++sd) ++counts[flow::epoch_permutation(3, static_cast<uint64_t>(sd), 0)];
  EXPECT_EQ(counts.size(), 6u);
  for (auto& [perm, k] : counts) EXPECT_NEAR(k, trials / 6, 150);  // ~5 standard deviations
  // the same permutation for every thread count
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  std::vector<int64_t> one = flow::epoch_permutation(100003, 11, 2);
  omp_set_num_threads(3);
  std::vector<int64_t> three = flow::epoch_permutation(100003, 11, 2);
  omp_set_num_threads(saved);
  EXPECT_EQ(one, three);
  std::vector<int64_t> sorted = one;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 100003; ++i) ASSERT_EQ(sorted[static_cast<size_t>(i)], i);
  // known answers from an independent Python Philox4x32-10 + Fisher-Yates; a change here would change
  // the batches (and so the results) of every run
  EXPECT_EQ(flow::epoch_permutation(10, 0, 0), (std::vector<int64_t>{7, 5, 1, 2, 3, 9, 8, 4, 0, 6}));
  EXPECT_EQ(flow::epoch_permutation(10, 123456789012, 5), (std::vector<int64_t>{6, 4, 5, 9, 1, 8, 0, 2, 7, 3}));
  Generator g(0, flow::kShuffleStream);
  EXPECT_EQ(flow::randperm(10, g).to_vector().size(), 10u);
  EXPECT_EQ(flow::randperm(0, g).numel(), 0);
  EXPECT_EQ(flow::randperm(1, g).to_vector(), (std::vector<double>{0}));
}

// ---- PNG --------------------------------------------------------------------------------------------

namespace {
// Values on the byte grid: v/127.5 - 1 for random bytes v.
Tensor on_grid(const Shape& shape, uint64_t seed) {
  Generator g(seed);
  Tensor v = randint(0, 256, shape, {DType::I64}, &g);
  std::vector<float> out;
  for (double b : v.to_vector()) out.push_back(static_cast<float>(b / 127.5 - 1.0));
  return from_vector(out, shape);
}
}  // namespace

TEST(PngRoundTrip, GreyAndRgbAreExact) {
  std::string dir = tmp_dir("png");
  Tensor grey = on_grid({1, 7, 9}, 1);
  flow::write_png(dir + "/g.png", grey);
  Tensor g = flow::read_png(dir + "/g.png");
  EXPECT_EQ(g.dtype(), DType::F32);
  EXPECT_EQ(g.shape(), (Shape{1, 7, 9}));
  EXPECT_EQ(g.to_vector(), grey.to_vector());
  // [H, W] is grey too
  flow::write_png(dir + "/g2.png", ops::reshape(grey, {7, 9}));
  EXPECT_EQ(flow::read_png(dir + "/g2.png").to_vector(), grey.to_vector());
  // RGB from a non-contiguous f64 view
  Tensor rgb = on_grid({3, 6, 5}, 2);
  Tensor view = ops::transpose(ops::contiguous(ops::transpose(ops::to(rgb, DType::F64), 1, 2)), 1, 2);
  ASSERT_FALSE(view.is_contiguous());
  flow::write_png(dir + "/c.png", view);
  Tensor c = flow::read_png(dir + "/c.png");
  EXPECT_EQ(c.shape(), (Shape{3, 6, 5}));
  EXPECT_EQ(c.to_vector(), rgb.to_vector());
  // written through a temporary that is renamed: none is left behind, and overwriting works
  flow::write_png(dir + "/c.png", grey);
  EXPECT_EQ(flow::read_png(dir + "/c.png").shape(), (Shape{1, 7, 9}));
  EXPECT_FALSE(fs::exists(dir + "/c.png.tmp"));
  fs::remove_all(dir);
}

TEST(PngRoundTrip, ClampsRoundsHalfUpAndMapsNanToBlack) {
  std::string dir = tmp_dir("clamp");
  Tensor x = from_vector(std::vector<double>{-3.0, -1.0, 0.0, 1.0, 7.0, NAN, 1.0 / 127.5 - 1.0, 0.999}, {1, 2, 4},
                         {DType::F64});
  flow::write_png(dir + "/x.png", x);
  std::vector<double> bytes;
  for (double v : flow::read_png(dir + "/x.png").to_vector()) bytes.push_back(byte_of(v));
  EXPECT_EQ(bytes, (std::vector<double>{0, 0, 128, 255, 255, 0, 1, 255}));
  fs::remove_all(dir);
}

TEST(PngRoundTrip, ErrorsNameThePath) {
  std::string dir = tmp_dir("pngerr");
  Tensor img = zeros({1, 2, 2});
  EXPECT_TRUE(test::throws_error([&] { flow::write_png("/nonexistent/dir/a.png", img); },
                                 {"write_png", "/nonexistent/dir/a.png"}));
  EXPECT_TRUE(test::throws_error([&] { flow::write_png(dir + "/a.png", zeros({2, 3, 3})); },
                                 {"write_png", "a.png", "[3, H, W]"}));
  EXPECT_TRUE(test::throws_error([&] { flow::write_png(dir + "/a.png", zeros({2, 2}, {DType::I64})); },
                                 {"write_png", "float"}));
  EXPECT_TRUE(test::throws_error([&] { flow::read_png(dir + "/missing.png"); }, {"read_png", "missing.png"}));
  write_file(dir + "/text.png", {'n', 'o', 't', ' ', 'a', ' ', 'p', 'n', 'g'});
  EXPECT_TRUE(test::throws_error([&] { flow::read_png(dir + "/text.png"); }, {"read_png", "text.png"}));
  fs::remove_all(dir);
}

TEST(PngGrid, Geometry) {
  // 5 images of [2, 4, 6] in rows of 3: 2 rows, the last with one empty cell
  Tensor imgs = test::rnd({5, 2, 4, 6}, 3, DType::F32);
  Tensor g = flow::make_grid(imgs, 3, 2, 0.25);
  ASSERT_EQ(g.shape(), (Shape{2, 2 * (4 + 2) + 2, 3 * (6 + 2) + 2}));
  EXPECT_EQ(g.dtype(), DType::F32);
  std::vector<std::vector<int>> owner(14, std::vector<int>(26, -1));
  for (int k = 0; k < 5; ++k) {
    const int y0 = 2 + (k / 3) * 6, x0 = 2 + (k % 3) * 8;
    for (int ch = 0; ch < 2; ++ch)
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 6; ++c) {
          EXPECT_EQ(g.at({ch, y0 + r, x0 + c}), imgs.at({k, ch, r, c}));
          owner[y0 + r][x0 + c] = k;
        }
  }
  int pad = 0;
  for (int ch = 0; ch < 2; ++ch)
    for (int r = 0; r < 14; ++r)
      for (int c = 0; c < 26; ++c)
        if (owner[r][c] < 0) {
          EXPECT_EQ(g.at({ch, r, c}), 0.25);
          ++pad;
        }
  EXPECT_EQ(pad, 2 * (14 * 26 - 5 * 24));
  // fewer images than nrow: one row as wide as the images; no padding: plain concatenation
  EXPECT_EQ(flow::make_grid(imgs, 8).shape(), (Shape{2, 4 + 4, 5 * 8 + 2}));
  Tensor two = ops::slice(imgs, 0, 0, 2);
  Tensor cat = flow::make_grid(two, 2, 0);
  ASSERT_EQ(cat.shape(), (Shape{2, 4, 12}));
  EXPECT_TRUE(test::all_close(ops::slice(cat, 2, 0, 6), ops::reshape(ops::slice(two, 0, 0, 1), {2, 4, 6}), 0, 0));
  EXPECT_TRUE(test::all_close(ops::slice(cat, 2, 6, 12), ops::reshape(ops::slice(two, 0, 1, 2), {2, 4, 6}), 0, 0));
  EXPECT_TRUE(
      test::throws_error([&] { flow::make_grid(ops::reshape(imgs, {10, 4, 6}), 3); }, {"make_grid", "[N, C, H, W]"}));
  EXPECT_TRUE(test::throws_error([&] { flow::make_grid(imgs, 0); }, {"nrow must be >= 1"}));
}
