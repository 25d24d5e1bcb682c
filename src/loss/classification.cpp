#include "aligndetr/loss/classification.h"

#include <torch/torch.h>

#include <array>
#include <utility>

#include "aligndetr/loss/ia_bce.h"
#include "aligndetr/util/error.h"

namespace aligndetr::loss {
namespace {

constexpr std::array<std::pair<ClassLoss, const char*>, 9> kNames = {{
    {ClassLoss::kIaBce, "ia_bce"},
    {ClassLoss::kFocal, "focal"},
    {ClassLoss::kVarifocal, "varifocal"},
    {ClassLoss::kQualityFocal, "quality_focal"},
    {ClassLoss::kTableBFocal, "table_b_focal"},
    {ClassLoss::kTableBOne, "table_b_one"},
    {ClassLoss::kTableBT, "table_b_t"},
    {ClassLoss::kTableBSquare, "table_b_square"},
    {ClassLoss::kTableBSquareNeg, "table_b_square_neg"},
}};

// The focal-loss balance of the DINO baseline and the negative weight of VarifocalNet.
constexpr double kFocalAlpha = 0.25;
constexpr double kVarifocalAlpha = 0.75;

}  // namespace

ClassLoss parse_class_loss(const std::string& name) {
  std::string valid;
  for (const auto& [kind, n] : kNames) {
    if (name == n) return kind;
    valid += valid.empty() ? n : std::string(", ") + n;
  }
  throw util::InputError("unknown classification loss '" + name + "' (valid: " + valid + ")");
}

std::string to_string(ClassLoss loss) {
  for (const auto& [kind, n] : kNames) {
    if (kind == loss) return n;
  }
  return "unknown";
}

torch::Tensor classification_loss(ClassLoss kind, const torch::Tensor& logits,
                                  const PositiveTargets& pos, double gamma) {
  switch (kind) {
    case ClassLoss::kIaBce:
      return ia_bce_loss(logits, pos.index, pos.weight * pos.quality, gamma);
    case ClassLoss::kFocal:
      return sigmoid_focal_loss(logits, pos.index, kFocalAlpha, gamma);
    case ClassLoss::kVarifocal:
      return varifocal_loss(logits, pos.index, pos.weight * pos.iou, kVarifocalAlpha, gamma);
    case ClassLoss::kQualityFocal:
      return quality_focal_loss(logits, pos.index, pos.weight * pos.iou, gamma);
    default:
      return table_b_loss(kind, logits, pos.index, pos.weight * pos.quality, gamma);
  }
}

}  // namespace aligndetr::loss
