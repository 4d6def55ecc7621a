#include "tensor/safetensors.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "tensor/factory.h"
#include "tensor/json.h"

namespace vgg {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {
using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference implementation's limit
constexpr const char* kMetadataKey = "__metadata__";

// Byte size of every whole-byte safetensors dtype; 0 for names we do not know.
size_t st_itemsize(const std::string& n) {
  static const std::map<std::string, size_t> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2},  {"BF16", 2},    {"I32", 4},     {"U32", 4},
      {"F32", 4},  {"I64", 8}, {"U64", 8},  {"F64", 8},     {"C64", 8}};
  auto it = sizes.find(n);
  return it == sizes.end() ? 0 : it->second;
}

const char* st_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::Bool: return "BOOL";
  }
  return "?";
}

// The engine dtype a stored dtype is loaded as; nullopt when load_safetensors cannot read it.
std::optional<DType> load_dtype(const std::string& n) {
  if (n == "F32" || n == "F16") return DType::F32;
  if (n == "F64") return DType::F64;
  if (n == "BF16") return DType::BF16;
  if (n == "I32" || n == "I16" || n == "I8" || n == "U8") return DType::I32;
  if (n == "I64") return DType::I64;
  if (n == "BOOL") return DType::Bool;
  return std::nullopt;
}

// Index of the first byte that breaks UTF-8 (overlong forms, surrogates and code points past
// U+10FFFF included), or npos when the text is valid.
size_t utf8_error_at(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned c = p[i];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xe0) == 0xc0) len = 2, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0) len = 3, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0) len = 4, cp = c & 0x07, min = 0x10000;
    else return i;
    if (i + len > n) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += len;
  }
  return std::string::npos;
}

