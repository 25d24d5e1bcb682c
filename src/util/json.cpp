#include "aligndetr/util/json.h"

#include <algorithm>

#include <fmt/format.h>

#include "aligndetr/util/error.h"

namespace aligndetr::util {

std::string missing_json_cpu_features(const std::function<bool(const char*)>& has_feature) {
#ifdef ALIGNDETR_JSON_AVX2
  // The flags CMakeLists.txt gives the readers: -mavx2 -mbmi -mbmi2 -mpclmul -mlzcnt -mpopcnt.
  static constexpr const char* kNeeded[] = {"avx2", "bmi", "bmi2", "pclmul", "lzcnt", "popcnt"};
  std::string missing;
  for (const char* feature : kNeeded) {
    if (!has_feature(feature)) missing += (missing.empty() ? "" : ", ") + std::string(feature);
  }
  return missing;
#else
  (void)has_feature;
  return {};
#endif
}

void check_json_cpu_support() {
  static const std::string missing = missing_json_cpu_features([](const char* feature) {
#ifdef ALIGNDETR_JSON_AVX2
    __builtin_cpu_init();
    // __builtin_cpu_supports needs a literal argument.
    const std::string f = feature;
    if (f == "avx2") return __builtin_cpu_supports("avx2") != 0;
    if (f == "bmi") return __builtin_cpu_supports("bmi") != 0;
    if (f == "bmi2") return __builtin_cpu_supports("bmi2") != 0;
    if (f == "pclmul") return __builtin_cpu_supports("pclmul") != 0;
    if (f == "lzcnt") return __builtin_cpu_supports("lzcnt") != 0;
    if (f == "popcnt") return __builtin_cpu_supports("popcnt") != 0;
#endif
    (void)feature;
    return false;
  });
  if (!missing.empty()) {
    throw InputError(fmt::format(
        "this build's JSON readers use x86-64 extensions this CPU lacks ({}); rebuild with "
        "-DALIGNDETR_JSON_AVX2=OFF",
        missing));
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

}  // namespace aligndetr::util
