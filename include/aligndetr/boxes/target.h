#pragma once
// The ground truth of one image, as the data pipeline produces it and the model (denoising), the
// matcher, the criterion and the alignment analysis consume it.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

namespace aligndetr::boxes {

struct Target {
  torch::Tensor labels;  // [n] int64, contiguous labels [0, C)
  torch::Tensor boxes;   // [n, 4] float, cxcywh normalized by the transformed image size
  int64_t image_id = 0;
  std::array<int64_t, 2> orig_size{};  // (height, width) of the file
  std::array<int64_t, 2> size{};       // (height, width) after the transforms, before padding
  Target to(const torch::Device& device) const;
};

// The one check of ground truth handed to the matcher, the criterion or the alignment analysis:
// one target per image of a batch of `batch`, labels [n] and boxes [n, 4] (any n, 0 included),
// every label in [0, classes). Throws util::InputError starting with `where` otherwise.
void check_targets(const std::vector<Target>& targets, int64_t batch, int64_t classes,
                   const std::string& where);

}  // namespace aligndetr::boxes
