// Strict JSON for every file the project reads (configs, run state, safetensors headers): a syntax
// error, a number out of range (1e309) or a key given twice in one object is a vgg::Error of one
// line that names the file, never a raw parser exception and never "the last duplicate wins".
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace vgg {

// Parses text; errors read "<what>: invalid JSON (<where and why>)" or
// "<what>: key '<k>' appears twice in one object".
nlohmann::json parse_json(const std::string& text, const std::string& what);

// Reads and parses a file; errors name the path ("cannot open <path>: <reason>").
nlohmann::json read_json_file(const std::string& path);

}  // namespace vgg
