// The IA-BCE variants of the paper's Table B (Appendix C): all share
// L = w_pos (-ln s) + w_neg (-ln(1 - s)) at positives and s^2 BCE(s, 0) at negatives; the rows
// differ in (w_pos, w_neg). The last row, (t, 1 - t), is IA-BCE itself (ia_bce.cpp).

#include <torch/torch.h>

#include "aligndetr/loss/classification.h"
#include "aligndetr/loss/ia_bce.h"

namespace aligndetr::loss {

torch::Tensor table_b_loss(ClassLoss kind, const torch::Tensor& logits,
                           const torch::Tensor& pos_index, const torch::Tensor& target,
                           double gamma) {
  const auto t = target.detach().to(logits.scalar_type());
  const auto s = logits.reshape(-1).index_select(0, pos_index).sigmoid();
  const auto zero = torch::zeros_like(t);
  switch (kind) {
    case ClassLoss::kTableBFocal:
      return weighted_bce(logits, pos_index, (1 - s).pow(2), zero, gamma);
    case ClassLoss::kTableBOne:
      return weighted_bce(logits, pos_index, torch::ones_like(t), zero, gamma);
    case ClassLoss::kTableBT:
      return weighted_bce(logits, pos_index, t, zero, gamma);
    case ClassLoss::kTableBSquare:
      return weighted_bce(logits, pos_index, (t - s).pow(2), (t - s).pow(2), gamma);
    case ClassLoss::kTableBSquareNeg:
      return weighted_bce(logits, pos_index, (t - s).pow(2), (1 - t) * s.pow(2), gamma);
    case ClassLoss::kIaBce:
      return ia_bce_loss(logits, pos_index, t, gamma);
    default:
      TORCH_CHECK(false, "table_b_loss: ", to_string(kind), " is not a Table B variant");
  }
}

}  // namespace aligndetr::loss