bool as_u64(const json& v, uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

struct Header {
  std::vector<TensorInfo> entries;  // sorted by data offset
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // absolute file offset of the data section
  uint64_t data_len = 0;
};

// Reads and validates the header of an open file; `fn` names the caller in messages.
Header parse_header(std::ifstream& f, const std::string& path, const char* fn) {
  const std::string at = std::string(fn) + ": '" + path + "'";
  std::error_code ec;
  uint64_t size = std::filesystem::file_size(path, ec);
  VGG_CHECK(!ec, at, ": cannot get the file size: ", ec.message());
  VGG_CHECK(size >= 8, at, " is too short to be a safetensors file (", size,
            " bytes; the header length alone takes 8)");
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  VGG_CHECK(f.gcount() == 8, at, ": cannot read the header length at offset 0");
  VGG_CHECK(n != 0, at, " has header length 0");
  VGG_CHECK(n <= kMaxHeaderBytes, at, " has header length ", n, ", more than the limit of ", kMaxHeaderBytes,
            " bytes");
  VGG_CHECK(n <= size - 8, at, " has header length ", n, " but only ", size - 8,
            " bytes follow the length field (truncated or not a safetensors file)");
  std::string text(n, '\0');
  f.read(text.data(), static_cast<std::streamsize>(n));
  VGG_CHECK(static_cast<uint64_t>(f.gcount()) == n, at, ": cannot read the ", n, "-byte header at offset 8");
  size_t bad = utf8_error_at(text);
  VGG_CHECK(bad == std::string::npos, at, ": header is not UTF-8 text (bad byte at offset ", 8 + bad, ")");

  Header h;
  h.data_start = 8 + n;
  h.data_len = size - 8 - n;
  // strict: invalid JSON, numbers out of range and keys given twice (in any object) are refused
  const json j = parse_json(text, at + ": header");
  VGG_CHECK(j.is_object(), at, ": header is not a JSON object (it is ", j.type_name(), ")");

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    if (name == kMetadataKey) {
      VGG_CHECK(e.is_object(), at, ": __metadata__ is not a string -> string object (it is ", e.type_name(), ")");
      for (auto m = e.begin(); m != e.end(); ++m) {
        VGG_CHECK(m.value().is_string(), at, ": __metadata__ is not a string -> string object (key '", m.key(),
                  "' has a ", m.value().type_name(), " value)");
        h.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string tn = at + ": tensor '" + name + "'";
    VGG_CHECK(e.is_object(), tn, " is not a JSON object (it is ", e.type_name(), ")");
    for (auto fld = e.begin(); fld != e.end(); ++fld)
      VGG_CHECK(fld.key() == "dtype" || fld.key() == "shape" || fld.key() == "data_offsets", tn,
                " has an unknown field '", fld.key(), "' (expected dtype, shape, data_offsets)");
    for (const char* k : {"dtype", "shape", "data_offsets"}) VGG_CHECK(e.contains(k), tn, " lacks '", k, "'");

    TensorInfo info;
    info.name = name;
    const json& dt = e["dtype"];
    VGG_CHECK(dt.is_string(), tn, ": dtype ", dt.dump(), " is not a string");
    info.dtype = dt.get<std::string>();
    size_t isz = st_itemsize(info.dtype);
    VGG_CHECK(isz != 0, tn, " has unknown or unsupported dtype '", info.dtype, "'");

    const json& sh = e["shape"];
    VGG_CHECK(sh.is_array(), tn, ": shape ", sh.dump(), " is not an array");
    uint64_t elems = 1;
    bool overflow = false;
    for (const json& d : sh) {
      uint64_t v = 0;
      VGG_CHECK(as_u64(d, v) && v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), tn, ": shape ",
                sh.dump(), " must hold non-negative integers");
      info.shape.push_back(static_cast<int64_t>(v));
      overflow = overflow || __builtin_mul_overflow(elems, v, &elems);
    }
    uint64_t bytes = 0;
    overflow = overflow || __builtin_mul_overflow(elems, static_cast<uint64_t>(isz), &bytes);
    VGG_CHECK(!overflow, tn, ": shape ", sh.dump(), " of ", info.dtype, " overflows 64-bit byte counts");

    const json& off = e["data_offsets"];
    VGG_CHECK(off.is_array() && off.size() == 2 && as_u64(off[0], info.begin) && as_u64(off[1], info.end), tn,
              ": data_offsets ", off.dump(), " must be two non-negative integers [begin, end]");
    VGG_CHECK(info.begin <= info.end, tn, " has data_offsets [", info.begin, ", ", info.end, "] with begin > end");
    VGG_CHECK(info.end <= h.data_len, tn, " has data_offsets [", info.begin, ", ", info.end,
              "] that end past the data section (", h.data_len, " bytes at file offset ", h.data_start, ")");
    VGG_CHECK(info.end - info.begin == bytes, tn, " has shape ", shape_str(info.shape), " and dtype ", info.dtype,
              " (", bytes, " bytes) but data_offsets [", info.begin, ", ", info.end, "] span ",
              info.end - info.begin, " bytes");
    h.entries.push_back(std::move(info));
  }

  std::stable_sort(h.entries.begin(), h.entries.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t prev_end = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo& e : h.entries) {
    VGG_CHECK(e.begin >= prev_end, at, ": tensors '", prev ? prev->name : "", "' [", prev ? prev->begin : 0, ", ",
              prev_end, ") and '", e.name, "' [", e.begin, ", ", e.end, ") overlap");
    VGG_CHECK(e.begin == prev_end, at, ": ", e.begin - prev_end, " unused bytes at data offset ", prev_end,
              " before tensor '", e.name, "' (tensors must be packed)");
    prev_end = e.end;
    prev = &e;
  }
  VGG_CHECK(prev_end == h.data_len, at, ": ", h.data_len - prev_end, " bytes of trailing data after the last tensor",
            " (data offset ", prev_end, ", file offset ", h.data_start + prev_end, ")");
  return h;
}

// Reads `count` elements of type Src at the stream's position and widens them into dst.
template <typename Src, typename Dst, typename Conv>
bool read_widened(std::ifstream& f, Dst* dst, int64_t count, Conv conv) {
  constexpr int64_t kChunk = 1 << 18;
  std::vector<Src> buf(static_cast<size_t>(std::min(count, kChunk)));
  for (int64_t done = 0; done < count;) {
    int64_t m = std::min(count - done, kChunk);
    auto bytes = static_cast<std::streamsize>(m * static_cast<int64_t>(sizeof(Src)));
    f.read(reinterpret_cast<char*>(buf.data()), bytes);
    if (f.gcount() != bytes) return false;
    for (int64_t i = 0; i < m; ++i) dst[done + i] = conv(buf[static_cast<size_t>(i)]);
    done += m;
  }
  return true;
}

std::ifstream open_for_reading(const std::string& path, const char* fn) {
  std::ifstream f(path, std::ios::binary);
  VGG_CHECK(f.good(), fn, ": cannot open '", path, "': ", std::strerror(errno));
  return f;
}
}  // namespace

