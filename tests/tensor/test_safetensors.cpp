// safetensors round trips, the written layout, F16 decoding and rejection of malformed files.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tensor/safetensors.h"
#include "tests/support/test_support.h"

using namespace vgg;
namespace fs = std::filesystem;

namespace {
using Named = std::vector<std::pair<std::string, Tensor>>;

class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("vgg_st_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // A file made by hand: the 8-byte length (`len`, default the header's size), the header text, the data.
  std::string raw(const std::string& name, const std::string& header, const std::string& data = "",
                  std::optional<uint64_t> len = std::nullopt) const {
    std::string p = path(name);
    std::ofstream f(p, std::ios::binary);
    uint64_t n = len.value_or(header.size());
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << header << data;
    return p;
  }

  static std::string read_all(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }

  std::vector<std::string> listing() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  fs::path dir_;
};

bool same_bytes(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  Tensor ca = contiguous_raw(a), cb = contiguous_raw(b);
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), static_cast<size_t>(ca.numel()) * itemsize(ca.dtype())) == 0;
}

std::string bytes_of(const std::vector<uint16_t>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 2);
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// One valid single-tensor entry for hand-made headers.
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape, uint64_t b,
                  uint64_t e) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(b) + "," + std::to_string(e) + "]}";
}
}  // namespace

TEST_F(Safetensors, RoundTripEveryDtypeBitExact) {
  Tensor f32 = test::rnd({3, 5}, 1, DType::F32);
  float* p = f32.data<float>();
  p[0] = NAN, p[1] = INFINITY, p[2] = -INFINITY, p[3] = -0.0f, p[4] = 1e-45f;  // specials survive bit for bit
  Tensor f64 = test::rnd({2, 3, 4}, 2, DType::F64);
  Tensor b16 = cast_raw(test::rnd({7}, 3, DType::F32), DType::BF16);
  Tensor i32 = from_vector(std::vector<int64_t>{-2147483648LL, -1, 0, 1, 2147483647LL}, {5}, {DType::I32});
  Tensor i64 = from_vector(std::vector<int64_t>{INT64_MIN, (1LL << 53) + 1, -3, INT64_MAX}, {2, 2});
  Tensor bl = from_vector(std::vector<int64_t>{1, 0, 0, 1, 1, 0}, {2, 3}, {DType::Bool});
  // deliberately not in name order: the file keeps the given order of the data
  Named in = {{"z.f32", f32}, {"f64", f64}, {"b16", b16}, {"i32", i32}, {"i64", i64}, {"a.bool", bl}};
  std::string p0 = path("all.safetensors");
  save_safetensors(p0, in);
  SafetensorsFile got = load_safetensors(p0);
  EXPECT_EQ(got.path, p0);
  EXPECT_TRUE(got.metadata.empty());
  ASSERT_EQ(got.tensors.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(got.tensors[i].first, in[i].first);
    EXPECT_TRUE(same_bytes(got.tensors[i].second, in[i].second)) << in[i].first;
    EXPECT_EQ(got.tensors[i].second.device(), Device::cpu());
  }
  EXPECT_EQ(got.at("i64").data<int64_t>()[1], (1LL << 53) + 1);
  EXPECT_TRUE(got.contains("b16"));
  EXPECT_EQ(got.find("nope"), nullptr);
  EXPECT_TRUE(test::throws_error([&] { got.at("nope"); }, {"no tensor 'nope'", p0.c_str()}));

  std::vector<TensorInfo> hdr = read_safetensors_header(p0);
  ASSERT_EQ(hdr.size(), in.size());
  const char* names[] = {"F32", "F64", "BF16", "I32", "I64", "BOOL"};
  uint64_t off = 0;
  for (size_t i = 0; i < hdr.size(); ++i) {
    EXPECT_EQ(hdr[i].name, in[i].first);
    EXPECT_EQ(hdr[i].dtype, names[i]);
    EXPECT_EQ(hdr[i].shape, in[i].second.shape());
    EXPECT_EQ(hdr[i].begin, off);
    off += static_cast<uint64_t>(in[i].second.numel()) * itemsize(in[i].second.dtype());
    EXPECT_EQ(hdr[i].end, off);
  }
}

