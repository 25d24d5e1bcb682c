#pragma once
// What the data pipeline hands the model and the criterion: normalized image tensors, padded
// batches with their padding masks, and per-image targets.

#include <array>
#include <cstdint>
#include <vector>

#include <torch/types.h>

#include "aligndetr/boxes/target.h"

namespace aligndetr::data {

// ImageNet statistics on 0-255 RGB, as the reference.
inline constexpr std::array<float, 3> kPixelMean = {123.675f, 116.28f, 103.53f};
inline constexpr std::array<float, 3> kPixelStd = {58.395f, 57.12f, 57.375f};

struct Sample {
  torch::Tensor image;  // [3, H, W] float, normalized
  boxes::Target target;
};

struct Batch {
  torch::Tensor images;  // [B, 3, Hmax, Wmax], zero on padding
  torch::Tensor mask;    // [B, Hmax, Wmax] bool, true on padding
  std::vector<boxes::Target> targets;
  Batch to(const torch::Device& device) const;
};

// Pads every image to the largest height and width of the batch (zeros) and builds the mask.
Batch collate(std::vector<Sample> samples);

}  // namespace aligndetr::data
