#include "nn/module.h"

#include <set>
#include <sstream>

#include "autograd/checkpoint.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace vgg::nn {

Tensor make_parameter(const Tensor& values, bool requires_grad) {
  Tensor p = clone_raw(values.detach());
  if (requires_grad) p.requires_grad_(true);
  return p;
}

Tensor placeholder(const Shape& shape, DType dtype) {
  return as_strided_view(zeros({1}, opts(dtype)), shape, Strides(shape.size(), 0), 0);
}

bool is_placeholder(const Tensor& t) {
  return t.defined() && t.numel() > 1 && t.storage()->nbytes < static_cast<size_t>(t.numel()) * itemsize(t.dtype());
}

void Module::materialize(DType dtype, Device device, Generator* gen) {
  VGG_CHECK(is_floating(dtype), type_name(), ".materialize: dtype must be floating, got ", dtype_name(dtype));
  for (auto& [n, m] : named_modules()) {
    bool any = false;
    for (auto& p : m->params_)
      if (is_placeholder(*p.t)) {
        bool rg = p.t->requires_grad();
        *p.t = empty(p.t->shape(), dtype, device);
        if (rg) p.t->requires_grad_(true);
        any = true;
      }
    for (auto& b : m->buffers_)
      if (is_placeholder(*b.t)) *b.t = empty(b.t->shape(), dtype, device), any = true;
    if (any) m->reset_parameters(gen);
  }
}

bool Module::materialized() const {
  bool ok = true;
  visit_params("", [&](const std::string&, Tensor& t, bool) { ok = ok && !is_placeholder(t); });
  visit_buffers("", [&](const std::string&, Tensor& t, bool) { ok = ok && !is_placeholder(t); });
  return ok;
}

void Module::check_name(const std::string& name) const {
  VGG_CHECK(!name.empty(), type_name(), ": empty parameter/buffer/module name");
  for (const auto& p : params_) VGG_CHECK(p.name != name, type_name(), ": name '", name, "' registered twice");
  for (const auto& b : buffers_) VGG_CHECK(b.name != name, type_name(), ": name '", name, "' registered twice");
  for (const auto& c : children_) VGG_CHECK(c.name != name, type_name(), ": name '", name, "' registered twice");
}

void Module::register_parameter(const std::string& name, Tensor& slot, bool adapter) {
  check_name(name);
  params_.push_back({name, &slot, adapter});
}

void Module::register_buffer(const std::string& name, Tensor& slot, bool persistent) {
  check_name(name);
  buffers_.push_back({name, &slot, persistent});
}

void Module::add_child(ChildSlot c) {
  check_name(c.name);
  children_.push_back(std::move(c));
}

void Module::throw_bad_replacement(const std::string& name, const std::string& type) {
  VGG_FAIL("replace_module: a ", type, " does not fit the slot '", name, "'");
}

void Module::visit_params(const std::string& prefix,
                          const std::function<void(const std::string&, Tensor&, bool)>& f) const {
  for (const auto& p : params_)
    if (p.t->defined()) f(prefix + p.name, *p.t, p.adapter);
  for (const auto& c : children_)
    if (Module* m = c.get()) m->visit_params(prefix + c.name + ".", f);
}

void Module::visit_buffers(const std::string& prefix,
                           const std::function<void(const std::string&, Tensor&, bool)>& f) const {
  for (const auto& b : buffers_)
    if (b.t->defined()) f(prefix + b.name, *b.t, b.persistent);
  for (const auto& c : children_)
    if (Module* m = c.get()) m->visit_buffers(prefix + c.name + ".", f);
}

NamedTensors Module::named_parameters(bool trainable_only) const {
  NamedTensors out;
  visit_params("", [&](const std::string& n, Tensor& t, bool) {
    if (!trainable_only || t.requires_grad()) out.emplace_back(n, t);
  });
  return out;
}

std::vector<Tensor> Module::parameters(bool trainable_only) const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters(trainable_only)) out.push_back(t);
  return out;
}

Tensor Module::checkpointed(bool on, const std::function<Tensor(const Tensor&)>& f, const Tensor& x) const {
  return on ? checkpoint(f, x, parameters(true)) : f(x);
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  visit_buffers("", [&](const std::string& n, Tensor& t, bool) { out.emplace_back(n, t); });
  return out;
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters(trainable_only)) n += t.numel();
  return n;
}

NamedTensors Module::state_dict() const {
  NamedTensors out;
  visit_params("", [&](const std::string& n, Tensor& t, bool adapter) {
    if (!adapter) out.emplace_back(n, t);
  });
  visit_buffers("", [&](const std::string& n, Tensor& t, bool persistent) {
    if (persistent) out.emplace_back(n, t);
  });
  return out;
}

NamedTensors Module::adapter_parameters() const {
  NamedTensors out;
  visit_params("", [&](const std::string& n, Tensor& t, bool adapter) {
    if (adapter) out.emplace_back(n, t);
  });
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& sd, bool strict) {
  NamedTensors v(sd.begin(), sd.end());
  load_state_dict(v, strict);
}

