// libFuzzer target: the COCO annotation reader. Any input either parses or is an InputError;
// nothing else may escape, crash or trip the sanitizers.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "aligndetr/coco/annotations.h"
#include "aligndetr/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto ds = aligndetr::coco::parse_coco(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json");
    (void)ds.annotations_by_image();
  } catch (const aligndetr::util::InputError&) {
  }
  return 0;
}
