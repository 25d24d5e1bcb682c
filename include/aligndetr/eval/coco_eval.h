#pragma once
// COCO bbox evaluation with the semantics of pycocotools' COCOeval(iouType="bbox"): the same
// matching, accumulation and 12 summary numbers, with the same floating-point operations in the
// same order, so results agree with pycocotools to the last bit or nearly so.
//
// Work is split over (category, image) cells on a few threads; memory stays proportional to the
// input (no per-image IoU matrices across categories).

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "aligndetr/coco/annotations.h"
#include "aligndetr/coco/results.h"

namespace aligndetr::eval {

struct CocoEvalOptions {
  int threads = 0;                               // <= 0: all cores
  std::string detections_source = "detections";  // names the detections in error messages
};

// pycocotools' default parameters.
inline constexpr int kCocoIouThresholds = 10;      // 0.50:0.05:0.95
inline constexpr int kCocoRecallThresholds = 101;  // 0:0.01:1
inline constexpr int kCocoAreaRanges = 4;          // all, small, medium, large
inline constexpr int kCocoMaxDetsCount = 3;        // 1, 10, 100
inline constexpr std::array<int, kCocoMaxDetsCount> kCocoMaxDets = {1, 10, 100};
inline constexpr std::array<std::array<double, 2>, kCocoAreaRanges> kCocoAreaRangeBounds = {
    {{0.0, 1e10}, {0.0, 32.0 * 32.0}, {32.0 * 32.0, 96.0 * 96.0}, {96.0 * 96.0, 1e10}}};
inline constexpr std::array<const char*, kCocoAreaRanges> kCocoAreaRangeNames = {"all", "small",
                                                                                 "medium", "large"};

// The thresholds exactly as numpy's linspace computes them (start + i * step, last = stop).
const std::array<double, kCocoIouThresholds>& coco_iou_thresholds();
const std::array<double, kCocoRecallThresholds>& coco_recall_thresholds();

// The 12 summary numbers, in pycocotools' order.
inline constexpr int kCocoStats = 12;
inline constexpr std::array<const char*, kCocoStats> kCocoStatNames = {
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"};

struct CocoEvalResult {
  std::array<double, kCocoStats> stats{};
  std::vector<int64_t> category_ids;  // ascending, as pycocotools' params.catIds
  std::vector<std::string> category_names;
  std::vector<int64_t> category_gt;  // non-crowd GT boxes of each category (area "all")
  // pycocotools' eval['precision'] [T][R][K][A][M] and eval['recall'] [T][K][A][M], flattened in
  // that index order; -1 where the category has no (non-ignored) GT in the area range.
  std::vector<double> precision;
  std::vector<double> recall;

  int num_categories() const { return static_cast<int>(category_ids.size()); }
  double precision_at(int t, int r, int k, int a, int m) const;
  double recall_at(int t, int k, int a, int m) const;
  // One category's AP, AP50, AP75, APs, APm, APl (maxDets 100), averaged as summarize() does;
  // -1 where undefined.
  std::array<double, 6> category_ap(int k) const;

  // The 12 lines pycocotools' summarize() prints.
  std::string summary() const;
  // {"AP": ..., ..., "ARl": ...} with every number round-tripping (%.17g).
  std::string stats_json() const;
  // One row per category: name, AP, AP50, AP75, APs, APm, APl, GT count.
  std::string per_category_table() const;
  // {"<name>": {"AP": .., "AP50": .., "AP75": .., "gt": n}, ...}; -1 where undefined.
  std::string per_category_json() const;
};

// The three stages of COCOeval, separable so each can be timed:
//   CocoEvaluator ev(gt); ev.evaluate(dets); CocoEvalResult r = ev.accumulate();
class CocoEvaluator {
 public:
  explicit CocoEvaluator(const coco::CocoDataset& gt, CocoEvalOptions options = {});
  ~CocoEvaluator();
  CocoEvaluator(const CocoEvaluator&) = delete;
  CocoEvaluator& operator=(const CocoEvaluator&) = delete;

  // Matches the detections to the ground truth at every IoU threshold and area range. Throws
  // InputError, naming the detection, for an empty list, an image or category id absent from the
  // ground truth (pycocotools' loadRes refuses the former), a negative or non-finite box size or
  // score, or a non-finite coordinate.
  void evaluate(const std::vector<coco::Detection>& detections);
  // Precision and recall curves and the summary numbers of the last evaluate().
  CocoEvalResult accumulate() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// evaluate() and accumulate() in one call.
CocoEvalResult evaluate_coco(const coco::CocoDataset& gt,
                             const std::vector<coco::Detection>& detections,
                             const CocoEvalOptions& options = {});

}  // namespace aligndetr::eval