void Module::load_state_dict(const NamedTensors& sd, bool strict) {
  std::map<std::string, Tensor*> slots;
  visit_params("", [&](const std::string& n, Tensor& t, bool adapter) {
    if (!adapter) slots[n] = &t;
  });
  visit_buffers("", [&](const std::string& n, Tensor& t, bool persistent) {
    if (persistent) slots[n] = &t;
  });
  std::set<std::string> seen;
  std::vector<std::string> unexpected;
  for (const auto& [name, src] : sd) {
    VGG_CHECK(seen.insert(name).second, "load_state_dict: key '", name, "' given twice");
    auto it = slots.find(name);
    if (it == slots.end()) {
      unexpected.push_back(name);
      continue;
    }
    const Tensor& dst = *it->second;
    VGG_CHECK(src.defined(), "load_state_dict: '", name, "' is an undefined tensor");
    VGG_CHECK(src.shape() == dst.shape(), "load_state_dict: '", name, "' has shape ", shape_str(src.shape()),
              " in the checkpoint but ", shape_str(dst.shape()), " in the ", type_name());
    VGG_CHECK(is_floating(src.dtype()) == is_floating(dst.dtype()), "load_state_dict: '", name, "' is ",
              dtype_name(src.dtype()), " in the checkpoint but ", dtype_name(dst.dtype()), " in the model");
  }
  if (strict) {
    std::vector<std::string> missing;
    for (const auto& [name, t] : slots)
      if (!seen.count(name)) missing.push_back(name);
    auto list = [](const std::vector<std::string>& v) {
      std::ostringstream os;
      for (size_t i = 0; i < v.size() && i < 5; ++i) os << (i ? ", " : "") << v[i];
      if (v.size() > 5) os << " and " << v.size() - 5 << " more";
      return os.str();
    };
    VGG_CHECK(missing.empty(), "load_state_dict: ", missing.size(), " missing key(s): ", list(missing));
    VGG_CHECK(unexpected.empty(), "load_state_dict: ", unexpected.size(), " unexpected key(s): ", list(unexpected));
  }
  NoGradGuard ng;
  for (const auto& [name, src] : sd) {
    auto it = slots.find(name);
    if (it == slots.end()) continue;
    Tensor& dst = *it->second;
    copy_into(dst, to_device_raw(cast_raw(src, dst.dtype()), dst.device()));
    dst.bump_version();
  }
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (const auto& c : children_) {
    Module* m = c.get();
    if (!m) continue;
    for (auto& [n, sub] : m->named_modules()) out.emplace_back(n.empty() ? c.name : c.name + "." + n, sub);
  }
  return out;
}

Module* Module::find_module(const std::string& path) {
  for (auto& [n, m] : named_modules())
    if (n == path) return m;
  return nullptr;
}

void Module::replace_module(const std::string& path, std::shared_ptr<Module> m) {
  // The parent is the module whose path plus one child name equals `path`; child names may
  // contain dots ("to_out.0"), so match against every module's children.
  for (auto& [n, parent] : named_modules()) {
    for (auto& c : parent->children_) {
      std::string full = n.empty() ? c.name : n + "." + c.name;
      if (full == path) {
        c.set(std::move(m));
        return;
      }
    }
  }
  VGG_FAIL("replace_module: no sub-module named '", path, "' in the ", type_name());
}

void Module::requires_grad_(bool on) {
  visit_params("", [&](const std::string&, Tensor& t, bool adapter) {
    if (!adapter) t.requires_grad_(on);
  });
}

void Module::convert(const std::function<Tensor(const Tensor&)>& f) {
  for (auto& [n, m] : named_modules()) {
    for (auto& p : m->params_) {
      if (!p.t->defined()) continue;
      bool rg = p.t->requires_grad();
      *p.t = make_parameter(f(*p.t), rg);
    }
    for (auto& b : m->buffers_)
      if (b.t->defined()) *b.t = f(*b.t).detach();
  }
}

void Module::to(DType dtype) {
  VGG_CHECK(is_floating(dtype), type_name(), ".to: parameters must be floating, got ", dtype_name(dtype));
  NoGradGuard ng;
  convert([&](const Tensor& t) { return is_floating(t.dtype()) ? cast_raw(t, dtype) : t; });
}

void Module::to(Device device) {
  NoGradGuard ng;
  convert([&](const Tensor& t) { return to_device_raw(t, device); });
}

void Module::set_compute_dtype(std::optional<DType> dtype) {
  VGG_CHECK(!dtype || is_floating(*dtype), type_name(), ".set_compute_dtype: the compute dtype must be floating, got ",
            dtype_name(*dtype));
  compute_dtype_ = dtype;
  for (auto& c : children_)
    if (Module* m = c.get()) m->set_compute_dtype(dtype);
}

Tensor Module::compute(const Tensor& t) const {
  if (!t.defined() || !compute_dtype_ || t.dtype() == *compute_dtype_) return t;
  return ops::to(t, *compute_dtype_);
}

Device Module::param_device() const {
  Device d = Device::cpu();
  bool found = false;
  visit_params("", [&](const std::string&, Tensor& t, bool) {
    if (!found) d = t.device(), found = true;
  });
  return d;
}

DType Module::param_dtype() const {
  DType d = DType::F32;
  bool found = false;
  visit_params("", [&](const std::string&, Tensor& t, bool) {
    if (!found) d = t.dtype(), found = true;
  });
  return d;
}

void Module::train(bool on) {
  for (auto& [n, m] : named_modules()) m->training_ = on;
}

}  // namespace vgg::nn
