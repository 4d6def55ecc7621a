// vgg_sd3_fixture DIR: writes the tiny SD3-structured diffusers folder of tests/support/sd3_fixture.h
// (for CTest's train.sd3_pipeline).
#include <cstdio>
#include <exception>

#include "tests/support/sd3_fixture.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: vgg_sd3_fixture DIR\n");
    return 2;
  }
  try {
    vgg::test::write_tiny_sd3_folder(argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vgg_sd3_fixture: %s\n", e.what());
    return 1;
  }
  return 0;
}
