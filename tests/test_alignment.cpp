#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <opencv2/imgcodecs.hpp>

#include "aligndetr/analysis/alignment.h"
#include "aligndetr/util/error.h"
#include "test_support.h"

namespace aligndetr::analysis {
namespace {

double sigmoid(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}

torch::Tensor rows(std::vector<float> v, int64_t cols) {
  const auto n = static_cast<int64_t>(v.size()) / cols;
  return torch::tensor(v).view({n, cols});
}

// Three GT and six queries, two classes. IoUs by construction (boxes of one size shifted along x
// by half their width overlap 1/3, by a fifth 2/3):
//   q0: G0 shifted by w/2  IoU(G0) = 1/3   logits (3, -5)   confidence s(3)  = 0.953
//   q1: exactly G1         IoU(G1) = 1     logits (-5, -1)  confidence s(-1) = 0.269
//   q2: exactly G0         IoU(G0) = 1     logits (-2, -5)  confidence s(-2) = 0.119
//   q3: G2 shifted by w/5  IoU(G2) = 2/3   logits (2, -5)   confidence s(2)  = 0.881
//   q4: far from all GT    IoU = 0         logits (1, 0)    confidence s(1)  = 0.731
//   q5: G1 shifted by w/2  IoU(G1) = 1/3   logits (-5, .5)  confidence s(.5) = 0.622
// Confidence order: q0 q3 q4 q5 q1 q2. BR samples: G0 -> q2 (rank 5), G1 -> q1 (rank 4),
// G2 -> q3 (rank 1); so 1 of 3 is in the top N = 3, all 3 in the top 2N = 6.
// HC samples q0, q3, q4 have best IoUs 1/3, 2/3, 0.
// The matcher's costs (focal + 5 L1 - 2 GIoU) pick G0 -> q0, G1 -> q1, G2 -> q3.
struct Example {
  torch::Tensor logits = rows({3, -5, -5, -1, -2, -5, 2, -5, 1, 0, -5, 0.5}, 2);
  torch::Tensor boxes =
      rows({0.3f,  0.2f, 0.2f, 0.2f, 0.6f, 0.3f, 0.2f, 0.2f, 0.2f, 0.2f, 0.2f, 0.2f,
            0.58f, 0.7f, 0.4f, 0.2f, 0.9f, 0.9f, 0.1f, 0.1f, 0.7f, 0.3f, 0.2f, 0.2f},
           4);
  torch::Tensor gt_labels = torch::tensor({0, 1, 0}, torch::kInt64);
  torch::Tensor gt_boxes =
      rows({0.2f, 0.2f, 0.2f, 0.2f, 0.6f, 0.3f, 0.2f, 0.2f, 0.5f, 0.7f, 0.4f, 0.2f}, 4);
};

double reference_pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = static_cast<double>(x.size());
  double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sx += x[i], sy += y[i], sxx += x[i] * x[i], syy += y[i] * y[i], sxy += x[i] * y[i];
  }
  return (n * sxy - sx * sy) / std::sqrt((n * sxx - sx * sx) * (n * syy - sy * sy));
}

TEST(Alignment, HandMadeImage) {
  const Example e;
  AlignmentAccumulator acc;
  acc.add_image(e.logits, e.boxes, e.gt_labels, e.gt_boxes);
  const auto r = acc.report();
  EXPECT_EQ(r.images, 1);
  EXPECT_EQ(r.images_without_gt, 0);
  EXPECT_EQ(r.gt, 3);
  EXPECT_EQ(r.br_hits_top_n, 1);
  EXPECT_EQ(r.br_hits_top_2n, 3);
  EXPECT_DOUBLE_EQ(r.br_recall_top_n, 1.0 / 3);
  EXPECT_DOUBLE_EQ(r.br_recall_top_2n, 1.0);
  EXPECT_EQ(r.br_iou_histogram, (std::vector<int64_t>{0, 0, 0, 0, 0, 0, 1, 0, 0, 2}));
  EXPECT_EQ(r.hc_iou_histogram, (std::vector<int64_t>{1, 0, 0, 1, 0, 0, 1, 0, 0, 0}));

  EXPECT_EQ(r.matched, 3);
  const double expected =
      reference_pearson({sigmoid(3), sigmoid(-1), sigmoid(2)}, {1.0 / 3, 1.0, 2.0 / 3});
  EXPECT_NEAR(expected, -0.9098, 1e-4);
  EXPECT_NEAR(r.pearson, expected, 1e-4);

  // 50 x 50 cells of 0.02: (conf 0.953, IoU 1/3) -> row 16, column 47; (0.269, 1) -> row 49,
  // column 13; (0.881, 2/3) -> row 33, column 44.
  ASSERT_EQ(r.density_bins, 50);
  ASSERT_EQ(r.density.size(), 2500u);
  EXPECT_EQ(r.density[16 * 50 + 47], 1);
  EXPECT_EQ(r.density[49 * 50 + 13], 1);
  EXPECT_EQ(r.density[33 * 50 + 44], 1);
  int64_t total = 0;
  for (auto c : r.density) total += c;
  EXPECT_EQ(total, 3);
}

