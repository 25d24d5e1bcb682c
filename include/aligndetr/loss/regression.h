#pragma once
// Box regression losses on matched pairs, prime-weighted (paper Eq. 7). Boxes are normalized
// cxcywh [P, 4], weight [P]; each returns the weighted sum.

#include <torch/types.h>

namespace aligndetr::loss {

// sum_i w_i * |b_i - g_i|_1 over the four coordinates.
torch::Tensor l1_loss(const torch::Tensor& pred, const torch::Tensor& gt,
                      const torch::Tensor& weight);
// sum_i w_i * (1 - GIoU(b_i, g_i)).
torch::Tensor giou_loss(const torch::Tensor& pred, const torch::Tensor& gt,
                        const torch::Tensor& weight);

}  // namespace aligndetr::loss
