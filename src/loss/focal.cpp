// The baselines the paper compares IA-BCE with (Table 4): focal, varifocal and quality focal loss.

#include <torch/torch.h>

#include "aligndetr/loss/classification.h"

namespace aligndetr::loss {

torch::Tensor sigmoid_focal_loss(const torch::Tensor& logits, const torch::Tensor& pos_index,
                                 double alpha, double gamma) {
  const auto x = logits.reshape(-1);
  const auto p = x.sigmoid();
  const auto is_pos = torch::zeros_like(x).index_fill(0, pos_index, 1.0);
  const auto pos = alpha * (1 - p).pow(gamma) * torch::softplus(-x);
  const auto neg = (1 - alpha) * p.pow(gamma) * torch::softplus(x);
  return (is_pos * pos + (1 - is_pos) * neg).sum();
}

torch::Tensor varifocal_loss(const torch::Tensor& logits, const torch::Tensor& pos_index,
                             const torch::Tensor& target, double alpha, double gamma) {
  const auto x = logits.reshape(-1);
  const auto q = target.detach().to(x.scalar_type());
  // Positives: q * BCE(p, q) = q * (q (-log p) + (1 - q)(-log(1 - p))).
  const auto w_pos = torch::zeros_like(x).scatter(0, pos_index, q * q);
  const auto w_neg = (alpha * x.sigmoid().pow(gamma)).scatter(0, pos_index, q * (1 - q));
  return (w_pos * torch::softplus(-x) + w_neg * torch::softplus(x)).sum();
}

torch::Tensor quality_focal_loss(const torch::Tensor& logits, const torch::Tensor& pos_index,
                                 const torch::Tensor& target, double beta) {
  const auto x = logits.reshape(-1);
  const auto y = torch::zeros_like(x).scatter(0, pos_index, target.detach().to(x.scalar_type()));
  const auto bce = y * torch::softplus(-x) + (1 - y) * torch::softplus(x);
  return ((y - x.sigmoid()).abs().pow(beta) * bce).sum();
}

}  // namespace aligndetr::loss
