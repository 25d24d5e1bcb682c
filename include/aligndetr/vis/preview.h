#pragma once
// Renders dataset samples with their ground truth, as `aligndetr dataset show` does.

#include <cstdint>
#include <string>

#include "aligndetr/data/dataset.h"

namespace aligndetr::vis {

struct PreviewOptions {
  std::string out_dir;
  int limit = 16;        // images to render (the first ones of the file)
  bool augment = false;  // apply the training transforms first
  uint64_t seed = 0;     // augmentation seed (sample i uses (seed, epoch 0, i))
};

// Writes one PNG per image into out_dir, named after the source file. Returns the count.
int render_preview(const data::CocoDetection& dataset, const PreviewOptions& options);

}  // namespace aligndetr::vis
