// Shared pieces of the fuzz targets (tests/fuzz): each target is one LLVMFuzzerTestOneInput that
// feeds untrusted bytes to a reader and lets only vgg::Error through as an expected outcome. Any
// other exception (a raw parser error, std::bad_alloc from a size taken on trust), a crash, a
// sanitizer report or a hang is a finding.
//
// Built two ways (tests/fuzz/CMakeLists.txt):
//   clang -fsanitize=fuzzer,address,undefined   tools/test --fuzz SECONDS: libFuzzer explores from
//                                                the committed corpus corpus/<target>/
//   any compiler, with replay_main.cpp          CTest fuzz.replay_<target>: every committed input,
//                                                crash reproducers included, in every build
// VGG_FUZZ_WRITE_SEEDS=DIR makes a target write its valid seed files into DIR and exit (how the
// committed seeds were made: tools/test --fuzz-seeds).
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tensor/error.h"

namespace vgg::fuzz {

// A file of this process holding the bytes (the readers take paths).
inline std::string as_file(const uint8_t* data, size_t size, const std::string& tag) {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("vgg_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  const std::string p = (dir / tag).string();
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  f.close();
  if (!f) std::abort();  // the harness itself failed: not a finding in the reader
  return p;
}

// Runs f; a vgg::Error (bad input, refused in one line) is the expected way to fail.
template <class F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const vgg::Error&) {
  }
}

// The seed directory when VGG_FUZZ_WRITE_SEEDS is set, else empty.
inline std::filesystem::path seed_dir() {
  const char* d = std::getenv("VGG_FUZZ_WRITE_SEEDS");
  if (!d || !*d) return {};
  std::filesystem::create_directories(d);
  return d;
}

inline void write_bytes(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
}

inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

}  // namespace vgg::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv);
