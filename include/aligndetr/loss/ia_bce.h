#pragma once
// IoU-aware BCE (paper Sec. 3.2-3.3, Eq. 4-6, Alg. 1) and the general weighted-BCE form of the
// paper's Appendix C that it and the Table B variants share.

#include <torch/types.h>

namespace aligndetr::loss {

// Eq. 4: t = s^alpha * IoU^(1 - alpha), clamped to >= 0.01 and detached, where s is the sigmoid
// probability of the GT class.
torch::Tensor quality(const torch::Tensor& s, const torch::Tensor& iou, double alpha);

// Appendix C: sum over all entries of w_pos * (-log p) + w_neg * (-log(1 - p)), p = sigmoid(x),
// written with softplus so that it stays finite for saturated logits. At the positive entries
// (flat indices into logits) the weights are w_pos and w_neg; every other entry is a negative
// with w_pos = 0 and w_neg = p^gamma (gradient flows through p^gamma, as in focal loss).
torch::Tensor weighted_bce(const torch::Tensor& logits, const torch::Tensor& pos_index,
                           const torch::Tensor& w_pos, const torch::Tensor& w_neg, double gamma);

// Eq. 6 / Alg. 1: positives are a BCE against the soft target (w * t after prime weighting):
// w_pos = target, w_neg = 1 - target; negatives p^gamma * BCE(p, 0). Returns the sum.
torch::Tensor ia_bce_loss(const torch::Tensor& logits, const torch::Tensor& pos_index,
                          const torch::Tensor& target, double gamma);

}  // namespace aligndetr::loss