TEST_F(Safetensors, ZeroDimAndZeroSizeTensors) {
  Named in = {{"scalar", scalar_tensor(-2.5, {DType::F64})},
              {"empty", zeros({0}, {DType::F32})},
              {"empty3", zeros({2, 0, 3}, {DType::BF16})},
              {"iscalar", scalar_tensor(7, {DType::I64})},
              {"after", arange(0, 3, 1, {DType::I32})}};
  std::string p = path("z.safetensors");
  save_safetensors(p, in);
  SafetensorsFile got = load_safetensors(p);
  ASSERT_EQ(got.tensors.size(), in.size());
  EXPECT_EQ(got.at("scalar").shape(), Shape{});
  EXPECT_EQ(got.at("scalar").item(), -2.5);
  EXPECT_EQ(got.at("iscalar").item(), 7);
  EXPECT_EQ(got.at("empty").shape(), Shape{0});
  EXPECT_EQ(got.at("empty3").shape(), (Shape{2, 0, 3}));
  EXPECT_EQ(got.at("empty3").dtype(), DType::BF16);
  EXPECT_EQ(got.at("after").to_vector(), (std::vector<double>{0, 1, 2}));
  std::vector<TensorInfo> h = read_safetensors_header(p);
  EXPECT_EQ(h[1].begin, h[1].end);  // zero-size tensors take no bytes
  EXPECT_EQ(h[2].begin, h[2].end);

  save_safetensors(path("none.safetensors"), Named{});  // no tensors at all is a valid file
  EXPECT_TRUE(load_safetensors(path("none.safetensors")).tensors.empty());
}

TEST_F(Safetensors, NonContiguousInputIsWrittenInLogicalOrder) {
  Tensor x = test::rnd({3, 4}, 5, DType::F32);
  Tensor xt = ops::transpose(x, 0, 1);
  Tensor strided = test::noncontig(test::rnd({2, 5}, 6, DType::F64));
  Tensor bt = ops::transpose(from_vector(std::vector<int64_t>{1, 0, 0, 0, 1, 1}, {2, 3}, {DType::Bool}), 0, 1);
  ASSERT_FALSE(xt.is_contiguous());
  ASSERT_FALSE(strided.is_contiguous());
  std::string p = path("nc.safetensors");
  save_safetensors(p, Named{{"xt", xt}, {"strided", strided}, {"bt", bt}});
  SafetensorsFile got = load_safetensors(p);
  EXPECT_EQ(got.at("xt").shape(), (Shape{4, 3}));
  EXPECT_EQ(got.at("xt").to_vector(), xt.to_vector());
  EXPECT_EQ(got.at("strided").to_vector(), strided.to_vector());
  EXPECT_EQ(got.at("bt").to_vector(), bt.to_vector());
}

TEST_F(Safetensors, MetadataRoundTrip) {
  std::map<std::string, std::string> md = {
      {"format", "pt"}, {"quote\"back\\slash", "tab\tnew\nline"}, {"unicode", "σ → τ 雪"}, {"empty", ""}};
  std::string p = path("md.safetensors");
  save_safetensors(p, Named{{"w", ones({2})}}, md);
  EXPECT_EQ(load_safetensors(p).metadata, md);
  std::map<std::string, std::string> md2;
  read_safetensors_header(p, &md2);
  EXPECT_EQ(md2, md);
  // without metadata the key is absent
  save_safetensors(p, Named{{"w", ones({2})}});
  EXPECT_EQ(read_all(p).find("__metadata__"), std::string::npos);
  EXPECT_TRUE(load_safetensors(p).metadata.empty());
}