float half_bits_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h >> 15) << 31;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    // zero or subnormal: mant * 2^-24, exact in float
    float mag = static_cast<float>(mant) * 0x1p-24f;
    std::memcpy(&bits, &mag, 4);
    bits |= sign;
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);  // infinity, or NaN with its payload (quiet bit kept)
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

const Tensor* SafetensorsFile::find(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return &t;
  return nullptr;
}

const Tensor& SafetensorsFile::at(const std::string& name) const {
  const Tensor* t = find(name);
  VGG_CHECK(t != nullptr, "safetensors: no tensor '", name, "' in '", path, "' (", tensors.size(), " tensors)");
  return *t;
}

std::vector<TensorInfo> read_safetensors_header(const std::string& path, std::map<std::string, std::string>* metadata) {
  std::ifstream f = open_for_reading(path, "read_safetensors_header");
  Header h = parse_header(f, path, "read_safetensors_header");
  if (metadata) *metadata = std::move(h.metadata);
  return std::move(h.entries);
}

SafetensorsFile load_safetensors(const std::string& path, std::optional<DType> convert_to) {
  const char* fn = "load_safetensors";
  VGG_CHECK(!convert_to || is_floating(*convert_to), fn, ": convert_to must be a floating dtype, got ",
            dtype_name(*convert_to));
  std::ifstream f = open_for_reading(path, fn);
  Header h = parse_header(f, path, fn);
  SafetensorsFile out;
  out.path = path;
  out.metadata = std::move(h.metadata);
  for (const TensorInfo& e : h.entries) {
    const std::string tn = std::string(fn) + ": '" + path + "': tensor '" + e.name + "'";
    std::optional<DType> dt = load_dtype(e.dtype);
    VGG_CHECK(dt.has_value(), tn, " has dtype ", e.dtype,
              ", which cannot be loaded (supported: F32, F64, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
    VGG_CHECK(e.shape.size() <= static_cast<size_t>(kMaxDims), tn, " has shape ", shape_str(e.shape), " with ",
              e.shape.size(), " dims; at most ", kMaxDims, " are supported");
    try {
      check_shape(e.shape, "shape");  // also an empty tensor's strides must fit in 64 bits
    } catch (const Error& err) {
      VGG_FAIL(tn, ": ", err.what());
    }
    Tensor t = empty(e.shape, *dt);
    const uint64_t pos = h.data_start + e.begin, nbytes = e.end - e.begin;
    f.seekg(static_cast<std::streamoff>(pos));
    bool ok = f.good();
    int64_t n = t.numel();
    if (ok && nbytes > 0) {
      if (e.dtype == "F16") {
        ok = read_widened<uint16_t>(f, t.data<float>(), n, half_bits_to_float);
      } else if (e.dtype == "I16") {
        ok = read_widened<int16_t>(f, t.data<int32_t>(), n, [](int16_t v) { return static_cast<int32_t>(v); });
      } else if (e.dtype == "I8") {
        ok = read_widened<int8_t>(f, t.data<int32_t>(), n, [](int8_t v) { return static_cast<int32_t>(v); });
      } else if (e.dtype == "U8") {
        ok = read_widened<uint8_t>(f, t.data<int32_t>(), n, [](uint8_t v) { return static_cast<int32_t>(v); });
      } else if (e.dtype == "BOOL") {
        // any non-zero byte is true; a bool object must hold exactly 0 or 1
        ok = read_widened<uint8_t>(f, t.data<bool>(), n, [](uint8_t v) { return v != 0; });
      } else {
        f.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(nbytes));
        ok = static_cast<uint64_t>(f.gcount()) == nbytes;
      }
    }
    VGG_CHECK(ok, tn, ": cannot read ", nbytes, " bytes at file offset ", pos);
    if (convert_to && is_floating(t.dtype())) t = cast_raw(t, *convert_to);
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const char* fn = "save_safetensors";
  std::set<std::string> names;
  std::vector<Tensor> host;
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    VGG_CHECK(!name.empty(), fn, ": '", path, "': empty tensor name");
    VGG_CHECK(name != kMetadataKey, fn, ": '", path, "': '", kMetadataKey, "' is reserved and cannot name a tensor");
    VGG_CHECK(utf8_error_at(name) == std::string::npos, fn, ": '", path, "': tensor name '", name,
              "' is not UTF-8");
    VGG_CHECK(names.insert(name).second, fn, ": '", path, "': duplicate tensor name '", name, "'");
    VGG_CHECK(t.defined(), fn, ": '", path, "': tensor '", name, "' is undefined");
    Tensor c = contiguous_raw(to_device_raw(t, Device::cpu()));
    uint64_t nbytes = static_cast<uint64_t>(c.numel()) * itemsize(c.dtype());
    header[name] = {{"dtype", st_name(c.dtype())}, {"shape", c.shape()}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    host.push_back(std::move(c));
  }
  for (const auto& [k, v] : metadata)
    VGG_CHECK(utf8_error_at(k) == std::string::npos && utf8_error_at(v) == std::string::npos, fn, ": '", path,
              "': metadata entry '", k, "' is not UTF-8");
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::string text = header.dump();  // nlohmann objects are std::maps: keys come out sorted
  text.append((8 - text.size() % 8) % 8, ' ');  // 8 + text.size() is then a multiple of 8
  const uint64_t n = text.size();

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* fp = std::fopen(tmp.c_str(), "wb");
  VGG_CHECK(fp != nullptr, fn, ": cannot open '", tmp, "' for writing: ", std::strerror(errno));
  bool ok = std::fwrite(&n, 8, 1, fp) == 1 && std::fwrite(text.data(), 1, text.size(), fp) == text.size();
  for (size_t i = 0; ok && i < host.size(); ++i) {
    size_t nbytes = static_cast<size_t>(host[i].numel()) * itemsize(host[i].dtype());
    ok = nbytes == 0 || std::fwrite(host[i].data_ptr(), 1, nbytes, fp) == nbytes;
  }
  ok = ok && std::fflush(fp) == 0 && ::fsync(::fileno(fp)) == 0;  // durable before it replaces `path`
  int err = ok ? 0 : errno;
  ok = (std::fclose(fp) == 0) && ok;
  if (ok && std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    VGG_FAIL(fn, ": cannot rename '", tmp, "' to '", path, "': ", std::strerror(err));
  }
  if (!ok) {
    if (err == 0) err = errno;
    std::remove(tmp.c_str());
    VGG_FAIL(fn, ": writing '", tmp, "' failed: ", std::strerror(err));
  }
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, std::vector<std::pair<std::string, Tensor>>(tensors.begin(), tensors.end()), metadata);
}

}  // namespace vgg
