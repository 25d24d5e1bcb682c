// libFuzzer target: the reader of torch.save and LibTorch pickle files (checkpoints, weights).
// Any input either gives a name -> tensor dict or is an InputError (CorruptInput for damage);
// nothing else may escape, crash or trip the sanitizers. The reader opens files by path, so each
// input is written to a file first.

#include <unistd.h>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include <torch/types.h>

#include "aligndetr/model/weights.h"
#include "aligndetr/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/aligndetr-fuzz-checkpoint-" + std::to_string(getpid());
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const auto tensors = aligndetr::model::load_tensors(path);
    // The tensors must be readable to their last byte.
    for (const auto& item : tensors) {
      if (item.value().numel() > 0) (void)item.value().sum();
    }
    (void)aligndetr::model::category_names(tensors);
  } catch (const aligndetr::util::InputError&) {
  }
  return 0;
}