TEST_F(Safetensors, HeaderIsSortedPaddedAndAligned) {
  // name lengths 1..9 give every header length modulo 8
  for (int len = 1; len <= 9; ++len) {
    std::string p = path("a" + std::to_string(len) + ".safetensors");
    Named in = {{std::string(len, 'z'), ones({3}, {DType::F64})}, {"b", ones({1}, {DType::BF16})}, {"a", ones({2})}};
    save_safetensors(p, in, {{"k", "v"}});
    std::string all = read_all(p);
    ASSERT_GE(all.size(), 8u);
    uint64_t n;
    std::memcpy(&n, all.data(), 8);
    EXPECT_EQ((8 + n) % 8, 0u) << "data start " << 8 + n << " is not 8-byte aligned";
    std::string text = all.substr(8, n);
    EXPECT_EQ(all.size(), 8 + n + 24 + 2 + 8);
    size_t close = text.rfind('}');
    EXPECT_EQ(text.find_first_not_of(' ', close + 1), std::string::npos) << "padding must be spaces";
    EXPECT_LT(n - close - 1, 8u);
    // keys sorted as bytes: "__metadata__" < "a" < "b" < "zz..."
    size_t pm = text.find("\"__metadata__\""), pa = text.find("\"a\""), pb = text.find("\"b\""),
           pz = text.find("\"" + std::string(len, 'z') + "\"");
    ASSERT_NE(pz, std::string::npos);
    EXPECT_LT(pm, pa);
    EXPECT_LT(pa, pb);
    EXPECT_LT(pb, pz);
    nlohmann::json j = nlohmann::json::parse(text);
    EXPECT_EQ(j[std::string(len, 'z')]["data_offsets"], nlohmann::json({0, 24}));
    EXPECT_EQ(j["b"]["data_offsets"], nlohmann::json({24, 26}));
    EXPECT_EQ(j["a"]["data_offsets"], nlohmann::json({26, 34}));
    EXPECT_EQ(j["a"]["dtype"], "F32");
    EXPECT_EQ(j["a"]["shape"], nlohmann::json({2}));
  }
}

TEST_F(Safetensors, MapOverloadWritesInNameOrder) {
  std::map<std::string, Tensor> m = {{"b", ones({2})}, {"a", zeros({3}, {DType::I64})}};
  std::string p = path("m.safetensors");
  save_safetensors(p, m, {{"x", "y"}});
  SafetensorsFile got = load_safetensors(p);
  ASSERT_EQ(got.tensors.size(), 2u);
  EXPECT_EQ(got.tensors[0].first, "a");
  EXPECT_EQ(got.tensors[1].first, "b");
  EXPECT_EQ(got.metadata.at("x"), "y");
}

TEST_F(Safetensors, FileOrderFollowsDataOffsets) {
  std::string hdr = "{" + entry("a", "F32", "[1]", 4, 8) + "," + entry("b", "F32", "[1]", 0, 4) + "}";
  float v[2] = {1.5f, -2.0f};
  std::string p = raw("order.safetensors", hdr, std::string(reinterpret_cast<const char*>(v), 8));
  SafetensorsFile got = load_safetensors(p);
  ASSERT_EQ(got.tensors.size(), 2u);
  EXPECT_EQ(got.tensors[0].first, "b");
  EXPECT_EQ(got.tensors[0].second.item(), 1.5);
  EXPECT_EQ(got.tensors[1].first, "a");
  EXPECT_EQ(got.tensors[1].second.item(), -2.0);
}

TEST_F(Safetensors, ConvertFloatingTensorsOnLoad) {
  Tensor f32 = test::rnd({4}, 7, DType::F32);
  Tensor b16 = cast_raw(test::rnd({3}, 8, DType::F32), DType::BF16);
  Tensor i64 = arange(0, 4, 1, {DType::I64});
  Tensor bl = from_vector(std::vector<int64_t>{1, 0}, {2}, {DType::Bool});
  std::string p = path("c.safetensors");
  save_safetensors(p, Named{{"f32", f32}, {"b16", b16}, {"i64", i64}, {"bl", bl}});
  SafetensorsFile got = load_safetensors(p, DType::F64);
  EXPECT_EQ(got.at("f32").dtype(), DType::F64);
  EXPECT_EQ(got.at("b16").dtype(), DType::F64);
  EXPECT_EQ(got.at("f32").to_vector(), f32.to_vector());  // widening is exact
  EXPECT_EQ(got.at("b16").to_vector(), b16.to_vector());
  EXPECT_EQ(got.at("i64").dtype(), DType::I64);  // integer and bool tensors are left alone
  EXPECT_EQ(got.at("bl").dtype(), DType::Bool);
  SafetensorsFile narrow = load_safetensors(p, DType::BF16);
  EXPECT_EQ(narrow.at("f32").dtype(), DType::BF16);
  EXPECT_TRUE(same_bytes(narrow.at("b16"), b16));
  EXPECT_TRUE(test::throws_error([&] { load_safetensors(p, DType::I32); }, {"convert_to", "i32"}));
}

