#include "aligndetr/matching/matcher.h"

#include <torch/torch.h>

#include "aligndetr/boxes/boxes.h"
#include "aligndetr/matching/many_to_one.h"
#include "aligndetr/util/error.h"

namespace aligndetr::matching {

namespace {

// The cost of rows with class logits already gathered at the GT labels ([N, n]) and boxes [N, 4].
torch::Tensor cost_of_gathered(const torch::Tensor& gt_logits, const torch::Tensor& boxes,
                               const torch::Tensor& gt_boxes, const MatcherCosts& costs) {
  constexpr double kEps = 1e-8;
  // Focal cost of the GT class only: the positive focal term minus the negative one.
  const auto p = gt_logits.sigmoid();
  const auto pos = costs.focal_alpha * (1 - p).pow(costs.focal_gamma) * -(p + kEps).log();
  const auto neg = (1 - costs.focal_alpha) * p.pow(costs.focal_gamma) * -(1 - p + kEps).log();
  const auto l1 = torch::cdist(boxes, gt_boxes, 1);
  const auto giou =
      boxes::pairwise_giou(boxes::cxcywh_to_xyxy(boxes), boxes::cxcywh_to_xyxy(gt_boxes));
  return costs.cost_class * (pos - neg) + costs.cost_bbox * l1 - costs.cost_giou * giou;
}

}  // namespace

torch::Tensor matching_cost(const torch::Tensor& logits, const torch::Tensor& boxes,
                            const boxes::Target& target, const MatcherCosts& costs) {
  torch::NoGradGuard no_grad;
  const auto labels = target.labels.to(logits.device(), torch::kLong);
  return cost_of_gathered(logits.index_select(1, labels), boxes,
                          target.boxes.to(boxes.device(), boxes.scalar_type()), costs);
}

std::vector<std::vector<ImageMatch>> match_sets(const std::vector<MatchRequest>& sets,
                                                const std::vector<boxes::Target>& targets,
                                                const MatcherCosts& costs) {
  const auto batch = static_cast<int64_t>(targets.size());
  for (const auto& set : sets) {
    TORCH_CHECK(set.logits.dim() == 3 && set.boxes.dim() == 3 && set.boxes.size(2) == 4 &&
                    set.logits.size(0) == set.boxes.size(0) &&
                    set.logits.size(1) == set.boxes.size(1),
                "match: expected logits [B,Q,C] and boxes [B,Q,4], got ", set.logits.sizes(),
                " and ", set.boxes.sizes());
    // The targets are checked once (each check reads every label back from the device); a set
    // of another batch or class count is checked against its own.
    if (&set == &sets.front() || set.logits.size(0) != sets.front().logits.size(0) ||
        set.logits.size(2) != sets.front().logits.size(2)) {
      boxes::check_targets(targets, set.logits.size(0), set.logits.size(2), "match");
    }
  }
  if (sets.empty()) return {};
  torch::NoGradGuard no_grad;

  // Each image's own cost block, for all sets at once: their rows stacked ([sum of Q, n]) so that
  // one set of tensor operations serves them all. All blocks reach the CPU in one transfer.
  struct Job {
    size_t set;
    int64_t image, offset;
  };
  std::vector<Job> jobs;
  std::vector<torch::Tensor> blocks;
  int64_t offset = 0;
  const auto device = sets.front().logits.device();
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t n = targets[b].labels.numel();
    const auto labels = targets[b].labels.to(device, torch::kLong);
    std::vector<torch::Tensor> gt_logits, boxes;
    for (size_t s = 0; s < sets.size(); ++s) {
      jobs.push_back({s, b, offset});
      offset += sets[s].logits.size(1) * n;
      if (n == 0) continue;
      gt_logits.push_back(sets[s].logits[b].index_select(1, labels).to(device));
      boxes.push_back(sets[s].boxes[b].to(device, gt_logits.back().scalar_type()));
    }
    if (n == 0) continue;
    const auto gt_boxes = targets[b].boxes.to(device, gt_logits.front().scalar_type());
    blocks.push_back(
        cost_of_gathered(torch::cat(gt_logits), torch::cat(boxes), gt_boxes, costs).reshape(-1));
  }
  const auto cost = blocks.empty()
                        ? torch::empty({0}, torch::kDouble)
                        : torch::cat(blocks).to(torch::kCPU, torch::kDouble).contiguous();
  const double* cost_data = cost.data_ptr<double>();

  // The assignment problems of all sets and images are independent.
  std::vector<GroupedPairs> pairs(jobs.size());
  at::parallel_for(0, static_cast<int64_t>(jobs.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const Job& job = jobs[j];
      const int64_t queries = sets[job.set].logits.size(1);
      const int64_t n = targets[job.image].labels.numel();
      pairs[j] = match_with_copies(cost_data + job.offset, queries, n, sets[job.set].k);
    }
  });

  std::vector<int64_t> flat;
  for (const auto& p : pairs) {
    flat.insert(flat.end(), p.query.begin(), p.query.end());
    flat.insert(flat.end(), p.gt.begin(), p.gt.end());
  }
  const auto indices = torch::tensor(flat, torch::kLong).to(device);
  std::vector<std::vector<ImageMatch>> out(sets.size(), std::vector<ImageMatch>(batch));
  int64_t at = 0;
  for (size_t j = 0; j < jobs.size(); ++j) {
    const auto m = static_cast<int64_t>(pairs[j].query.size());
    ImageMatch& match = out[jobs[j].set][jobs[j].image];
    const auto set_device = sets[jobs[j].set].logits.device();
    match.query = indices.narrow(0, at, m).to(set_device);
    match.gt = indices.narrow(0, at + m, m).to(set_device);
    match.k = pairs[j].k;
    at += 2 * m;
  }
  return out;
}

std::vector<ImageMatch> match(const torch::Tensor& logits, const torch::Tensor& boxes,
                              const std::vector<boxes::Target>& targets, int64_t k,
                              const MatcherCosts& costs) {
  return match_sets({{logits, boxes, k}}, targets, costs).front();
}

}  // namespace aligndetr::matching
