// .npy reader (tensor/npy.cpp): version, header length, dict fields, shape, dtype, data, bools.
#include "tensor/factory.h"
#include "tensor/npy.h"
#include "tests/fuzz/fuzz_common.h"

using namespace vgg;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const auto dir = fuzz::seed_dir();
  if (dir.empty()) return 0;
  save_npy((dir / "f32.npy").string(), from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}));
  save_npy((dir / "f64.npy").string(), from_vector(std::vector<double>{0.5, -1}, {2}, opts(DType::F64)));
  save_npy((dir / "i64.npy").string(), arange(0, 4, 1, opts(DType::I64)));
  save_npy((dir / "i32.npy").string(), arange(0, 3, 1, opts(DType::I32)));
  save_npy((dir / "bool.npy").string(), from_vector(std::vector<double>{1, 0}, {2}, opts(DType::Bool)));
  save_npy((dir / "scalar.npy").string(), scalar_tensor(7.0));
  save_npy((dir / "empty.npy").string(), zeros({0, 3}));
  // reproducers of fixed findings: a shape whose product overflows behind a 16-byte buffer, a
  // header that promises 16 GB in a 128-byte file, a bool byte that is neither 0 nor 1
  auto npy = [](const std::string& dict, const std::string& data) {
    std::string h = dict;
    while ((10 + h.size() + 1) % 64) h += ' ';
    h += '\n';
    const uint16_t n = static_cast<uint16_t>(h.size());
    return std::string("\x93NUMPY\x01\x00", 8) + std::string(reinterpret_cast<const char*>(&n), 2) + h + data;
  };
  fuzz::write_bytes(dir / "crash-shape-overflow",
                    npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", std::string(16, '\0')));
  fuzz::write_bytes(dir / "crash-huge-header",
                    npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2147483648,), }", std::string(64, '\0')));
  fuzz::write_bytes(dir / "crash-bool-byte", npy("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", "\x01\x07"));
  std::exit(0);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string p = fuzz::as_file(data, size, "input.npy");
  fuzz::expect_clean([&] {
    Tensor t = load_npy(p);
    (void)t.numel();
  });
  return 0;
}
