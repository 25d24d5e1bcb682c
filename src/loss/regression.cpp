// Regression terms of paper Eq. 7: L_reg = sum_i w_i l_reg(b_i, g_i), with l_reg the L1 distance
// and 1 - GIoU, as in DETR.

#include "aligndetr/loss/regression.h"

#include <torch/torch.h>

#include "aligndetr/boxes/boxes.h"

namespace aligndetr::loss {

torch::Tensor l1_loss(const torch::Tensor& pred, const torch::Tensor& gt,
                      const torch::Tensor& weight) {
  return ((pred - gt).abs().sum(-1) * weight).sum();
}

torch::Tensor giou_loss(const torch::Tensor& pred, const torch::Tensor& gt,
                        const torch::Tensor& weight) {
  const auto giou = boxes::aligned_giou(boxes::cxcywh_to_xyxy(pred), boxes::cxcywh_to_xyxy(gt));
  return ((1 - giou) * weight).sum();
}

}  // namespace aligndetr::loss
