#pragma once
// Box geometry on tensors of shape [..., 4]. Works on any device and dtype and keeps autograd.
// Formats: xyxy (corners), cxcywh (centre, size), xywh (COCO: corner, size).
// IoU and GIoU follow the reference convention of dividing by (union + 1e-6) and
// (enclosing area + 1e-6), so degenerate boxes give 0 instead of NaN.

#include <torch/types.h>

namespace aligndetr::boxes {

torch::Tensor cxcywh_to_xyxy(const torch::Tensor& b);
torch::Tensor xyxy_to_cxcywh(const torch::Tensor& b);
torch::Tensor xywh_to_xyxy(const torch::Tensor& b);
torch::Tensor xyxy_to_xywh(const torch::Tensor& b);

// Area of xyxy boxes; negative extents count as zero.
torch::Tensor area(const torch::Tensor& xyxy);

// Pairwise [N, M] IoU of xyxy boxes a [N,4] and b [M,4].
torch::Tensor pairwise_iou(const torch::Tensor& a, const torch::Tensor& b);
// Pairwise [N, M] generalized IoU.
torch::Tensor pairwise_giou(const torch::Tensor& a, const torch::Tensor& b);
// Element-wise IoU of a[i] and b[i] (both [N,4]), shape [N].
torch::Tensor aligned_iou(const torch::Tensor& a, const torch::Tensor& b);
// Element-wise generalized IoU, shape [N].
torch::Tensor aligned_giou(const torch::Tensor& a, const torch::Tensor& b);

// Clips xyxy boxes to [0, width] x [0, height].
torch::Tensor clip(const torch::Tensor& xyxy, double height, double width);
// Normalized [0,1] coordinates -> pixels and back (any of the three formats: x scales by width,
// y by height).
torch::Tensor scale(const torch::Tensor& b, double height, double width);
torch::Tensor normalize(const torch::Tensor& b, double height, double width);

}  // namespace aligndetr::boxes
