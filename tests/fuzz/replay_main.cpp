// Replays inputs through a fuzz target without libFuzzer (any compiler): each argument is a file or
// a folder of files; every input must come back without a crash or an unexpected exception. CTest
// runs this over the committed corpus, so each crash reproducer stays a regression test.
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_common.h"

int main(int argc, char** argv) {
  LLVMFuzzerInitialize(&argc, &argv);
  std::vector<std::filesystem::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path a = argv[i];
    if (std::filesystem::is_directory(a)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(a))
        if (e.is_regular_file()) inputs.push_back(e.path());
    } else {
      inputs.push_back(a);
    }
  }
  if (inputs.empty()) {
    std::fprintf(stderr, "replay: no inputs (give files or folders)\n");
    return 2;
  }
  for (const auto& p : inputs) {
    const std::string bytes = vgg::fuzz::read_bytes(p);
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  std::printf("replayed %zu inputs: no crash, no unexpected exception\n", inputs.size());
  return 0;
}
