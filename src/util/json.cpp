#include "aligndetr/util/json.h"

#include <algorithm>

#include <fmt/format.h>
#include <simdjson.h>

#include "aligndetr/util/error.h"

namespace aligndetr {

void check_json_cpu_support() {
  static const bool supported = simdjson::builtin_implementation()->supported_by_runtime_system();
  if (!supported) {
    throw InputError(fmt::format(
        "this build's JSON reader uses the '{}' kernels, which this CPU lacks; rebuild with "
        "-DALIGNDETR_JSON_AVX2=OFF",
        simdjson::builtin_implementation()->name()));
  }
}

std::string json_location(const char* base, size_t size, const char* at) {
  if (!at || at < base || at > base + size) return "unknown position";
  const size_t offset = static_cast<size_t>(at - base);
  const auto line = 1 + std::count(base, at, '\n');
  return fmt::format("byte {} (line {})", offset, line);
}

std::string json_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<int>(c));
        } else {
          out += c;
        }
    }
  }
  return out;
}

}  // namespace aligndetr
