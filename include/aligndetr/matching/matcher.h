#pragma once
// Hungarian matcher with DETR costs, one-to-one or many-to-one (k GT copies).

#include <cstdint>
#include <vector>

#include <torch/types.h>

#include "aligndetr/boxes/target.h"

namespace aligndetr::matching {

// C = cost_class * focal + cost_bbox * L1(cxcywh) + cost_giou * (-GIoU).
struct MatcherCosts {
  double cost_class = 2.0;
  double cost_bbox = 5.0;
  double cost_giou = 2.0;
  double focal_alpha = 0.25;
  double focal_gamma = 2.0;
};

// Matched pairs of one image, sorted by GT with each GT's k queries contiguous. Index tensors are
// int64 on the device of the predictions.
struct ImageMatch {
  torch::Tensor query;
  torch::Tensor gt;
  // GT copies of many-to-one matching (effective_k); 1 for one-to-one matches and for the fixed
  // denoising pairs, whose group count is DenoisingOutputs::groups.
  int64_t k = 1;
};

// The [Q, n] matching cost of one image (no gradient): logits [Q, C], boxes [Q, 4].
torch::Tensor matching_cost(const torch::Tensor& logits, const torch::Tensor& boxes,
                            const boxes::Target& target, const MatcherCosts& costs);

// Matches every image of logits [B, Q, C] and boxes [B, Q, 4] to its targets with k copies of each
// GT (capped per image, see effective_k). The assignment problems run in parallel.
std::vector<ImageMatch> match(const torch::Tensor& logits, const torch::Tensor& boxes,
                              const std::vector<boxes::Target>& targets, int64_t k,
                              const MatcherCosts& costs);

// One prediction set to match: logits [B, Q, C], boxes [B, Q, 4], GT copies k.
struct MatchRequest {
  torch::Tensor logits;
  torch::Tensor boxes;
  int64_t k = 1;
};

// match() for several prediction sets of the same batch (e.g. every decoder layer) at once: the
// costs reach the CPU in one transfer and all (set, image) problems are solved in parallel.
// Returns out[set][image].
std::vector<std::vector<ImageMatch>> match_sets(const std::vector<MatchRequest>& sets,
                                                const std::vector<boxes::Target>& targets,
                                                const MatcherCosts& costs);

}  // namespace aligndetr::matching
