// IA-BCE, paper Eq. 4-6 and Alg. 1:
//   t = s^alpha * u^(1 - alpha)                                               (Eq. 4)
//   L_cls = sum_pos BCE(s_i, w_i t_i) + sum_neg s_j^2 BCE(s_j, 0)              (Eq. 6)
// Positives get no focal factor and there is no 0.25/0.75 balance.

#include "aligndetr/loss/ia_bce.h"

#include <torch/torch.h>

namespace aligndetr::loss {

torch::Tensor quality(const torch::Tensor& s, const torch::Tensor& iou, double alpha) {
  // The floor keeps a positive's target away from 0 when its box misses the GT entirely.
  return (s.pow(alpha) * iou.pow(1.0 - alpha)).clamp_min(0.01).detach();
}

torch::Tensor weighted_bce(const torch::Tensor& logits, const torch::Tensor& pos_index,
                           const torch::Tensor& w_pos, const torch::Tensor& w_neg, double gamma) {
  // -log(sigmoid(x)) = softplus(-x) and -log(1 - sigmoid(x)) = softplus(x). Every entry is first
  // summed as a negative; at the few positives that term is then swapped for the positive one,
  // which avoids building full-size weight tensors.
  const auto x = logits.reshape(-1);
  const auto sp = torch::softplus(x);
  const auto all_neg = (x.sigmoid().pow(gamma) * sp).sum();
  const auto xp = x.index_select(0, pos_index);
  const auto sp_p = sp.index_select(0, pos_index);
  const auto pos = w_pos.to(x.scalar_type()) * torch::softplus(-xp) +
                   (w_neg.to(x.scalar_type()) - xp.sigmoid().pow(gamma)) * sp_p;
  return all_neg + pos.sum();
}

torch::Tensor ia_bce_loss(const torch::Tensor& logits, const torch::Tensor& pos_index,
                          const torch::Tensor& target, double gamma) {
  const auto t = target.detach();
  return weighted_bce(logits, pos_index, t, 1 - t, gamma);
}

}  // namespace aligndetr::loss