TEST(Alignment, BatchEqualsImageByImage) {
  const Example e;
  AlignmentAccumulator one, batch;
  one.add_image(e.logits, e.boxes, e.gt_labels, e.gt_boxes);
  one.add_image(e.logits.flip(0), e.boxes.flip(0), e.gt_labels.narrow(0, 0, 2),
                e.gt_boxes.narrow(0, 0, 2));
  batch.add_batch(
      torch::stack({e.logits, e.logits.flip(0)}), torch::stack({e.boxes, e.boxes.flip(0)}),
      {{e.gt_labels, e.gt_boxes}, {e.gt_labels.narrow(0, 0, 2), e.gt_boxes.narrow(0, 0, 2)}});
  EXPECT_EQ(one.report().to_json(), batch.report().to_json());
  EXPECT_EQ(batch.report().gt, 5);
}

TEST(Alignment, ImagesWithoutGtAreSkippedAndCounted) {
  const Example e;
  AlignmentAccumulator acc;
  acc.add_image(e.logits, e.boxes, torch::empty({0}, torch::kInt64), torch::empty({0, 4}));
  auto r = acc.report();
  EXPECT_EQ(r.images, 1);
  EXPECT_EQ(r.images_without_gt, 1);
  EXPECT_EQ(r.gt, 0);
  EXPECT_TRUE(std::isnan(r.br_recall_top_n));
  EXPECT_TRUE(std::isnan(r.pearson));
  EXPECT_NE(r.to_json().find("\"br_recall_top_n\": null"), std::string::npos);

  acc.add_image(e.logits, e.boxes, e.gt_labels, e.gt_boxes);
  r = acc.report();
  EXPECT_EQ(r.images, 2);
  EXPECT_EQ(r.images_without_gt, 1);
  EXPECT_EQ(r.gt, 3);
  EXPECT_DOUBLE_EQ(r.br_recall_top_n, 1.0 / 3);
}

TEST(Alignment, TiesInIouGoToTheLowestQuery) {
  // q0 and q1 both cover the GT exactly; q1 is more confident. The BR sample is q0, which is not
  // the single most confident query.
  AlignmentAccumulator acc;
  acc.add_image(rows({0, 1, 2}, 1),
                rows({0.5f, 0.5f, 0.2f, 0.2f, 0.5f, 0.5f, 0.2f, 0.2f, 0.1f, 0.1f, 0.1f, 0.1f}, 4),
                torch::tensor({0}, torch::kInt64), rows({0.5f, 0.5f, 0.2f, 0.2f}, 4));
  const auto r = acc.report();
  EXPECT_EQ(r.br_hits_top_n, 0);
  EXPECT_EQ(r.br_hits_top_2n, 0);  // the top 2 are q2 and q1
}

TEST(Alignment, TiesInConfidenceGoToTheLowerQuery) {
  // q0 (far away) and q1 (exact) share the top confidence: q0 ranks first, so the BR sample q1
  // is only in the top 2.
  AlignmentAccumulator acc;
  acc.add_image(rows({1, 1, -1}, 1),
                rows({0.1f, 0.1f, 0.1f, 0.1f, 0.5f, 0.5f, 0.2f, 0.2f, 0.5f, 0.5f, 0.3f, 0.3f}, 4),
                torch::tensor({0}, torch::kInt64), rows({0.5f, 0.5f, 0.2f, 0.2f}, 4));
  const auto r = acc.report();
  EXPECT_EQ(r.br_hits_top_n, 0);
  EXPECT_EQ(r.br_hits_top_2n, 1);
  EXPECT_EQ(r.hc_iou_histogram[0], 1);  // q0's IoU
}

// One GT and one query per image, so that each image contributes one matched sample.
void add_single(AlignmentAccumulator& acc, float logit, float shift) {
  acc.add_image(rows({logit}, 1), rows({0.5f + shift, 0.5f, 0.2f, 0.2f}, 4),
                torch::tensor({0}, torch::kInt64), rows({0.5f, 0.5f, 0.2f, 0.2f}, 4));
}

TEST(Alignment, PerfectlyCorrelatedSamples) {
  // IoU of a box shifted by s (width 0.2): (0.2 - s) / (0.2 + s). Confidence set to 0.1 + 0.8 IoU.
  AlignmentAccumulator acc;
  for (float s : {0.0f, 0.02f, 0.05f, 0.1f, 0.15f}) {
    const double iou = (0.2 - s) / (0.2 + s);
    const double p = 0.1 + 0.8 * iou;
    add_single(acc, static_cast<float>(std::log(p / (1 - p))), s);
  }
  const auto r = acc.report();
  EXPECT_EQ(r.matched, 5);
  EXPECT_NEAR(r.pearson, 1.0, 1e-5);
}

