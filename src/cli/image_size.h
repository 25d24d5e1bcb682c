#pragma once
// The --size HxW option of the commands that run a model on an input size.

#include <array>
#include <cstdint>
#include <regex>
#include <string>

#include <fmt/format.h>

#include "aligndetr/util/error.h"

namespace aligndetr::cli {

// {height, width} of "HxW"; InputError otherwise. Up to nine digits a side, so that the numbers
// always fit (the commands bound the sizes they can run).
inline std::array<int64_t, 2> parse_image_size(const std::string& text) {
  static const std::regex size_re(R"((\d{1,9})x(\d{1,9}))");
  std::smatch m;
  if (!std::regex_match(text, m, size_re)) {
    throw util::InputError(fmt::format("--size '{}' is not HxW", text));
  }
  return {std::stoll(m[1]), std::stoll(m[2])};
}

}  // namespace aligndetr::cli
