// vgg::Error and the VGG_CHECK macro: every input check in the project throws
// vgg::Error with a one-line message naming the op, shapes, dtypes or file.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace vgg {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
template <typename... Args>
[[noreturn]] void throw_error(const Args&... args) {
  std::ostringstream os;
  append(os, args...);
  throw Error(os.str());
}
}  // namespace detail

}  // namespace vgg

// VGG_CHECK(cond, "op: ", shape, " ...") throws vgg::Error with the streamed message.
#define VGG_CHECK(cond, ...)                              \
  do {                                                    \
    if (!(cond)) ::vgg::detail::throw_error(__VA_ARGS__); \
  } while (0)

#define VGG_FAIL(...) ::vgg::detail::throw_error(__VA_ARGS__)
