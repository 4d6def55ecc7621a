#include "tensor/npy.h"

#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "tensor/factory.h"

namespace vgg {

namespace {
const char* descr_of(DType t) {
  switch (t) {
    case DType::F32: return "<f4";
    case DType::F64: return "<f8";
    case DType::I32: return "<i4";
    case DType::I64: return "<i8";
    case DType::Bool: return "|b1";
    default: return nullptr;
  }
}
}  // namespace

void save_npy(const std::string& path, const Tensor& t0) {
  Tensor t = contiguous_raw(to_device_raw(t0, Device::cpu()));
  if (t.dtype() == DType::BF16) t = cast_raw(t, DType::F32);
  std::ostringstream h;
  h << "{'descr': '" << descr_of(t.dtype()) << "', 'fortran_order': False, 'shape': (";
  for (size_t i = 0; i < t.shape().size(); ++i) h << t.shape()[i] << (t.shape().size() == 1 ? "," : (i + 1 < t.shape().size() ? ", " : ""));
  h << "), }";
  std::string header = h.str();
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    VGG_CHECK(f.good(), "save_npy: cannot open '", path, "' for writing");
    const char magic[] = "\x93NUMPY\x01\x00";
    f.write(magic, 8);
    uint16_t hl = static_cast<uint16_t>(header.size());
    f.write(reinterpret_cast<const char*>(&hl), 2);
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    f.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * itemsize(t.dtype())));
    VGG_CHECK(f.good(), "save_npy: write to '", path, "' failed");
  }
  VGG_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, "save_npy: cannot rename into '", path, "'");
}

Tensor load_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  VGG_CHECK(f.good(), "load_npy: cannot open '", path, "'");
  char magic[8];
  f.read(magic, 8);
  VGG_CHECK(f.gcount() == 8 && std::string(magic, 6) == "\x93NUMPY", "load_npy: '", path, "' is not a .npy file");
  uint32_t hl = 0;
  if (magic[6] == 1) {
    uint16_t h16 = 0;
    f.read(reinterpret_cast<char*>(&h16), 2);
    hl = h16;
  } else if (magic[6] == 2 || magic[6] == 3) {
    f.read(reinterpret_cast<char*>(&hl), 4);
  } else {
    VGG_FAIL("load_npy: '", path, "' has unsupported format version ", int(magic[6]));
  }
  VGG_CHECK(f.good() && hl < (1u << 20), "load_npy: '", path, "' has a bad header length at offset 8");
  std::string header(hl, '\0');
  f.read(header.data(), hl);
  VGG_CHECK(static_cast<uint32_t>(f.gcount()) == hl, "load_npy: '", path, "' is truncated in its header");
  auto field = [&](const std::string& key) {
    auto p = header.find("'" + key + "'");
    VGG_CHECK(p != std::string::npos, "load_npy: '", path, "' header lacks '", key, "'");
    return header.substr(header.find(':', p) + 1);
  };
  std::string descr = field("descr");
  descr = descr.substr(descr.find('\'') + 1);
  descr = descr.substr(0, descr.find('\''));
  DType dt;
  if (descr == "<f4") dt = DType::F32;
  else if (descr == "<f8") dt = DType::F64;
  else if (descr == "<i4") dt = DType::I32;
  else if (descr == "<i8") dt = DType::I64;
  else if (descr == "|b1") dt = DType::Bool;
  else VGG_FAIL("load_npy: '", path, "' has unsupported dtype '", descr, "'");
  VGG_CHECK(field("fortran_order").find("False") != std::string::npos, "load_npy: '", path,
            "' is in Fortran order (only C order is supported)");
  std::string sh = field("shape");
  sh = sh.substr(sh.find('(') + 1);
  sh = sh.substr(0, sh.find(')'));
  Shape shape;
  std::stringstream ss(sh);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    if (tok.find_first_not_of(" ") == std::string::npos) continue;
    try {
      shape.push_back(std::stoll(tok));
    } catch (...) {
      VGG_FAIL("load_npy: '", path, "' has a bad shape '", sh, "'");
    }
  }
  // the element count and byte size, overflow-checked, against what the file holds: nothing is
  // allocated for a header that promises more than the file has
  VGG_CHECK(static_cast<int>(shape.size()) <= kMaxDims, "load_npy: '", path, "' has ", shape.size(),
            " dims (at most ", kMaxDims, ")");
  int64_t numel = 1;
  for (int64_t d : shape) {
    VGG_CHECK(d >= 0, "load_npy: '", path, "' has a negative dimension in shape '", sh, "'");
    VGG_CHECK(!__builtin_mul_overflow(numel, d, &numel), "load_npy: '", path, "' has a shape '", sh,
              "' whose element count overflows");
  }
  int64_t want64 = 0;
  VGG_CHECK(!__builtin_mul_overflow(numel, static_cast<int64_t>(itemsize(dt)), &want64), "load_npy: '", path,
            "' has a shape '", sh, "' whose byte size overflows");
  const int64_t offset = (magic[6] == 1 ? 10 : 12) + static_cast<int64_t>(hl);
  std::error_code ec;
  const auto file_bytes = static_cast<int64_t>(std::filesystem::file_size(path, ec));
  VGG_CHECK(!ec && file_bytes - offset >= want64, "load_npy: '", path, "' is truncated: shape '", sh, "' needs ",
            want64, " data bytes at offset ", offset, ", the file has ", ec ? 0 : std::max<int64_t>(0, file_bytes - offset));
  Tensor t = empty(shape, dt);
  const auto want = static_cast<std::streamsize>(want64);
  f.read(static_cast<char*>(t.data_ptr()), want);
  VGG_CHECK(f.gcount() == want, "load_npy: '", path, "' is truncated: expected ", want, " data bytes at offset ",
            offset, ", got ", f.gcount());
  if (dt == DType::Bool) {  // numpy writes 0 or 1; any other byte is not a bool
    const auto* b = static_cast<const unsigned char*>(t.data_ptr());
    for (int64_t i = 0; i < numel; ++i)
      VGG_CHECK(b[i] <= 1, "load_npy: '", path, "' has a bool element ", i, " of byte value ", int(b[i]),
                " (only 0 and 1 are bools)");
  }
  return t;
}

}  // namespace vgg
