#pragma once
// Detections from raw outputs, as the reference: sigmoid scores, top-K over queries x classes
// (label = index mod C), boxes scaled to the original image, clipped, empty ones dropped.
// No NMS.

#include <array>
#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace aligndetr::model {

struct Detections {
  torch::Tensor boxes;   // [K, 4] xyxy pixels of the original image
  torch::Tensor scores;  // [K]
  torch::Tensor labels;  // [K] int64, contiguous labels
};

// logits [B, Q, C], boxes [B, Q, 4] normalized cxcywh; orig_sizes (height, width) per image.
std::vector<Detections> postprocess(const torch::Tensor& logits, const torch::Tensor& boxes,
                                    const std::vector<std::array<int64_t, 2>>& orig_sizes,
                                    int64_t top_k = 300);

}  // namespace aligndetr::model