TEST_F(Safetensors, F16DecodesKnownBitPatterns) {
  struct Case {
    uint16_t h;
    float f;
  };
  const Case cases[] = {{0x0000, 0.0f},         {0x8000, -0.0f},        {0x3c00, 1.0f},
                        {0xc000, -2.0f},        {0x7bff, 65504.0f},     {0x0400, 0x1p-14f},
                        {0x0001, 0x1p-24f},     {0x8001, -0x1p-24f},    {0x03ff, 1023 * 0x1p-24f},
                        {0x3555, 0.333251953125f}, {0x7c00, INFINITY},  {0xfc00, -INFINITY}};
  std::vector<uint16_t> bits;
  for (const Case& c : cases) bits.push_back(c.h);
  bits.push_back(0x7e00);  // quiet NaN
  bits.push_back(0xfd01);  // negative signalling NaN with a payload
  size_t n = bits.size();
  std::string hdr = "{" + entry("h", "F16", "[" + std::to_string(n) + "]", 0, 2 * n) + "}";
  std::string p = raw("f16.safetensors", hdr, bytes_of(bits));
  std::vector<TensorInfo> info = read_safetensors_header(p);
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(info[0].dtype, "F16");
  SafetensorsFile got = load_safetensors(p);
  Tensor t = got.at("h");
  ASSERT_EQ(t.dtype(), DType::F32);
  const float* v = t.data<float>();
  for (size_t i = 0; i < std::size(cases); ++i)
    EXPECT_EQ(bits_of(v[i]), bits_of(cases[i].f)) << "half 0x" << std::hex << cases[i].h;
  EXPECT_EQ(bits_of(v[n - 2]), 0x7fc00000u);
  EXPECT_EQ(bits_of(v[n - 1]), 0xffa02000u);  // sign and payload kept
  EXPECT_EQ(load_safetensors(p, DType::F64).at("h").dtype(), DType::F64);

  // every finite half against sign * significand * 2^exponent computed independently
  for (uint32_t h = 0; h < 0x10000; ++h) {
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 31) continue;
    double mag = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
    double want = (h & 0x8000) ? -mag : mag;
    float got_f = half_bits_to_float(static_cast<uint16_t>(h));
    ASSERT_EQ(bits_of(got_f), bits_of(static_cast<float>(want))) << "half 0x" << std::hex << h;
  }
}

TEST_F(Safetensors, NarrowIntegersWidenToI32AndBoolBytesNormalise) {
  std::string data;
  int8_t i8[3] = {-128, 0, 127};
  uint8_t u8[3] = {0, 200, 255};
  int16_t i16[2] = {-32768, 12345};
  uint8_t bl[3] = {0, 1, 7};
  data.append(reinterpret_cast<const char*>(i8), 3);
  data.append(reinterpret_cast<const char*>(u8), 3);
  data.append(reinterpret_cast<const char*>(i16), 4);
  data.append(reinterpret_cast<const char*>(bl), 3);
  std::string hdr = "{" + entry("i8", "I8", "[3]", 0, 3) + "," + entry("u8", "U8", "[3]", 3, 6) + "," +
                    entry("i16", "I16", "[2]", 6, 10) + "," + entry("b", "BOOL", "[3]", 10, 13) + "}";
  SafetensorsFile got = load_safetensors(raw("ints.safetensors", hdr, data));
  EXPECT_EQ(got.at("i8").dtype(), DType::I32);
  EXPECT_EQ(got.at("i8").to_vector(), (std::vector<double>{-128, 0, 127}));
  EXPECT_EQ(got.at("u8").to_vector(), (std::vector<double>{0, 200, 255}));
  EXPECT_EQ(got.at("i16").to_vector(), (std::vector<double>{-32768, 12345}));
  const auto* b = reinterpret_cast<const uint8_t*>(got.at("b").data_ptr());
  EXPECT_EQ(b[0], 0);
  EXPECT_EQ(b[1], 1);
  EXPECT_EQ(b[2], 1);
}

