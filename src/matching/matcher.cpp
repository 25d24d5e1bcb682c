#include "aligndetr/matching/matcher.h"

#include <torch/torch.h>

#include "aligndetr/boxes/boxes.h"
#include "aligndetr/matching/many_to_one.h"
#include "aligndetr/util/error.h"

namespace aligndetr::matching {

torch::Tensor matching_cost(const torch::Tensor& logits, const torch::Tensor& boxes,
                            const Target& target, const MatcherCosts& costs) {
  torch::NoGradGuard no_grad;
  constexpr double kEps = 1e-8;
  const auto labels = target.labels.to(logits.device(), torch::kLong);
  const auto gt_boxes = target.boxes.to(boxes.device(), boxes.scalar_type());
  // Focal cost of the GT class only: the positive focal term minus the negative one.
  const auto p = logits.index_select(1, labels).sigmoid();
  const auto pos = costs.focal_alpha * (1 - p).pow(costs.focal_gamma) * -(p + kEps).log();
  const auto neg = (1 - costs.focal_alpha) * p.pow(costs.focal_gamma) * -(1 - p + kEps).log();
  const auto l1 = torch::cdist(boxes, gt_boxes, 1);
  const auto giou =
      boxes::pairwise_giou(boxes::cxcywh_to_xyxy(boxes), boxes::cxcywh_to_xyxy(gt_boxes));
  return costs.cost_class * (pos - neg) + costs.cost_bbox * l1 - costs.cost_giou * giou;
}

std::vector<ImageMatch> match(const torch::Tensor& logits, const torch::Tensor& boxes,
                              const std::vector<Target>& targets, int64_t k,
                              const MatcherCosts& costs) {
  TORCH_CHECK(logits.dim() == 3 && boxes.dim() == 3 && boxes.size(2) == 4 &&
                  logits.size(0) == boxes.size(0) && logits.size(1) == boxes.size(1),
              "match: expected logits [B,Q,C] and boxes [B,Q,4], got ", logits.sizes(), " and ",
              boxes.sizes());
  const int64_t batch = logits.size(0), queries = logits.size(1);
  if (static_cast<int64_t>(targets.size()) != batch) {
    throw InputError("match: " + std::to_string(targets.size()) + " targets for a batch of " +
                     std::to_string(batch));
  }
  torch::NoGradGuard no_grad;
  // Each image's own Q x n block, in double on the CPU where the solver runs.
  std::vector<torch::Tensor> cost(batch);
  for (int64_t b = 0; b < batch; ++b) {
    if (targets[b].labels.numel() == 0) continue;
    cost[b] = matching_cost(logits[b], boxes[b], targets[b], costs)
                  .to(torch::kCPU, torch::kDouble)
                  .contiguous();
  }
  std::vector<GroupedPairs> pairs(batch);
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t n = targets[b].labels.numel();
      pairs[b] = n == 0 ? GroupedPairs{{}, {}, effective_k(queries, 0, k)}
                        : match_with_copies(cost[b].data_ptr<double>(), queries, n, k);
    }
  });
  std::vector<ImageMatch> out(batch);
  const auto index_options = torch::TensorOptions().dtype(torch::kLong);
  for (int64_t b = 0; b < batch; ++b) {
    const auto m = static_cast<int64_t>(pairs[b].query.size());
    out[b].query = torch::from_blob(pairs[b].query.data(), {m}, index_options)
                       .to(logits.device(), /*non_blocking=*/false, /*copy=*/true);
    out[b].gt = torch::from_blob(pairs[b].gt.data(), {m}, index_options)
                    .to(logits.device(), /*non_blocking=*/false, /*copy=*/true);
    out[b].k = pairs[b].k;
  }
  return out;
}

}  // namespace aligndetr::matching
