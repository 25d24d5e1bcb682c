// libFuzzer target: the COCO results reader, on one thread and on two (large inputs are split
// between threads at record boundaries). Any input either parses or is an InputError.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "aligndetr/coco/results.h"
#include "aligndetr/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  for (const int threads : {1, 2}) {
    try {
      (void)aligndetr::coco::parse_coco_results(json, "fuzz.json", threads);
    } catch (const aligndetr::util::InputError&) {
    }
  }
  return 0;
}