TEST_F(Safetensors, RejectsMalformedFiles) {
  const std::string a4 = entry("a", "F32", "[1]", 0, 4);
  const std::string four(4, '\0');
  auto rejects = [&](const std::string& p, std::initializer_list<const char*> frags) {
    EXPECT_TRUE(test::throws_error([&] { load_safetensors(p); }, frags)) << p;
    EXPECT_TRUE(test::throws_error([&] { load_safetensors(p); }, {p.c_str()})) << "message must name the file";
  };
  EXPECT_TRUE(test::throws_error([&] { load_safetensors(path("missing.safetensors")); }, {"cannot open"}));
  {
    std::string p = path("short.safetensors");
    std::ofstream(p, std::ios::binary) << "abc";
    rejects(p, {"too short", "3 bytes"});
  }
  rejects(raw("len0.safetensors", "{}", "", 0), {"header length 0"});
  rejects(raw("huge.safetensors", "{}", "", 200'000'000), {"header length 200000000", "limit of 100000000"});
  rejects(raw("past.safetensors", "{" + a4 + "}", four, 1000), {"header length 1000", "bytes follow the length"});
  rejects(raw("json.safetensors", "{\"a\": {", four), {"header: invalid JSON"});
  // a number beyond double's range was a raw parser exception naming no file
  rejects(raw("big.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e309],\"data_offsets\":[0,4]}}", four),
          {"invalid JSON", "1e309"});
  // a key twice inside a tensor's entry (the last one used to win silently)
  rejects(raw("dupfield.safetensors", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,4]}}",
              four),
          {"key 'dtype' appears twice"});
  // an empty tensor whose other sizes overflow the strides (undefined behaviour before)
  rejects(raw("zerohuge.safetensors", "{" + entry("a", "F32", "[0,4611686018427387904,4611686018427387904]", 0, 0) + "}"),
          {"too large"});
  rejects(raw("array.safetensors", "[1, 2]"), {"not a JSON object", "array"});
  rejects(raw("utf8.safetensors", "{\"\xff\xfe\":1}"), {"not UTF-8", "offset 10"});
  rejects(raw("notobj.safetensors", "{\"a\": 3}"), {"tensor 'a'", "not a JSON object"});
  rejects(raw("nodtype.safetensors", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", four), {"lacks 'dtype'"});
  rejects(raw("noshape.safetensors", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", four), {"lacks 'shape'"});
  rejects(raw("nooff.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", four), {"lacks 'data_offsets'"});
  rejects(raw("extra.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", four),
          {"unknown field 'x'"});
  rejects(raw("dtype.safetensors", "{" + entry("a", "Q7", "[1]", 0, 4) + "}", four), {"tensor 'a'", "dtype 'Q7'"});
  rejects(raw("dtnum.safetensors", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", four),
          {"dtype 4 is not a string"});
  rejects(raw("neg.safetensors", "{" + entry("a", "F32", "[-1]", 0, 4) + "}", four),
          {"tensor 'a'", "[-1]", "non-negative integers"});
  rejects(raw("fshape.safetensors", "{" + entry("a", "F32", "[1.5]", 0, 4) + "}", four), {"non-negative integers"});
  rejects(raw("sshape.safetensors", "{" + entry("a", "F32", "\"1\"", 0, 4) + "}", four), {"not an array"});
  rejects(raw("ovf.safetensors", "{" + entry("a", "F32", "[4611686018427387904,8]", 0, 4) + "}", four),
          {"overflows"});
  rejects(raw("ovf2.safetensors", "{" + entry("a", "F64", "[4611686018427387904]", 0, 4) + "}", four),
          {"overflows"});
  rejects(raw("pastend.safetensors", "{" + entry("a", "F32", "[4]", 0, 16) + "}", std::string(8, '\0')),
          {"tensor 'a'", "[0, 16]", "past the data section", "8 bytes"});
  rejects(raw("beginend.safetensors", "{" + entry("a", "F32", "[1]", 4, 0) + "}", four), {"[4, 0]", "begin > end"});
  rejects(raw("offs1.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", four),
          {"two non-negative integers"});
  rejects(raw("offsneg.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", four),
          {"two non-negative integers"});
  rejects(raw("overlap.safetensors", "{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 4, 12) + "}",
              std::string(12, '\0')),
          {"'a' [0, 8)", "'b' [4, 12)", "overlap"});
  rejects(raw("hole.safetensors", "{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[1]", 8, 12) + "}",
              std::string(12, '\0')),
          {"4 unused bytes at data offset 4", "tensor 'b'"});
  rejects(raw("trail.safetensors", "{" + a4 + "}", std::string(6, '\0')), {"2 bytes of trailing data"});
  rejects(raw("size.safetensors", "{" + entry("a", "F32", "[2,3]", 0, 20) + "}", std::string(20, '\0')),
          {"tensor 'a'", "[2, 3]", "24 bytes", "span 20 bytes"});
  rejects(raw("mdval.safetensors", "{\"__metadata__\":{\"x\":1}," + a4 + "}", four),
          {"__metadata__", "key 'x' has a number value"});
  rejects(raw("mdarr.safetensors", "{\"__metadata__\":[1]," + a4 + "}", four), {"__metadata__", "array"});
  rejects(raw("dup.safetensors", "{" + a4 + "," + a4 + "}", four), {"key 'a' appears twice"});
  rejects(raw("u32.safetensors", "{" + entry("a", "U32", "[1]", 0, 4) + "}", four), {"dtype U32", "cannot be loaded"});
  rejects(raw("dims.safetensors", "{" + entry("a", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) + "}", four), {"at most 8"});
  // header inspection accepts what only loading cannot handle
  EXPECT_EQ(read_safetensors_header(path("u32.safetensors"))[0].dtype, "U32");
  EXPECT_TRUE(test::throws_error([&] { read_safetensors_header(path("hole.safetensors")); },
                                 {"read_safetensors_header", "unused bytes"}));

  // a valid file whose data is cut short
  std::string p = path("cut.safetensors");
  save_safetensors(p, Named{{"w", ones({4, 4})}});
  std::string all = read_all(p);
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(all.data(), static_cast<std::streamsize>(all.size() - 5));
  rejects(p, {"tensor 'w'", "[0, 64]", "past the data section", "59 bytes"});
  // ... or cut inside the header
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(all.data(), 20);
  rejects(p, {"bytes follow the length field"});
}

TEST_F(Safetensors, SaveRejectsBadNamesAndLeavesNoFile) {
  std::string p = path("bad.safetensors");
  EXPECT_TRUE(test::throws_error([&] { save_safetensors(p, Named{{"a", ones({1})}, {"a", ones({2})}}); },
                                 {"save_safetensors", "duplicate tensor name 'a'"}));
  EXPECT_TRUE(test::throws_error([&] { save_safetensors(p, Named{{"", ones({1})}}); }, {"empty tensor name"}));
  EXPECT_TRUE(test::throws_error([&] { save_safetensors(p, Named{{"__metadata__", ones({1})}}); }, {"reserved"}));
  EXPECT_TRUE(test::throws_error([&] { save_safetensors(p, Named{{"u", Tensor()}}); }, {"'u' is undefined"}));
  EXPECT_TRUE(listing().empty());
}

TEST_F(Safetensors, FailedSaveLeavesNoTempFileAndKeepsTheOldFile) {
  std::string nodir = path("missing/x.safetensors");
  EXPECT_TRUE(test::throws_error([&] { save_safetensors(nodir, Named{{"w", ones({2})}}); },
                                 {"save_safetensors", "cannot open", "missing/x.safetensors.tmp."}));
  EXPECT_TRUE(listing().empty());

  // the rename fails (the target is a directory): the temporary file is removed
  fs::create_directories(dir_ / "adir" / "inner");
  EXPECT_TRUE(test::throws_error([&] { save_safetensors(path("adir"), Named{{"w", ones({2})}}); },
                                 {"cannot rename"}));
  EXPECT_EQ(listing(), std::vector<std::string>{"adir"});

  // an existing file survives a failed save and is replaced by a successful one
  std::string p = path("keep.safetensors");
  save_safetensors(p, Named{{"old", full({3}, 1.0)}});
  std::string before = read_all(p);
  EXPECT_THROW(save_safetensors(p, Named{{"x", ones({1})}, {"x", ones({1})}}), Error);
  EXPECT_EQ(read_all(p), before);
  save_safetensors(p, Named{{"new", full({2}, 2.0, {DType::F64})}});
  SafetensorsFile got = load_safetensors(p);
  ASSERT_EQ(got.tensors.size(), 1u);
  EXPECT_EQ(got.tensors[0].first, "new");
  EXPECT_EQ(got.at("new").to_vector(), (std::vector<double>{2, 2}));
  EXPECT_EQ(listing(), (std::vector<std::string>{"adir", "keep.safetensors"}));
}
