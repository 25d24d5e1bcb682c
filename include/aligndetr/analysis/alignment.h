#pragma once
// The paper's measurements of the misalignment between classification confidence and localization
// precision (Fig. 1a, Fig. 1b, Fig. 4), computed from the raw per-query outputs of the final
// decoder layer and the ground truth, image by image.
//
// Definitions (per image with n > 0 GT boxes and Q queries):
// - confidence of a query: its maximum class probability, max_c sigmoid(logit[q, c]);
// - IoU: of boxes in normalized cxcywh, computed by boxes::pairwise_iou on xyxy corners;
// - best-regressed (BR) sample of a GT: the query with the highest IoU with that GT; ties go to the
//   lowest query index. Two GT may share one BR sample; each GT counts once;
// - high-confidence (HC) samples: the top-N queries by confidence, N = n (top-2N: the top 2n);
//   ties in confidence go to the lower query index; N is capped at Q;
// - BR recall@N: the share of GT whose BR sample is among the image's top-N HC samples, pooled over
//   all images (hits / GT, not a mean of per-image shares); likewise @2N;
// - BR IoU histogram: each GT's BR IoU; HC IoU histogram: each top-N query's highest IoU with any
//   GT of its image;
// - matched samples: one-to-one Hungarian matching with the DETR costs (matching::match, k = 1);
//   a matched sample's confidence is the probability of its GT's class, its IoU that with its GT.
//   Pearson's correlation between the two is taken over all matched samples of all images.
// Images without GT have no BR, HC or matched samples: they are skipped and counted.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <torch/types.h>

#include "aligndetr/matching/matcher.h"

namespace aligndetr::analysis {

struct AlignmentOptions {
  // Equal-width bins on [0, 1]; every bin is [lo, hi) except the last, which is closed [lo, 1]
  // so that an IoU of exactly 1 is counted. Values outside [0, 1] are clamped into it.
  int64_t histogram_bins = 10;
  // The confidence x IoU density grid of the matched samples (same bin convention on both axes).
  int64_t density_bins = 50;
  // Fig. 4 rescales the confidence axis so that the largest matched confidence is 1. Pearson's
  // correlation does not depend on this.
  bool density_scale_confidence_to_max = false;
  matching::MatcherCosts costs;
};

struct AlignmentReport {
  int64_t images = 0;             // images fed, with or without GT
  int64_t images_without_gt = 0;  // skipped
  int64_t gt = 0;                 // GT boxes, i.e. BR samples
  int64_t br_hits_top_n = 0;
  int64_t br_hits_top_2n = 0;
  double br_recall_top_n = 0;   // br_hits_top_n / gt; NaN without GT
  double br_recall_top_2n = 0;  // br_hits_top_2n / gt; NaN without GT

  // histogram_bins counts each; bin i covers [i / bins, (i + 1) / bins).
  std::vector<int64_t> br_iou_histogram;
  std::vector<int64_t> hc_iou_histogram;

  int64_t matched = 0;
  // Pearson's r of (confidence, IoU) over the matched samples. NaN when undefined: fewer than two
  // samples, or either variable constant. to_json() writes NaN as null.
  double pearson = 0;

  // Row-major [density_bins (IoU, row 0 = lowest IoU)][density_bins (confidence)] counts of the
  // matched samples; the confidence axis is divided by density_confidence_scale first (1 unless
  // density_scale_confidence_to_max; then the largest matched confidence).
  int64_t density_bins = 0;
  double density_confidence_scale = 1.0;
  std::vector<int64_t> density;

  // One JSON object with all of the above; histograms and the density as arrays of counts
  // (the density as an array of rows), NaN as null.
  std::string to_json() const;
};

class AlignmentAccumulator {
 public:
  explicit AlignmentAccumulator(AlignmentOptions options = {});

  // One image: logits [Q, C] and boxes [Q, 4] (normalized cxcywh) of the final decoder layer, the
  // GT labels int64 [n] and boxes [n, 4] (normalized cxcywh). Any device; nothing keeps gradients.
  void add_image(const torch::Tensor& logits, const torch::Tensor& boxes,
                 const torch::Tensor& gt_labels, const torch::Tensor& gt_boxes);
  // A batch: logits [B, Q, C], boxes [B, Q, 4] and one target per image; matched in one call.
  void add_batch(const torch::Tensor& logits, const torch::Tensor& boxes,
                 const std::vector<boxes::Target>& targets);

  AlignmentReport report() const;

 private:
  void add_matched(const torch::Tensor& logits, const torch::Tensor& boxes,
                   const boxes::Target& target, const matching::ImageMatch& match);
  void add_ranked(const torch::Tensor& logits, const torch::Tensor& boxes,
                  const boxes::Target& target);

  AlignmentOptions options_;
  int64_t images_ = 0;
  int64_t images_without_gt_ = 0;
  int64_t gt_ = 0;
  int64_t br_hits_top_n_ = 0;
  int64_t br_hits_top_2n_ = 0;
  std::vector<int64_t> br_histogram_;
  std::vector<int64_t> hc_histogram_;
  // Kept per sample (a few per image) so that the density can be rescaled and Pearson's r is
  // computed in two passes, free of the cancellation of running sums.
  std::vector<float> matched_confidence_;
  std::vector<float> matched_iou_;
};

// The bin of v in `bins` equal bins on [0, 1] (see AlignmentOptions::histogram_bins).
int64_t unit_bin(double v, int64_t bins);

// Pearson's correlation of x and y; NaN with fewer than two pairs or a constant variable.
double pearson_correlation(const std::vector<float>& x, const std::vector<float>& y);

// Writes the Fig. 1b histogram (iou_histogram.png) and the Fig. 4 heat map
// (confidence_iou_density.png) into dir (created if needed), atomically. Returns the paths.
std::vector<std::filesystem::path> write_alignment_plots(const AlignmentReport& report,
                                                         const std::filesystem::path& dir);

}  // namespace aligndetr::analysis
