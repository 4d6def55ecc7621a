#include "tensor/json.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "tensor/error.h"

namespace vgg {

nlohmann::json parse_json(const std::string& text, const std::string& what) {
  using json = nlohmann::json;
  // one set of keys per open object: a key seen twice in the same object is refused
  std::vector<std::set<std::string>> open;
  auto on_event = [&](int, json::parse_event_t ev, json& v) {
    switch (ev) {
      case json::parse_event_t::object_start:
        open.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open.empty()) open.pop_back();
        break;
      case json::parse_event_t::key: {
        const std::string& k = v.get_ref<const std::string&>();
        VGG_CHECK(open.empty() || open.back().insert(k).second, what, ": key '", k, "' appears twice in one object");
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(text, on_event);
  } catch (const json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 3: ..." -> after the tag
    std::string msg = e.what();
    if (auto p = msg.find("] "); msg.rfind("[json.exception", 0) == 0 && p != std::string::npos) msg = msg.substr(p + 2);
    VGG_FAIL(what, ": invalid JSON (", msg, ")");
  }
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  VGG_CHECK(in, "cannot open ", path, ": ", std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  VGG_CHECK(!in.bad(), "cannot read ", path);
  return parse_json(ss.str(), path);
}

}  // namespace vgg
