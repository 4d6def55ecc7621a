// Image data sets in the IDX format (MNIST, Fashion-MNIST) and deterministic batching.
//   pixels:   byte v in 0..255 becomes the f32 value v/127.5 − 1 in [−1, 1] (0 → −1 exactly, 255 → 1);
//             round((x + 1)·127.5) recovers v exactly.
//   padding:  pad_to > 0 centres each image on a pad_to × pad_to canvas filled with −1 (the background).
//   files:    gzip'd (detected by the magic 1f 8b) or plain; every header field, the exact file length and
//             every label are checked, and errors name the file and the byte offset (of the decompressed
//             stream for gzip files).
//   batching: epoch e visits the images in a permutation that depends only on (seed, e), so runs give the
//             same batches on every machine and thread count and resume exactly from (epoch, position).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace vgg::flow {

struct ImageSet {
  Tensor images;  // f32 [n, 1, h, w] in [−1, 1], contiguous
  Tensor labels;  // i64 [n], each in [0, num_classes)
  int64_t n = 0, h = 0, w = 0;
  int64_t num_classes = 10;
};

// Reads an IDX image file (magic 0x00000803) and its label file (magic 0x00000801). limit > 0 keeps
// the first `limit` items (the files are still checked completely).
ImageSet load_idx(const std::string& images_path, const std::string& labels_path, int64_t pad_to = 0,
                  int64_t limit = 0, int64_t num_classes = 10);

// $VGG_DATA_DIR when set and not empty, else /usr/share/datasets/fashion-mnist (Debian package
// dataset-fashion-mnist).
std::string default_data_dir();

// The train (60000) or test (10000) split from dir (default_data_dir() when empty). In dir, each file
// may be named train-images-idx3-ubyte.gz, train-images-idx3-ubyte or train-images.idx3-ubyte (t10k-…
// for the test split, …-labels-idx1-… for labels), so any IDX pair such as MNIST works.
ImageSet load_fashion_mnist(bool train, const std::string& dir = "", int64_t pad_to = 0, int64_t limit = 0);

// Class names of Fashion-MNIST by label.
const std::vector<std::string>& fashion_mnist_classes();

// A uniform random permutation of 0..n−1 (i64 [n]): Fisher–Yates driven by 64-bit words from g.
Tensor randperm(int64_t n, Generator& g);
// The visiting order of epoch `epoch`: randperm(n, Generator(seed, kShuffleStream + epoch)).
constexpr uint64_t kShuffleStream = uint64_t{0xDA7A} << 48;
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

// Shuffled mini-batches, epoch after epoch. The data set's tensors are shared, not copied.
class BatchIterator {
 public:
  // drop_last: skip an epoch's final partial batch (needs batch <= n); otherwise it is returned short.
  BatchIterator(const ImageSet& data, int64_t batch, uint64_t seed, bool drop_last = true);

  // The next batch of the current epoch: x f32 [b, 1, h, w], y i64 [b]. At the end of the epoch it
  // returns false, leaves x and y alone and moves to the next epoch, so `while (it.next(x, y))` is one
  // epoch.
  bool next(Tensor& x, Tensor& y);
  // The next batch, crossing into the next epoch when the current one is exhausted (training by steps).
  void next_cycled(Tensor& x, Tensor& y);

  int64_t epoch() const { return epoch_; }
  int64_t position() const { return pos_; }  // images already taken in this epoch
  int64_t batch_size() const { return batch_; }
  int64_t batches_per_epoch() const;
  // (epoch, position): saving it and calling set_state on a fresh iterator with the same data, batch
  // and seed reproduces the remaining batches exactly.
  std::pair<int64_t, int64_t> state() const { return {epoch_, pos_}; }
  void set_state(int64_t epoch, int64_t position);

 private:
  const std::vector<int64_t>& order();

  ImageSet data_;
  int64_t batch_;
  uint64_t seed_;
  bool drop_last_;
  int64_t epoch_ = 0, pos_ = 0;
  int64_t order_epoch_ = -1;
  std::vector<int64_t> order_;
};

}  // namespace vgg::flow