TEST(Alignment, ConstantConfidenceHasNoCorrelation) {
  AlignmentAccumulator acc;
  for (float s : {0.0f, 0.05f, 0.1f}) add_single(acc, 0.7f, s);
  const auto r = acc.report();
  EXPECT_EQ(r.matched, 3);
  EXPECT_TRUE(std::isnan(r.pearson));
  EXPECT_NE(r.to_json().find("\"pearson\": null"), std::string::npos);
}

TEST(Alignment, PearsonCorrelation) {
  EXPECT_DOUBLE_EQ(pearson_correlation({1, 2, 3}, {2, 4, 6}), 1.0);
  EXPECT_DOUBLE_EQ(pearson_correlation({1, 2, 3}, {3, 2, 1}), -1.0);
  EXPECT_NEAR(pearson_correlation({1, 2, 3, 4}, {1, 3, 2, 4}), 0.8, 1e-12);
  EXPECT_TRUE(std::isnan(pearson_correlation({1}, {2})));
  EXPECT_TRUE(std::isnan(pearson_correlation({0.1f, 0.1f, 0.1f}, {1, 2, 3})));
}

TEST(Alignment, UnitBins) {
  EXPECT_EQ(unit_bin(0.0, 10), 0);
  EXPECT_EQ(unit_bin(0.0999, 10), 0);
  EXPECT_EQ(unit_bin(0.1, 10), 1);
  EXPECT_EQ(unit_bin(0.95, 10), 9);
  EXPECT_EQ(unit_bin(1.0, 10), 9);  // the last bin is closed
  EXPECT_EQ(unit_bin(1.5, 10), 9);
  EXPECT_EQ(unit_bin(-0.2, 10), 0);
  EXPECT_EQ(unit_bin(std::nan(""), 10), 0);
}

TEST(Alignment, ScaledConfidenceDensity) {
  AlignmentOptions o;
  o.density_bins = 4;
  o.density_scale_confidence_to_max = true;
  AlignmentAccumulator acc(o);
  add_single(acc, 0.0f, 0.0f);  // confidence 0.5 -> scaled 1, IoU 1: row 3, column 3
  // Confidence 0.3 -> scaled 0.6, IoU 1/3: row 1, column 2.
  add_single(acc, static_cast<float>(std::log(0.3 / 0.7)), 0.1f);
  const auto r = acc.report();
  EXPECT_NEAR(r.density_confidence_scale, 0.5, 1e-6);
  EXPECT_EQ(r.density, (std::vector<int64_t>{0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1}));
}

TEST(Alignment, RejectsBadShapesAndLabels) {
  const Example e;
  AlignmentAccumulator acc;
  EXPECT_THROW(acc.add_image(e.logits, e.boxes.narrow(0, 0, 5), e.gt_labels, e.gt_boxes),
               c10::Error);
  // Ground truth is user input, checked by boxes::check_targets as everywhere else.
  EXPECT_THROW(acc.add_image(e.logits, e.boxes, e.gt_labels.narrow(0, 0, 2), e.gt_boxes),
               util::InputError);
  EXPECT_THROW(
      acc.add_image(e.logits, e.boxes, torch::tensor({0, 2, 0}, torch::kInt64), e.gt_boxes),
      util::InputError);
  EXPECT_THROW(acc.add_image(torch::empty({0, 2}), torch::empty({0, 4}), e.gt_labels, e.gt_boxes),
               c10::Error);
  EXPECT_EQ(acc.report().images, 0);
}

TEST(Alignment, JsonAndPlots) {
  const Example e;
  AlignmentAccumulator acc;
  acc.add_image(e.logits, e.boxes, e.gt_labels, e.gt_boxes);
  const auto r = acc.report();
  const std::string json = r.to_json();
  EXPECT_NE(json.find("\"br_recall_top_2n\": 1,"), std::string::npos) << json;
  EXPECT_NE(json.find("\"br_iou_histogram\": [0, 0, 0, 0, 0, 0, 1, 0, 0, 2]"), std::string::npos);
  EXPECT_NE(json.find("\"gt\": 3,"), std::string::npos);

  testing::TempDir dir;
  const auto paths = write_alignment_plots(r, dir / "plots");
  ASSERT_EQ(paths.size(), 2u);
  for (const auto& p : paths) {
    const cv::Mat img = cv::imread(p.string());
    ASSERT_FALSE(img.empty()) << p;
    EXPECT_GT(img.cols, 500);
  }
}

}  // namespace
}  // namespace aligndetr::analysis
