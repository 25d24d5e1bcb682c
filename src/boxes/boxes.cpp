#include "aligndetr/boxes/boxes.h"

#include <torch/torch.h>

namespace aligndetr::boxes {

namespace {
constexpr double kEps = 1e-6;

void check_boxes(const torch::Tensor& b, const char* what) {
  TORCH_CHECK(b.dim() >= 1 && b.size(-1) == 4, what, ": expected boxes of shape [..., 4], got ",
              b.sizes());
}

// IoU and union of box pairs broadcast from a [..., 4] and b [..., 4].
std::pair<torch::Tensor, torch::Tensor> iou_and_union(const torch::Tensor& a,
                                                      const torch::Tensor& b) {
  const auto lt = torch::max(a.narrow(-1, 0, 2), b.narrow(-1, 0, 2));
  const auto rb = torch::min(a.narrow(-1, 2, 2), b.narrow(-1, 2, 2));
  const auto wh = (rb - lt).clamp_min(0);
  const auto inter = wh.select(-1, 0) * wh.select(-1, 1);
  const auto uni = area(a) + area(b) - inter;
  return {inter / (uni + kEps), uni};
}

torch::Tensor giou_broadcast(const torch::Tensor& a, const torch::Tensor& b) {
  auto [iou, uni] = iou_and_union(a, b);
  const auto lt = torch::min(a.narrow(-1, 0, 2), b.narrow(-1, 0, 2));
  const auto rb = torch::max(a.narrow(-1, 2, 2), b.narrow(-1, 2, 2));
  const auto wh = (rb - lt).clamp_min(0);
  const auto enclosing = wh.select(-1, 0) * wh.select(-1, 1);
  return iou - (enclosing - uni) / (enclosing + kEps);
}

void check_pairwise(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.dim() == 2 && a.size(1) == 4 && b.dim() == 2 && b.size(1) == 4,
              "pairwise IoU: expected [N,4] and [M,4], got ", a.sizes(), " and ", b.sizes());
}

void check_aligned(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.dim() == 2 && a.size(1) == 4 && a.sizes() == b.sizes(),
              "aligned IoU: expected two [N,4] tensors, got ", a.sizes(), " and ", b.sizes());
}
}  // namespace

torch::Tensor cxcywh_to_xyxy(const torch::Tensor& b) {
  check_boxes(b, "cxcywh_to_xyxy");
  const auto c = b.narrow(-1, 0, 2);
  const auto half = 0.5 * b.narrow(-1, 2, 2);
  return torch::cat({c - half, c + half}, -1);
}

torch::Tensor xyxy_to_cxcywh(const torch::Tensor& b) {
  check_boxes(b, "xyxy_to_cxcywh");
  const auto p0 = b.narrow(-1, 0, 2);
  const auto p1 = b.narrow(-1, 2, 2);
  return torch::cat({0.5 * (p0 + p1), p1 - p0}, -1);
}

torch::Tensor xywh_to_xyxy(const torch::Tensor& b) {
  check_boxes(b, "xywh_to_xyxy");
  const auto p0 = b.narrow(-1, 0, 2);
  return torch::cat({p0, p0 + b.narrow(-1, 2, 2)}, -1);
}

torch::Tensor xyxy_to_xywh(const torch::Tensor& b) {
  check_boxes(b, "xyxy_to_xywh");
  const auto p0 = b.narrow(-1, 0, 2);
  return torch::cat({p0, b.narrow(-1, 2, 2) - p0}, -1);
}

torch::Tensor area(const torch::Tensor& xyxy) {
  check_boxes(xyxy, "area");
  const auto wh = (xyxy.narrow(-1, 2, 2) - xyxy.narrow(-1, 0, 2)).clamp_min(0);
  return wh.select(-1, 0) * wh.select(-1, 1);
}

torch::Tensor pairwise_iou(const torch::Tensor& a, const torch::Tensor& b) {
  check_pairwise(a, b);
  return iou_and_union(a.unsqueeze(1), b.unsqueeze(0)).first;
}

torch::Tensor pairwise_giou(const torch::Tensor& a, const torch::Tensor& b) {
  check_pairwise(a, b);
  return giou_broadcast(a.unsqueeze(1), b.unsqueeze(0));
}

torch::Tensor aligned_iou(const torch::Tensor& a, const torch::Tensor& b) {
  check_aligned(a, b);
  return iou_and_union(a, b).first;
}

torch::Tensor aligned_giou(const torch::Tensor& a, const torch::Tensor& b) {
  check_aligned(a, b);
  return giou_broadcast(a, b);
}

torch::Tensor clip(const torch::Tensor& xyxy, double height, double width) {
  check_boxes(xyxy, "clip");
  return torch::stack({xyxy.select(-1, 0).clamp(0, width), xyxy.select(-1, 1).clamp(0, height),
                       xyxy.select(-1, 2).clamp(0, width), xyxy.select(-1, 3).clamp(0, height)},
                      -1);
}

torch::Tensor scale(const torch::Tensor& b, double height, double width) {
  check_boxes(b, "scale");
  const auto factors = torch::tensor({width, height, width, height}, b.options());
  return b * factors;
}

torch::Tensor normalize(const torch::Tensor& b, double height, double width) {
  check_boxes(b, "normalize");
  TORCH_CHECK(height > 0 && width > 0, "normalize: image size must be positive, got ", height, "x",
              width);
  const auto factors =
      torch::tensor({1.0 / width, 1.0 / height, 1.0 / width, 1.0 / height}, b.options());
  return b * factors;
}

}  // namespace aligndetr::boxes
