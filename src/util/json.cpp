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

bool is_valid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const unsigned c = *p;
    int extra = 0;
    unsigned min = 0, cp = 0;
    if (c < 0x80) {
      ++p;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      extra = 1, min = 0x80, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      extra = 2, min = 0x800, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      extra = 3, min = 0x10000, cp = c & 0x07;
    } else {
      return false;
    }
    if (end - p <= extra) return false;
    for (int i = 1; i <= extra; ++i) {
      if ((p[i] & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    p += extra + 1;
  }
  return true;
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
