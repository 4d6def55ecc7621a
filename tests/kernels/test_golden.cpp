// Golden tests: every op case in tests/data/ops/manifest.txt (written by tools/golden/ops.py
// with PyTorch 1.13) is re-run through vgg::ops and compared with torch's forward output and
// its input gradients for a fixed cotangent. PyTorch is not needed to run these tests.
//
// Tolerances: f64 |vgg - torch| <= 1e-10 (1 + |torch|), f32 1e-5 (1 + |torch|).
// A missing or unreadable file, an unknown op or a missing parameter fails the case.
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "tensor/npy.h"
#include "tests/support/test_support.h"

namespace vgg::test {
namespace {

struct GoldenCase {
  std::string name, op, dtype, dir;
  int64_t n_inputs = 0;
  std::vector<int64_t> grads;  // indices of inputs with a golden gradient
  std::map<std::string, std::string> params;
  std::string error;  // set when the manifest itself could not be read
};

std::ostream& operator<<(std::ostream& os, const GoldenCase& c) { return os << c.name; }

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  if (s.empty()) return out;
  std::string cur;
  std::istringstream is(s);
  while (std::getline(is, cur, sep)) out.push_back(cur);
  return out;
}

std::vector<int64_t> parse_ints(const std::string& s) {
  std::vector<int64_t> v;
  for (const auto& t : split(s, ',')) {
    size_t pos = 0;
    v.push_back(std::stoll(t, &pos));
    if (pos != t.size()) throw std::runtime_error("bad integer '" + t + "' in '" + s + "'");
  }
  return v;
}

std::vector<GoldenCase> load_manifest() {
  const std::string path = data_path("ops/manifest.txt");
  std::ifstream f(path);
  GoldenCase bad;
  bad.name = "manifest_unreadable";
  if (!f.good()) {
    bad.error = "cannot open " + path + " (regenerate with python3 tools/golden/ops.py)";
    return {bad};
  }
  std::vector<GoldenCase> cases;
  std::string line;
  int lineno = 0;
  try {
    while (std::getline(f, line)) {
      ++lineno;
      if (line.empty() || line[0] == '#') continue;
      std::istringstream is(line);
      GoldenCase c;
      std::string tok;
      is >> c.name;
      while (is >> tok) {
        auto eq = tok.find('=');
        if (eq == std::string::npos) throw std::runtime_error("token '" + tok + "' is not key=value");
        c.params[tok.substr(0, eq)] = tok.substr(eq + 1);
      }
      auto take = [&](const std::string& k) {
        auto it = c.params.find(k);
        if (it == c.params.end()) throw std::runtime_error("case " + c.name + " lacks " + k + "=");
        std::string v = it->second;
        c.params.erase(it);
        return v;
      };
      c.op = take("op");
      c.dtype = take("dtype");
      c.dir = take("dir");
      c.n_inputs = std::stoll(take("inputs"));
      c.grads = parse_ints(take("grads"));
      cases.push_back(std::move(c));
    }
  } catch (const std::exception& e) {
    bad.error = path + ":" + std::to_string(lineno) + ": " + e.what();
    return {bad};
  }
  if (cases.empty()) {
    bad.error = path + " lists no cases";
    return {bad};
  }
  return cases;
}

const std::vector<GoldenCase>& manifest() {
  static const std::vector<GoldenCase> cases = load_manifest();
  return cases;
}

// Parameter access; a missing key throws (and so fails the case).
struct Params {
  const GoldenCase& c;
  const std::string& str(const std::string& k) const {
    auto it = c.params.find(k);
    if (it == c.params.end()) throw std::runtime_error("case " + c.name + " lacks parameter " + k);
    return it->second;
  }
  int64_t i(const std::string& k) const {
    auto v = parse_ints(str(k));
    if (v.size() != 1) throw std::runtime_error("parameter " + k + " of " + c.name + " is not one integer");
    return v[0];
  }
  double d(const std::string& k) const { return std::stod(str(k)); }
  bool b(const std::string& k) const { return i(k) != 0; }
  std::vector<int64_t> ints(const std::string& k) const { return parse_ints(str(k)); }
};

Tensor unary(const std::string& op, const Tensor& x, const Params& p) {
  if (op == "neg") return ops::neg(x);
  if (op == "abs") return ops::abs(x);
  if (op == "exp") return ops::exp(x);
  if (op == "log") return ops::log(x);
  if (op == "sqrt") return ops::sqrt(x);
  if (op == "rsqrt") return ops::rsqrt(x);
  if (op == "tanh") return ops::tanh(x);
  if (op == "sigmoid") return ops::sigmoid(x);
  if (op == "silu") return ops::silu(x);
  if (op == "relu") return ops::relu(x);
  if (op == "gelu") {
    const std::string& a = p.str("approximate");
    if (a != "none" && a != "tanh") throw std::runtime_error("gelu: unknown approximate=" + a);
    return ops::gelu(x, a == "tanh");
  }
  if (op == "clamp") return ops::clamp(x, p.d("lo"), p.d("hi"));
  return Tensor();
}

// Runs the case's op through vgg::ops.
Tensor run_op(const GoldenCase& c, const std::vector<Tensor>& in) {
  Params p{c};
  const std::string& op = c.op;
  auto need = [&](size_t n) {
    if (in.size() != n)
      throw std::runtime_error("op " + op + " takes " + std::to_string(n) + " inputs, manifest has " +
                               std::to_string(in.size()));
  };
  if (op == "add" || op == "sub" || op == "mul" || op == "div" || op == "pow" || op == "maximum") {
    need(2);
    if (op == "add") return ops::add(in[0], in[1]);
    if (op == "sub") return ops::sub(in[0], in[1]);
    if (op == "mul") return ops::mul(in[0], in[1]);
    if (op == "div") return ops::div(in[0], in[1]);
    if (op == "pow") return ops::pow(in[0], in[1]);
    return ops::maximum(in[0], in[1]);
  }
  if (in.size() == 1) {
    Tensor y = unary(op, in[0], p);
    if (y.defined()) return y;
  }
  if (op == "where") return need(3), ops::where(in[0], in[1], in[2]);
  if (op == "sum") return need(1), ops::sum(in[0], p.ints("dims"), p.b("keepdim"));
  if (op == "mean") return need(1), ops::mean(in[0], p.ints("dims"), p.b("keepdim"));
  if (op == "var") return need(1), ops::var(in[0], p.ints("dims"), p.i("correction"), p.b("keepdim"));
  if (op == "amax") return need(1), ops::amax(in[0], p.ints("dims"), p.b("keepdim"));
  if (op == "norm") return need(1), ops::norm(in[0], p.d("p"), p.ints("dims"), p.b("keepdim"));
  if (op == "matmul") return need(2), ops::matmul(in[0], in[1]);
  if (op == "softmax") return need(1), ops::softmax(in[0], p.i("dim"));
  if (op == "log_softmax") return need(1), ops::log_softmax(in[0], p.i("dim"));
  if (op == "layer_norm") {
    if (p.b("affine")) return need(3), ops::layer_norm(in[0], p.ints("normalized_shape"), in[1], in[2], p.d("eps"));
    return need(1), ops::layer_norm(in[0], p.ints("normalized_shape"), Tensor(), Tensor(), p.d("eps"));
  }
  if (op == "rms_norm") return need(2), ops::rms_norm(in[0], p.ints("normalized_shape"), in[1], p.d("eps"));
  if (op == "quick_gelu") return need(1), ops::quick_gelu(in[0]);
  if (op == "group_norm") {
    if (p.b("affine")) return need(3), ops::group_norm(in[0], p.i("groups"), in[1], in[2], p.d("eps"));
    return need(1), ops::group_norm(in[0], p.i("groups"), Tensor(), Tensor(), p.d("eps"));
  }
  if (op == "upsample_nearest2d") return need(1), ops::upsample_nearest2d(in[0], p.i("factor"));
  if (op == "resize2d") {
    need(1);
    auto size = p.ints("size");
    if (size.size() != 2) throw std::runtime_error("resize2d: size needs 2 values");
    const std::string mode = p.str("mode");
    if (mode != "bilinear" && mode != "bicubic") throw std::runtime_error("resize2d: unknown mode " + mode);
    return ops::resize2d(in[0], size[0], size[1], mode == "bilinear" ? ops::ResizeMode::Bilinear : ops::ResizeMode::Bicubic,
                         p.b("antialias"));
  }
  if (op == "cat") return ops::cat(in, p.i("dim"));
  if (op == "stack") return ops::stack(in, p.i("dim"));
  if (op == "pad") return need(1), ops::pad(in[0], p.ints("pads"), p.d("value"));
  if (op == "permute_reshape") {
    need(1);
    Tensor y = ops::reshape(ops::permute(in[0], p.ints("perm")), p.ints("shape"));
    return ops::reshape(ops::permute(y, p.ints("perm2")), p.ints("shape2"));
  }
  if (op == "index_select") return need(2), ops::index_select(in[0], p.i("dim"), in[1]);
  if (op == "gather") return need(2), ops::gather(in[0], p.i("dim"), in[1]);
  if (op == "scatter_add") return need(3), ops::scatter_add(in[0], p.i("dim"), in[1], in[2]);
  if (op == "embedding") return need(2), ops::embedding(in[0], in[1]);
  if (op == "conv2d" || op == "avg_pool2d") {
    auto s = p.ints("stride"), pd = p.ints("padding");
    if (s.size() != 2 || pd.size() != 2) throw std::runtime_error(op + ": stride and padding need 2 values");
    ops::Conv2dOptions o;
    o.stride_h = s[0];
    o.stride_w = s[1];
    o.pad_h = pd[0];
    o.pad_w = pd[1];
    if (op == "avg_pool2d") {
      auto k = p.ints("kernel");
      if (k.size() != 2) throw std::runtime_error("avg_pool2d: kernel needs 2 values");
      return need(1), ops::avg_pool2d(in[0], k[0], k[1], o);
    }
    if (p.b("bias")) return need(3), ops::conv2d(in[0], in[1], in[2], o);
    return need(2), ops::conv2d(in[0], in[1], Tensor(), o);
  }
  if (op == "attention") {
    need(3);
    const std::string& impl = p.str("impl");
    if (impl != "naive" && impl != "tiled") throw std::runtime_error("attention: unknown impl=" + impl);
    return ops::attention(in[0], in[1], in[2], p.d("scale"),
                          impl == "naive" ? ops::AttentionImpl::Naive : ops::AttentionImpl::Tiled);
  }
  throw std::runtime_error("unknown op '" + op + "' in case " + c.name);
}

class GoldenOps : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(GoldenOps, MatchesTorch) {
  const GoldenCase& c = GetParam();
  ASSERT_TRUE(c.error.empty()) << c.error;
  ASSERT_TRUE(c.dtype == "f64" || c.dtype == "f32") << "case " << c.name << " has dtype " << c.dtype;
  const DType dt = c.dtype == "f64" ? DType::F64 : DType::F32;
  // f32: torch and vgg round differently (summation order, fused vs. separate kernels,
  // libm), so only agreement to ~100 ulps of 1 is asked for.
  const double tol = dt == DType::F64 ? 1e-10 : 1e-5;
  const std::string dir = "ops/" + c.dir + "/";
  try {
    std::vector<Tensor> in;
    for (int64_t i = 0; i < c.n_inputs; ++i) {
      Tensor t = load_npy(data_path(dir + "in" + std::to_string(i) + ".npy"));
      if (is_floating(t.dtype())) {
        ASSERT_EQ(t.dtype(), dt) << "in" << i << " of " << c.name;
        t.requires_grad_(true);
      }
      in.push_back(t);
    }
    std::vector<Tensor> grad_inputs;
    for (int64_t g : c.grads) {
      ASSERT_TRUE(g >= 0 && g < c.n_inputs) << "grads index " << g;
      ASSERT_TRUE(in[g].requires_grad()) << "in" << g << " of " << c.name << " is not a float tensor";
      grad_inputs.push_back(in[g]);
    }
    ASSERT_FALSE(grad_inputs.empty()) << "case " << c.name << " checks no gradient";
    Tensor ref = load_npy(data_path(dir + "out.npy"));
    Tensor gout = load_npy(data_path(dir + "gout.npy"));

    Tensor out = run_op(c, in);
    ASSERT_TRUE(out.defined());
    EXPECT_EQ(out.dtype(), ref.dtype()) << "output dtype";
    EXPECT_TRUE(all_close(out, ref, tol, tol)) << "forward of " << c.name;
    ASSERT_TRUE(out.requires_grad()) << c.name << ": output does not require grad";

    std::vector<Tensor> grads = vgg::grad({out}, grad_inputs, {gout});
    ASSERT_EQ(grads.size(), grad_inputs.size());
    for (size_t j = 0; j < grads.size(); ++j) {
      const int64_t i = c.grads[j];
      Tensor gref = load_npy(data_path(dir + "grad" + std::to_string(i) + ".npy"));
      ASSERT_TRUE(grads[j].defined()) << "no gradient for in" << i;
      EXPECT_EQ(grads[j].dtype(), gref.dtype()) << "dtype of grad" << i;
      EXPECT_TRUE(all_close(grads[j], gref, tol, tol)) << "gradient of in" << i << " of " << c.name;
    }
  } catch (const std::exception& e) {
    FAIL() << c.name << " threw: " << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenOps, ::testing::ValuesIn(manifest()),
                         [](const ::testing::TestParamInfo<GoldenCase>& info) { return info.param.name; });

// The manifest must keep covering every op family (so that dropping lines is noticed).
TEST(GoldenManifest, CoversTheOps) {
  const auto& cases = manifest();
  ASSERT_FALSE(cases.empty());
  ASSERT_TRUE(cases[0].error.empty()) << cases[0].error;
  std::set<std::string> ops, names;
  std::set<std::pair<std::string, std::string>> op_params;  // (op, distinguishing parameter)
  bool has_f32 = false;
  for (const auto& c : cases) {
    EXPECT_TRUE(names.insert(c.name).second) << "duplicate case " << c.name;
    ops.insert(c.op);
    has_f32 |= c.dtype == "f32";
    for (const char* k : {"impl", "approximate", "affine"})
      if (auto it = c.params.find(k); it != c.params.end()) op_params.insert({c.op, it->second});
  }
  for (const char* op : {"add", "sub", "mul", "div", "pow", "maximum", "neg", "abs", "exp", "log", "sqrt", "rsqrt",
                         "tanh", "sigmoid", "silu", "relu", "gelu", "clamp", "where", "sum", "mean", "var", "amax",
                         "norm", "matmul", "softmax", "log_softmax", "layer_norm", "rms_norm", "cat", "stack",
                         "index_select", "gather", "scatter_add", "embedding", "pad", "conv2d", "avg_pool2d",
                         "attention", "permute_reshape"})
    EXPECT_TRUE(ops.count(op)) << "no golden case for " << op;
  for (auto [op, v] : std::vector<std::pair<std::string, std::string>>{{"attention", "naive"},
                                                                        {"attention", "tiled"},
                                                                        {"gelu", "none"},
                                                                        {"gelu", "tanh"},
                                                                        {"layer_norm", "1"},
                                                                        {"layer_norm", "0"}})
    EXPECT_TRUE(op_params.count({op, v})) << "no golden case for " << op << " with " << v;
  EXPECT_TRUE(has_f32) << "no f32 case";
}

}  // namespace
}  // namespace vgg::test
