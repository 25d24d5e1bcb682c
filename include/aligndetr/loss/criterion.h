#pragma once
// The Align-DETR criterion: matches every output set (encoder proposals, each decoder layer) to
// the targets, one-to-one or many-to-one, and sums classification and box losses over them,
// plus the denoising (DN) outputs with their fixed pairs. Plain structs in, named terms out.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/types.h>

#include "aligndetr/loss/classification.h"
#include "aligndetr/matching/matcher.h"
#include "aligndetr/model/detector.h"

namespace aligndetr::loss {

// The model's logits or boxes hold NaN or infinite values: a diverged run rather than bad input.
// The trainer stops or skips the step, as for a non-finite loss.
class NonFiniteOutputs : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct CriterionOptions {
  int64_t k = 3;  // GT copies for many-to-one matching (paper: 3; released configs: 2)
  // Per decoder layer, first to last; empty: k on every layer but the last, 1 on the last.
  std::vector<int64_t> decoder_k;
  // Copies for the encoder proposals; unset: k, as the released code does. 1 turns it off.
  std::optional<int64_t> encoder_k;
  double alpha = 0.25;  // quality exponent of Eq. 4
  double gamma = 2.0;   // focal exponent on negatives
  double tau = 1.5;     // prime-sample temperature
  ClassLoss class_loss = ClassLoss::kIaBce;
  double weight_class = 1.0;
  double weight_bbox = 5.0;
  double weight_giou = 2.0;
  matching::MatcherCosts matcher;
  // Turns the local GT count into the global one, e.g. an all-reduce sum divided by the world
  // size; unset in a single process. The result is clamped to >= 1.
  std::function<double(double)> reduce_num_boxes;

  static CriterionOptions paper();     // k = 3
  static CriterionOptions released();  // k = 2, as the released 12/24/36-epoch configs

  // The k of each decoder layer for a model with `layers` layers.
  std::vector<int64_t> layer_k(size_t layers) const;
};

// Losses by name: loss_class, loss_bbox, loss_giou for the last decoder layer, suffixed _0, _1, ..
// for the earlier layers, _enc for the encoder, _dn for the last DN layer and _dn_0, .. for the
// earlier ones. `unweighted` are divided by num_boxes, `weighted` also multiplied by the loss
// weights; total is the sum of the weighted terms.
struct LossTerms {
  std::map<std::string, torch::Tensor> unweighted;
  std::map<std::string, torch::Tensor> weighted;
  torch::Tensor total;
  double num_boxes = 1.0;
};

LossTerms compute_criterion(const model::DetectorOutputs& outputs,
                            const std::vector<boxes::Target>& targets,
                            const CriterionOptions& options);

// Losses of one output set for given matches, summed, not yet normalized: {class, bbox, giou}.
// Prime weights are used when `ranks` is true.
struct SetLosses {
  torch::Tensor cls, bbox, giou;
};
SetLosses set_losses(const model::OutputSet& out, const std::vector<boxes::Target>& targets,
                     const std::vector<matching::ImageMatch>& matches, bool ranks,
                     const CriterionOptions& options);

}  // namespace aligndetr::loss
