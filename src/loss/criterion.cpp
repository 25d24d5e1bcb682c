// The total loss of paper Eq. 8: many-to-one terms on the encoder output and the first L-1
// decoder layers, a one-to-one term on the last one, plus the denoising terms; each normalized by
// the number of GT boxes (not k times it: the extra matches add to the same divisor).

#include "aligndetr/loss/criterion.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "aligndetr/boxes/boxes.h"
#include "aligndetr/loss/ia_bce.h"
#include "aligndetr/loss/prime_weights.h"
#include "aligndetr/loss/regression.h"
#include "aligndetr/ops/autocast.h"
#include "aligndetr/util/error.h"

namespace aligndetr::loss {
namespace {

void check_shapes(const model::OutputSet& out, const std::string& where) {
  TORCH_CHECK(out.logits.dim() == 3 && out.boxes.dim() == 3 && out.boxes.size(2) == 4 &&
                  out.logits.size(0) == out.boxes.size(0) &&
                  out.logits.size(1) == out.boxes.size(1),
              "criterion: ", where, ": expected logits [B,Q,C] and boxes [B,Q,4], got ",
              out.logits.sizes(), " and ", out.boxes.sizes());
}

// prefix + n, appended rather than inserted (GCC 12 warns falsely on `"..." + std::to_string(n)`
// in C++20).
std::string numbered(const char* prefix, size_t n) {
  std::string out(prefix);
  out += std::to_string(n);
  return out;
}

struct NamedSet {
  const model::OutputSet* out;
  std::string where;
};

// One pass per tensor and one host synchronisation for all of them: a sum in double is finite
// exactly when every entry is (finite floats cannot overflow it).
void check_finite(const std::vector<NamedSet>& sets) {
  std::vector<torch::Tensor> sums;
  for (const auto& set : sets) {
    sums.push_back(set.out->logits.sum(torch::kDouble));
    sums.push_back(set.out->boxes.sum(torch::kDouble));
  }
  if (sums.empty()) return;
  const auto host = torch::stack(sums).to(torch::kCPU);
  const auto values = host.accessor<double, 1>();
  for (size_t i = 0; i < sets.size(); ++i) {
    for (size_t part = 0; part < 2; ++part) {
      if (!std::isfinite(values[int64_t(2 * i + part)])) {
        throw NonFiniteOutputs(std::string("non-finite values in the ") +
                               (part == 0 ? "logits" : "boxes") + " of " + sets[i].where);
      }
    }
  }
}

// The losses and the matching run in float32 whatever precision the model ran in (autocast's
// bfloat16 or float16 outputs are widened).
torch::Tensor widened(const torch::Tensor& t) {
  const auto type = t.scalar_type();
  return type == torch::kHalf || type == torch::kBFloat16 ? t.to(torch::kFloat) : t;
}

model::OutputSet widened(const model::OutputSet& set) {
  model::OutputSet out;
  out.logits = widened(set.logits);
  out.boxes = widened(set.boxes);
  return out;
}

model::DetectorOutputs widened(const model::DetectorOutputs& given) {
  model::DetectorOutputs out;
  for (const auto& set : given.decoder) out.decoder.push_back(widened(set));
  if (given.encoder) out.encoder = widened(*given.encoder);
  if (given.denoising) {
    out.denoising = *given.denoising;
    for (auto& set : out.denoising->layers) set = widened(set);
  }
  return out;
}

void add_terms(LossTerms& terms, const SetLosses& l, const std::string& suffix, double divisor,
               const CriterionOptions& o) {
  struct Part {
    const char* name;
    const torch::Tensor& sum;
    double weight;
  };
  const Part parts[] = {{"loss_class", l.cls, o.weight_class},
                        {"loss_bbox", l.bbox, o.weight_bbox},
                        {"loss_giou", l.giou, o.weight_giou}};
  for (const auto& [name, sum, weight] : parts) {
    const auto unweighted = sum / divisor;
    const auto weighted = unweighted * weight;
    terms.unweighted[name + suffix] = unweighted;
    terms.weighted[name + suffix] = weighted;
    terms.total = terms.total.defined() ? terms.total + weighted : weighted;
  }
}

}  // namespace

CriterionOptions CriterionOptions::paper() {
  return CriterionOptions{};
}

CriterionOptions CriterionOptions::released() {
  CriterionOptions o;
  o.k = 2;
  return o;
}

std::vector<int64_t> CriterionOptions::layer_k(size_t layers) const {
  if (!decoder_k.empty()) {
    if (decoder_k.size() != layers) {
      throw util::InputError("criterion: decoder_k has " + std::to_string(decoder_k.size()) +
                             " entries for " + std::to_string(layers) + " decoder layers");
    }
    return decoder_k;
  }
  std::vector<int64_t> ks(layers, k);
  if (!ks.empty()) ks.back() = 1;
  return ks;
}

SetLosses set_losses(const model::OutputSet& out, const std::vector<boxes::Target>& targets,
                     const std::vector<matching::ImageMatch>& matches, bool ranks,
                     const CriterionOptions& options) {
  if (matches.size() != targets.size()) {
    throw util::InputError("criterion: " + std::to_string(matches.size()) + " matched images for " +
                           std::to_string(targets.size()) + " targets");
  }
  const auto device = out.logits.device();
  const int64_t queries = out.logits.size(1), classes = out.logits.size(2);
  // Flatten the pairs of all images: prediction row b*Q + q, GT row offset_b + j.
  std::vector<torch::Tensor> pred_rows, gt_rows;
  std::vector<torch::Tensor> gt_boxes, gt_labels;
  int64_t offset = 0;
  for (size_t b = 0; b < matches.size(); ++b) {
    pred_rows.push_back(matches[b].query.to(device) + static_cast<int64_t>(b) * queries);
    gt_rows.push_back(matches[b].gt.to(device) + offset);
    gt_boxes.push_back(targets[b].boxes.reshape({-1, 4}).to(device, out.boxes.scalar_type()));
    gt_labels.push_back(targets[b].labels.to(device, torch::kLong));
    offset += targets[b].labels.numel();
  }
  const auto pred_row = torch::cat(pred_rows);
  const auto gt_row = torch::cat(gt_rows);
  const auto all_gt_boxes = torch::cat(gt_boxes).reshape({-1, 4});
  const auto labels = torch::cat(gt_labels).index_select(0, gt_row);

  const auto pred_box = out.boxes.reshape({-1, 4}).index_select(0, pred_row);
  const auto gt_box = all_gt_boxes.index_select(0, gt_row);

  PositiveTargets pos;
  pos.index = pred_row * classes + labels;
  {
    torch::NoGradGuard no_grad;
    pos.iou = boxes::aligned_iou(boxes::cxcywh_to_xyxy(pred_box), boxes::cxcywh_to_xyxy(gt_box));
    const auto s = out.logits.reshape(-1).index_select(0, pos.index).sigmoid();
    pos.quality = quality(s, pos.iou, options.alpha);
    pos.weight =
        ranks ? prime_weights(pos.quality, gt_row, options.tau) : torch::ones_like(pos.quality);
  }
  SetLosses l;
  l.cls = classification_loss(options.class_loss, out.logits, pos, options.gamma);
  l.bbox = l1_loss(pred_box, gt_box, pos.weight);
  l.giou = giou_loss(pred_box, gt_box, pos.weight);
  return l;
}

LossTerms compute_criterion(const model::DetectorOutputs& given,
                            const std::vector<boxes::Target>& targets,
                            const CriterionOptions& options) {
  const ops::AutocastOff float32;
  const auto inputs = widened(given);
  if (inputs.decoder.empty()) throw util::InputError("criterion: no decoder outputs");
  boxes::check_targets(targets, inputs.decoder.front().logits.size(0),
                       inputs.decoder.front().logits.size(-1), "criterion");
  LossTerms terms;
  double gts = 0;
  for (const auto& t : targets) gts += static_cast<double>(t.labels.numel());
  if (options.reduce_num_boxes) gts = options.reduce_num_boxes(gts);
  terms.num_boxes = std::max(1.0, gts);

  // Every decoder layer and the encoder output is matched on its own predictions; all of them in
  // one call so that their assignment problems run in parallel.
  struct Set {
    const model::OutputSet* out;
    int64_t k;
    std::string suffix;
  };
  std::vector<Set> sets;
  std::vector<NamedSet> checked;
  const size_t layers = inputs.decoder.size();
  const auto ks = options.layer_k(layers);
  for (size_t l = 0; l < layers; ++l) {
    checked.push_back({&inputs.decoder[l], numbered("decoder layer ", l)});
    sets.push_back({&inputs.decoder[l], ks[l], l + 1 == layers ? "" : numbered("_", l)});
  }
  if (inputs.encoder) {
    checked.push_back({&*inputs.encoder, "encoder output"});
    sets.push_back({&*inputs.encoder, options.encoder_k.value_or(options.k), "_enc"});
  }
  if (inputs.denoising) {
    for (size_t l = 0; l < inputs.denoising->layers.size(); ++l) {
      checked.push_back({&inputs.denoising->layers[l], numbered("denoising layer ", l)});
    }
  }
  for (const auto& set : checked) check_shapes(*set.out, set.where);
  check_finite(checked);
  std::vector<matching::MatchRequest> requests;
  for (const auto& set : sets) {
    requests.push_back({set.out->logits.detach(), set.out->boxes.detach(), set.k});
  }
  const auto matches = matching::match_sets(requests, targets, options.matcher);
  for (size_t s = 0; s < sets.size(); ++s) {
    add_terms(terms, set_losses(*sets[s].out, targets, matches[s], sets[s].k > 1, options),
              sets[s].suffix, terms.num_boxes, options);
  }

  if (inputs.denoising) {
    const auto& dn = *inputs.denoising;
    if (dn.groups < 1) throw util::InputError("criterion: denoising groups must be >= 1");
    const double divisor = terms.num_boxes * static_cast<double>(dn.groups);
    for (size_t l = 0; l < dn.layers.size(); ++l) {
      const bool last = l + 1 == dn.layers.size();
      add_terms(terms, set_losses(dn.layers[l], targets, dn.pairs, false, options),
                last ? "_dn" : numbered("_dn_", l), divisor, options);
    }
  }
  return terms;
}

}  // namespace aligndetr::loss
