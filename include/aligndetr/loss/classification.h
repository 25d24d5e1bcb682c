#pragma once
// Classification losses on sigmoid logits [..., C], and the option that chooses one.
// Every loss returns the sum over all entries; the criterion divides by num_boxes.

#include <string>

#include <torch/types.h>

namespace aligndetr::loss {

enum class ClassLoss {
  kIaBce,            // "ia_bce": the paper's loss, Table B (t, 1 - t)
  kFocal,            // "focal": sigmoid focal loss, alpha 0.25 (the DINO baseline)
  kVarifocal,        // "varifocal": VFL, target IoU, negatives 0.75 * p^gamma
  kQualityFocal,     // "quality_focal": QFL, target IoU, factor |IoU - p|^gamma
  kTableBFocal,      // "table_b_focal": Table B ((1 - s)^2, 0)
  kTableBOne,        // "table_b_one": Table B (1, 0)
  kTableBT,          // "table_b_t": Table B (t, 0)
  kTableBSquare,     // "table_b_square": Table B ((t - s)^2, (t - s)^2)
  kTableBSquareNeg,  // "table_b_square_neg": Table B ((t - s)^2, (1 - t) s^2)
};

// Name <-> enum; parse throws InputError listing the valid names.
ClassLoss parse_class_loss(const std::string& name);
std::string to_string(ClassLoss loss);

// What the matched (positive) entries of one output set provide.
struct PositiveTargets {
  torch::Tensor index;    // int64 [P]: flat indices into the logits of the positive entries
  torch::Tensor quality;  // [P] detached t of Eq. 4
  torch::Tensor iou;      // [P] detached IoU of the matched box
  torch::Tensor weight;   // [P] prime-sample weight (1 without ranks)
};

// Soft targets: w * t for IA-BCE and the Table B family, w * IoU for VFL and QFL (their papers'
// targets); focal loss uses hard targets and no weights, as the baseline it stands for.
torch::Tensor classification_loss(ClassLoss kind, const torch::Tensor& logits,
                                  const PositiveTargets& pos, double gamma);

// Lin et al. 2017: -alpha (1 - p)^gamma log p at positives, -(1 - alpha) p^gamma log(1 - p)
// elsewhere.
torch::Tensor sigmoid_focal_loss(const torch::Tensor& logits, const torch::Tensor& pos_index,
                                 double alpha, double gamma);
// Zhang et al. 2021 (VarifocalNet): q * BCE(p, q) at positives, alpha p^gamma BCE(p, 0) elsewhere.
torch::Tensor varifocal_loss(const torch::Tensor& logits, const torch::Tensor& pos_index,
                             const torch::Tensor& target, double alpha, double gamma);
// Li et al. 2020 (GFL): |y - p|^beta BCE(p, y) on every entry, y the soft target (0 off positives).
torch::Tensor quality_focal_loss(const torch::Tensor& logits, const torch::Tensor& pos_index,
                                 const torch::Tensor& target, double beta);

// The paper's Table B rows other than IA-BCE, in the form w_pos (-log s) + w_neg (-log(1 - s)) at
// positives and s^gamma BCE(s, 0) elsewhere; s-dependent weights keep their gradient (as the
// focal factor does), t is the detached soft target.
torch::Tensor table_b_loss(ClassLoss kind, const torch::Tensor& logits,
                           const torch::Tensor& pos_index, const torch::Tensor& target,
                           double gamma);

}  // namespace aligndetr::loss
