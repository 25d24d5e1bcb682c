#pragma once
// Detections from raw outputs, as the reference: sigmoid scores, top-K over queries x classes
// (label = index mod C), boxes scaled to the original image, clipped to it and empty ones dropped
// (detrex), or left as predicted (the official DINO's PostProcess). No NMS.

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

struct PostprocessOptions {
  int64_t top_k = 300;     // detections per image (top-K over queries x classes)
  bool clip_boxes = true;  // false: boxes may leave the image and have zero area, as official
};

// logits [B, Q, C], boxes [B, Q, 4] normalized cxcywh; orig_sizes (height, width) per image.
std::vector<Detections> postprocess(const torch::Tensor& logits, const torch::Tensor& boxes,
                                    const std::vector<std::array<int64_t, 2>>& orig_sizes,
                                    const PostprocessOptions& options = {});

}  // namespace aligndetr::model
