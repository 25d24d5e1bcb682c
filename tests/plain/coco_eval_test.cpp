// COCO bbox evaluation: pycocotools' numbers on its own demo files, and one small case per rule
// whose expected values are worked out by hand below.

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "aligndetr/coco/annotations.h"
#include "aligndetr/coco/results.h"
#include "aligndetr/eval/coco_eval.h"
#include "aligndetr/util/error.h"
#include "test_support.h"

namespace aligndetr {
namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();
// Precision where tp of n kept detections are true positives: pycocotools divides by n + eps.
double prec(double tp, double n) {
  return tp / (n + kEps);
}
const double kP1 = prec(1, 1);  // one true positive ranked first: 1 - 2^-52, not 1

enum Stat { AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl };

coco::CocoAnnotation gt_box(int64_t id, int64_t image, int64_t cat, double x, double y, double w,
                            double h, bool crowd = false, double area = -1) {
  coco::CocoAnnotation a;
  a.id = id;
  a.image_id = image;
  a.category_id = cat;
  a.bbox = {x, y, w, h};
  a.area = area < 0 ? w * h : area;
  a.iscrowd = crowd;
  return a;
}

coco::Detection det(int64_t image, int64_t cat, double x, double y, double w, double h,
                    double score) {
  return coco::Detection{image, cat, {x, y, w, h}, score};
}

coco::CocoDataset make_gt(const std::vector<int64_t>& images, const std::vector<int64_t>& cats,
                          std::vector<coco::CocoAnnotation> anns) {
  coco::CocoDataset ds;
  for (int64_t id : images) ds.images.push_back({id, std::to_string(id) + ".jpg", 640, 480});
  for (int64_t id : cats) ds.categories.push_back({id, "cat" + std::to_string(id), ""});
  ds.annotations = std::move(anns);
  ds.reindex();
  return ds;
}

eval::CocoEvalResult run(const coco::CocoDataset& gt, const std::vector<coco::Detection>& dts,
                         int threads = 1) {
  eval::CocoEvalOptions options;
  options.threads = threads;
  return eval::evaluate_coco(gt, dts, options);
}

// Mean over the ten IoU thresholds of a value that is `first` at IoU 0.5 and `rest` above.
double mean_first_rest(double first, double rest) {
  return (first + 9 * rest) / 10;
}

std::vector<double> read_expected_stats(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  size_t pos = text.find('[', text.find("\"stats\""));
  std::vector<double> out;
  const char* p = text.c_str() + pos + 1;
  while (true) {
    char* end = nullptr;
    const double v = std::strtod(p, &end);
    if (end == p) break;
    out.push_back(v);
    p = end;
    while (*p == ',' || *p == ' ' || *p == '\n') ++p;
  }
  return out;
}

TEST(CocoEval, ThresholdsAreNumpysLinspace) {
  const auto& t = eval::coco_iou_thresholds();
  EXPECT_EQ(t[0], 0.5);
  EXPECT_EQ(t[5], 0.75);  // summarize() finds AP75 by equality
  EXPECT_EQ(t[9], 0.95);
  EXPECT_EQ(t[1], 1.0 * ((0.95 - 0.5) / 9) + 0.5);
  const auto& r = eval::coco_recall_thresholds();
  EXPECT_EQ(r[0], 0.0);
  EXPECT_EQ(r[37], 37.0 * 0.01);
  EXPECT_EQ(r[100], 1.0);
}

TEST(CocoEval, MatchesPycocotoolsOnItsDemoFiles) {
  REQUIRE_SHARED_DATA("pycocotools' numbers on its cocoapi demo files");
  const auto dir = testing::shared_data() / "cocoapi-fake100";
  const auto gt = coco::read_coco((dir / "instances_val2014_100.json").string());
  const auto dts =
      coco::read_coco_results((dir / "instances_val2014_fakebbox100_results.json").string());
  ASSERT_EQ(dts.size(), 734u);
  const auto expected = read_expected_stats((dir / "expected_bbox_stats.json").string());
  ASSERT_EQ(expected.size(), 12u);
  const auto one = run(gt, dts, 1);
  const auto two = run(gt, dts, 2);
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_NEAR(one.stats[i], expected[i], 1e-12) << eval::kCocoStatNames[i];
    EXPECT_EQ(one.stats[i], two.stats[i]) << "threads must not change the result";
  }
  EXPECT_EQ(one.precision, two.precision);
}

TEST(CocoEval, PerfectDetectionsAndUndefinedAreaRanges) {
  const auto gt =
      make_gt({1, 2}, {1}, {gt_box(1, 1, 1, 0, 0, 200, 100), gt_box(2, 2, 1, 5, 5, 100, 120)});
  const auto r = run(gt, {det(1, 1, 0, 0, 200, 100, 0.9), det(2, 1, 5, 5, 100, 120, 0.8)});
  // Precision 1 - 2^-52 at recall 1/2, then 2 / (2 + eps), which rounds to exactly 1 and lifts
  // the first point too once precision is made monotone.
  ASSERT_EQ(prec(2, 2), 1.0);
  EXPECT_EQ(r.stats[AP], 1.0);
  EXPECT_EQ(r.stats[APl], 1.0);
  EXPECT_EQ(r.stats[AR1], 1.0);
  EXPECT_EQ(r.stats[AR100], 1.0);
  // Both GT are large: small and medium have no GT, so they are -1, not 0.
  EXPECT_EQ(r.stats[APs], -1.0);
  EXPECT_EQ(r.stats[APm], -1.0);
  EXPECT_EQ(r.stats[ARs], -1.0);
  EXPECT_EQ(r.precision_at(0, 0, 0, 1, 2), -1.0);
}

TEST(CocoEval, IouExactlyAtTheThresholdMatches) {
  // IoU = 5000 / 10000 = 0.5 exactly: a match at IoU 0.5 only.
  const auto gt = make_gt({1}, {1}, {gt_box(1, 1, 1, 0, 0, 50, 100)});
  const auto r = run(gt, {det(1, 1, 0, 0, 100, 100, 0.9)});
  EXPECT_DOUBLE_EQ(r.stats[AP50], kP1);
  EXPECT_EQ(r.stats[AP75], 0.0);
  EXPECT_NEAR(r.stats[AP], kP1 / 10, 1e-15);
  EXPECT_NEAR(r.stats[AR100], 0.1, 1e-15);
  // The GT (area 5000) is medium; the detection (10000) is large, so once unmatched (IoU > 0.5)
  // it is ignored in the medium range instead of counting as a false positive.
  EXPECT_NEAR(r.stats[APm], kP1 / 10, 1e-15);
  EXPECT_EQ(r.stats[APl], -1.0);
  EXPECT_EQ(r.stats[APs], -1.0);
}

TEST(CocoEval, CrowdRegionsAbsorbDetectionsAndUseTheDetectionArea) {
  // A: normal small GT. C: crowd region of 100x100.
  const auto gt =
      make_gt({1}, {1}, {gt_box(1, 1, 1, 0, 0, 10, 10), gt_box(2, 1, 1, 100, 100, 100, 100, true)});
  const std::vector<coco::Detection> dts = {
      // Half inside C: IoU against a crowd region is inter / det area = 5000 / 10000 = 0.5
      // (the usual IoU would be 1/3): ignored at IoU 0.5, a false positive above.
      det(1, 1, 100, 50, 100, 100, 0.95),
      // Inside C: IoU 1 with the crowd region, which can absorb any number of detections.
      det(1, 1, 100, 100, 20, 20, 0.9), det(1, 1, 150, 150, 20, 20, 0.8),
      det(1, 1, 0, 0, 10, 10, 0.7),  // A, exactly
  };
  const auto r = run(gt, dts);
  // IoU 0.5: only the true positive counts. Above: a false positive before it, 1/2.
  EXPECT_DOUBLE_EQ(r.stats[AP50], kP1);
  EXPECT_DOUBLE_EQ(r.stats[AP75], prec(1, 2));
  EXPECT_NEAR(r.stats[AP], mean_first_rest(kP1, prec(1, 2)), 1e-15);
  EXPECT_EQ(r.stats[AR100], 1.0);
  // Small range: the 10000-pixel detection is out of range, so unmatched it is ignored.
  EXPECT_DOUBLE_EQ(r.stats[APs], kP1);
  // The crowd region is large but never counts as a GT to find.
  EXPECT_EQ(r.stats[APl], -1.0);
}

TEST(CocoEval, EqualScoresKeepInputOrderWithinAnImage) {
  const auto gt = make_gt({1}, {1}, {gt_box(1, 1, 1, 0, 0, 10, 10)});
  const auto fp = det(1, 1, 50, 50, 10, 10, 0.5);
  const auto tp = det(1, 1, 0, 0, 10, 10, 0.5);
  // False positive first: precision 1/2 at the only recall reached.
  EXPECT_DOUBLE_EQ(run(gt, {fp, tp}).stats[AP], prec(1, 2));
  EXPECT_DOUBLE_EQ(run(gt, {tp, fp}).stats[AP], kP1);
}

TEST(CocoEval, EqualScoresAcrossImagesFollowAscendingImageIds) {
  // Image 1 has no GT; image 2 has one. Both detections score 0.5. pycocotools concatenates the
  // images in ascending id order, whatever the order of the files.
  const auto gt = make_gt({2, 1}, {1}, {gt_box(1, 2, 1, 0, 0, 10, 10)});
  const auto fp = det(1, 1, 0, 0, 10, 10, 0.5);
  const auto tp = det(2, 1, 0, 0, 10, 10, 0.5);
  EXPECT_DOUBLE_EQ(run(gt, {tp, fp}).stats[AP], prec(1, 2));
  EXPECT_DOUBLE_EQ(run(gt, {fp, tp}).stats[AP], prec(1, 2));
  // With the ids the other way round the true positive comes first.
  const auto gt_swapped = make_gt({1, 2}, {1}, {gt_box(1, 1, 1, 0, 0, 10, 10)});
  EXPECT_DOUBLE_EQ(
      run(gt_swapped, {det(2, 1, 0, 0, 10, 10, 0.5), det(1, 1, 0, 0, 10, 10, 0.5)}).stats[AP], kP1);
}

std::vector<coco::Detection> far_false_positives(int n, int64_t cat, double score) {
  std::vector<coco::Detection> out;
  for (int i = 0; i < n; ++i) out.push_back(det(1, cat, 100 + 3 * i, 300, 2, 2, score));
  return out;
}

TEST(CocoEval, OnlyTheTop100DetectionsPerImageAndCategoryCount) {
  const auto gt = make_gt({1}, {1, 2}, {gt_box(1, 1, 1, 0, 0, 10, 10)});
  // 100 higher-scored false positives push the true positive out.
  auto dts = far_false_positives(100, 1, 0.9);
  dts.push_back(det(1, 1, 0, 0, 10, 10, 0.1));
  auto r = run(gt, dts);
  EXPECT_EQ(r.stats[AP], 0.0);
  EXPECT_EQ(r.stats[AR100], 0.0);
  // With 99 it is kept, ranked 100th.
  dts.erase(dts.begin());
  r = run(gt, dts);
  EXPECT_NEAR(r.stats[AP], prec(1, 100), 1e-15);
  EXPECT_EQ(r.stats[AR100], 1.0);
  EXPECT_EQ(r.stats[AR10], 0.0);
  EXPECT_EQ(r.stats[AR1], 0.0);
  // Another category's detections on the same image have their own 100.
  dts = far_false_positives(150, 2, 0.9);
  dts.push_back(det(1, 1, 0, 0, 10, 10, 0.1));
  r = run(gt, dts);
  EXPECT_DOUBLE_EQ(r.category_ap(0)[0], kP1);
  EXPECT_EQ(r.category_ap(1)[0], -1.0);
}

TEST(CocoEval, MaxDetsOneAndTen) {
  const auto gt = make_gt({1}, {1}, {gt_box(1, 1, 1, 0, 0, 10, 10)});
  auto dts = far_false_positives(4, 1, 0.9);
  dts.push_back(det(1, 1, 0, 0, 10, 10, 0.5));  // fifth by score
  const auto r = run(gt, dts);
  EXPECT_EQ(r.stats[AR1], 0.0);
  EXPECT_EQ(r.stats[AR10], 1.0);
  EXPECT_EQ(r.stats[AR100], 1.0);
  EXPECT_DOUBLE_EQ(r.stats[AP], prec(1, 5));
}

TEST(CocoEval, DetectionsOnImagesWithoutGroundTruthAreFalsePositives) {
  const auto gt = make_gt({1, 2}, {1}, {gt_box(1, 1, 1, 0, 0, 10, 10)});
  const auto tp = det(1, 1, 0, 0, 10, 10, 0.8);
  EXPECT_DOUBLE_EQ(run(gt, {tp}).stats[AP], kP1);
  EXPECT_DOUBLE_EQ(run(gt, {tp, det(2, 1, 0, 0, 10, 10, 0.9)}).stats[AP], prec(1, 2));
  // A lower-scored one after the true positive costs nothing.
  EXPECT_DOUBLE_EQ(run(gt, {tp, det(2, 1, 0, 0, 10, 10, 0.7)}).stats[AP], kP1);
}

TEST(CocoEval, CategoriesWithoutDetectionsCountZeroWithoutGroundTruthAreSkipped) {
  const auto gt =
      make_gt({1}, {1, 2, 3}, {gt_box(1, 1, 1, 0, 0, 10, 10), gt_box(2, 1, 2, 20, 20, 10, 10)});
  // Category 1 found; 2 has GT but no detection; 3 has a detection but no GT.
  const auto r = run(gt, {det(1, 1, 0, 0, 10, 10, 0.9), det(1, 3, 40, 40, 10, 10, 0.9)});
  EXPECT_NEAR(r.stats[AP], kP1 / 2, 1e-15);
  EXPECT_EQ(r.stats[AR100], 0.5);
  EXPECT_DOUBLE_EQ(r.category_ap(0)[0], kP1);
  EXPECT_EQ(r.category_ap(1)[0], 0.0);
  EXPECT_EQ(r.category_ap(2)[0], -1.0);
  EXPECT_EQ(r.recall_at(0, 1, 0, 2), 0.0);
  EXPECT_EQ(r.recall_at(0, 2, 0, 2), -1.0);
}

TEST(CocoEval, AreaRangesUseTheGroundTruthAreaField) {
  // A 100x100 box whose `area` (segment area) is 500: small, not large.
  const auto gt = make_gt({1}, {1}, {gt_box(1, 1, 1, 0, 0, 100, 100, false, 500)});
  const auto r = run(gt, {det(1, 1, 0, 0, 100, 100, 0.9)});
  EXPECT_DOUBLE_EQ(r.stats[APs], kP1);
  EXPECT_EQ(r.stats[APl], -1.0);
  EXPECT_EQ(r.stats[ARs], 1.0);
}

TEST(CocoEval, AreaRangeBoundsAreInclusive) {
  // area 32^2 is both small and medium.
  const auto gt = make_gt({1}, {1}, {gt_box(1, 1, 1, 0, 0, 32, 32)});
  const auto r = run(gt, {det(1, 1, 0, 0, 32, 32, 0.9)});
  EXPECT_DOUBLE_EQ(r.stats[APs], kP1);
  EXPECT_DOUBLE_EQ(r.stats[APm], kP1);
  EXPECT_EQ(r.stats[APl], -1.0);
}

TEST(CocoEval, UnmatchedDetectionsOutsideTheAreaRangeAreIgnored) {
  // A medium GT found exactly, and a higher-scored large false positive: a false positive for
  // "all", ignored for "medium".
  const auto gt = make_gt({1}, {1}, {gt_box(1, 1, 1, 0, 0, 40, 40)});
  const auto r = run(gt, {det(1, 1, 300, 300, 200, 200, 0.9), det(1, 1, 0, 0, 40, 40, 0.8)});
  EXPECT_DOUBLE_EQ(r.stats[AP], prec(1, 2));
  EXPECT_DOUBLE_EQ(r.stats[APm], kP1);
}

TEST(CocoEval, EqualIouGoesToTheLaterGroundTruth) {
  // The first detection overlaps G1 and G2 equally (IoU 75 / 125 = 0.6); pycocotools keeps the
  // later GT on ties, so G2 is taken and the second detection, which overlaps only G2, misses.
  const auto gt = make_gt({1}, {1}, {gt_box(1, 1, 1, 0, 0, 10, 10), gt_box(2, 1, 1, 5, 0, 10, 10)});
  const auto r = run(gt, {det(1, 1, 2.5, 0, 10, 10, 0.9), det(1, 1, 5, 0, 10, 10, 0.8)});
  // IoU 0.5: recall 1/2 reached with precision 1, then nothing.
  double expected = 0;
  for (double thr : eval::coco_recall_thresholds()) expected += thr <= 0.5 ? kP1 : 0.0;
  EXPECT_NEAR(r.stats[AP50], expected / 101, 1e-15);
  EXPECT_EQ(r.recall_at(0, 0, 0, 2), 0.5);
}

TEST(CocoEval, ThreadCountDoesNotChangeResults) {
  std::vector<coco::CocoAnnotation> anns;
  std::vector<coco::Detection> dts;
  uint64_t state = 12345;
  const auto uniform = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state >> 11) * 0x1.0p-53;
  };
  std::vector<int64_t> images;
  for (int64_t im = 1; im <= 300; ++im) {
    images.push_back(im * 7);
    for (int i = 0; i < 4; ++i) {
      const double x = uniform() * 500, y = uniform() * 400, w = 5 + uniform() * 120,
                   h = 5 + uniform() * 120;
      const int64_t cat = 1 + static_cast<int64_t>(uniform() * 5);
      anns.push_back(
          gt_box(static_cast<int64_t>(anns.size()) + 1, im * 7, cat, x, y, w, h, uniform() < 0.05));
      for (int k = 0; k < 3; ++k) {
        dts.push_back(det(im * 7, cat, x + (uniform() - 0.5) * w * 0.4,
                          y + (uniform() - 0.5) * h * 0.4, w, h, std::round(uniform() * 20) / 20));
      }
    }
  }
  const auto gt = make_gt(images, {1, 2, 3, 4, 5}, anns);
  const auto one = run(gt, dts, 1);
  const auto three = run(gt, dts, 3);
  EXPECT_EQ(one.stats, three.stats);
  EXPECT_EQ(one.precision, three.precision);
  EXPECT_EQ(one.recall, three.recall);
  EXPECT_GT(one.stats[AP], 0.05);
}

TEST(CocoEval, SummaryTextAndJson) {
  eval::CocoEvalResult r;
  r.stats = {0.5045806987249628, 0.6969727247299577, 0.5729816669904824,  -1,
             0.5193996948036719, 0.5013978986347466, 0.38681277964578054, 0.5936795762842003,
             0.595352982877607,  0.6398109626113442, 0.5664205978994309,  0.5642905982905982};
  const std::string text = r.summary();
  EXPECT_EQ(text.substr(0, text.find('\n')),
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.505");
  EXPECT_NE(text.find(" Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ] = "
                      "0.573\n"),
            std::string::npos);
  EXPECT_NE(
      text.find(
          " Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = -1.000\n"),
      std::string::npos);
  EXPECT_NE(
      text.find(
          " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.387\n"),
      std::string::npos);
  const std::string json = r.stats_json();
  EXPECT_EQ(json.substr(0, 29), "{\"AP\": 0.50458069872496281, \"");
  EXPECT_NE(json.find("\"ARl\": 0.56429059829059824}"), std::string::npos);
}

TEST(CocoEval, GroundTruthWithIdZeroNeverCountsAsFound) {
  // pycocotools stores a match as the GT's id, and 0 means "unmatched" when it counts true
  // positives: a detection matched to GT id 0 is a false positive.
  const auto gt =
      make_gt({1}, {1}, {gt_box(0, 1, 1, 0, 0, 10, 10), gt_box(5, 1, 1, 50, 50, 10, 10)});
  const auto r = run(gt, {det(1, 1, 0, 0, 10, 10, 0.9), det(1, 1, 50, 50, 10, 10, 0.8)});
  // False positive then true positive: recall 1/2 at precision 1/2.
  double expected = 0;
  for (double thr : eval::coco_recall_thresholds()) expected += thr <= 0.5 ? prec(1, 2) : 0.0;
  EXPECT_NEAR(r.stats[AP], expected / 101, 1e-15);
  EXPECT_EQ(r.stats[AR100], 0.5);
}

// A literal, slow transcription of COCOeval's evaluate / accumulate / summarize, written from
// its documented steps, to check the optimized evaluator on random cases that mix every rule.
struct Reference {
  static constexpr int T = eval::kCocoIouThresholds, R = eval::kCocoRecallThresholds,
                       A = eval::kCocoAreaRanges, M = eval::kCocoMaxDetsCount;
  struct G {
    std::array<double, 4> b;
    double area;
    bool crowd;
    int64_t id;
  };
  struct D {
    std::array<double, 4> b;
    double area, score;
    int64_t id;
  };
  struct ImgEval {
    std::vector<double> scores;
    std::vector<std::array<int64_t, T>> dtm;
    std::vector<std::array<bool, T>> dt_ig;
    std::vector<bool> gt_ig;
  };
  std::vector<double> precision, recall;
  std::array<double, eval::kCocoStats> stats{};

  static double iou(const std::array<double, 4>& d, const G& g) {
    const double w = std::min(d[2] + d[0], g.b[2] + g.b[0]) - std::max(d[0], g.b[0]);
    if (w <= 0) return 0;
    const double h = std::min(d[3] + d[1], g.b[3] + g.b[1]) - std::max(d[1], g.b[1]);
    if (h <= 0) return 0;
    const double i = w * h, da = d[2] * d[3];
    return i / (g.crowd ? da : da + g.b[2] * g.b[3] - i);
  }

  Reference(const coco::CocoDataset& gt, const std::vector<coco::Detection>& dts) {
    std::vector<int64_t> imgs, cats;
    for (const auto& im : gt.images) imgs.push_back(im.id);
    for (const auto& c : gt.categories) cats.push_back(c.id);
    std::sort(imgs.begin(), imgs.end());
    imgs.erase(std::unique(imgs.begin(), imgs.end()), imgs.end());
    std::sort(cats.begin(), cats.end());
    cats.erase(std::unique(cats.begin(), cats.end()), cats.end());
    std::map<std::pair<int64_t, int64_t>, std::vector<G>> gts;
    std::map<std::pair<int64_t, int64_t>, std::vector<D>> dtm;
    for (const auto& a : gt.annotations) {
      gts[{a.image_id, a.category_id}].push_back({a.bbox, a.area, a.iscrowd, a.id});
    }
    for (size_t i = 0; i < dts.size(); ++i) {
      const auto& d = dts[i];
      dtm[{d.image_id, d.category_id}].push_back(
          {d.bbox, d.bbox[2] * d.bbox[3], d.score, static_cast<int64_t>(i) + 1});
    }
    const auto& thr = eval::coco_iou_thresholds();
    const size_t K = cats.size(), I = imgs.size();
    std::vector<std::optional<ImgEval>> evals(K * A * I);
    for (size_t k = 0; k < K; ++k) {
      for (int a = 0; a < A; ++a) {
        const double lo = eval::kCocoAreaRangeBounds[a][0], hi = eval::kCocoAreaRangeBounds[a][1];
        for (size_t i = 0; i < I; ++i) {
          auto g = gts[{imgs[i], cats[k]}];
          auto d = dtm[{imgs[i], cats[k]}];
          if (g.empty() && d.empty()) continue;
          std::vector<int> ig;
          for (const auto& x : g) ig.push_back(x.crowd || x.area < lo || x.area > hi);
          std::vector<size_t> gi(g.size());
          std::iota(gi.begin(), gi.end(), 0);
          std::stable_sort(gi.begin(), gi.end(), [&](size_t x, size_t y) { return ig[x] < ig[y]; });
          std::vector<G> gs;
          std::vector<bool> gig;
          for (size_t x : gi) gs.push_back(g[x]), gig.push_back(ig[x]);
          std::stable_sort(d.begin(), d.end(),
                           [](const D& x, const D& y) { return -x.score < -y.score; });
          if (d.size() > 100) d.resize(100);
          ImgEval e;
          e.gt_ig = gig;
          e.dtm.assign(d.size(), {});
          e.dt_ig.assign(d.size(), {});
          std::vector<std::array<int64_t, T>> gtm(gs.size(), std::array<int64_t, T>{});
          for (int t = 0; t < T; ++t) {
            for (size_t di = 0; di < d.size(); ++di) {
              double best = std::min(thr[t], 1 - 1e-10);
              int m = -1;
              for (size_t gj = 0; gj < gs.size(); ++gj) {
                if (gtm[gj][t] > 0 && !gs[gj].crowd) continue;
                if (m > -1 && !gig[m] && gig[gj]) break;
                const double v = iou(d[di].b, gs[gj]);
                if (v < best) continue;
                best = v;
                m = static_cast<int>(gj);
              }
              if (m == -1) continue;
              e.dt_ig[di][t] = gig[m];
              e.dtm[di][t] = gs[m].id;
              gtm[m][t] = d[di].id;
            }
          }
          for (size_t di = 0; di < d.size(); ++di) {
            e.scores.push_back(d[di].score);
            const bool out = d[di].area < lo || d[di].area > hi;
            for (int t = 0; t < T; ++t)
              e.dt_ig[di][t] = e.dt_ig[di][t] || (e.dtm[di][t] == 0 && out);
          }
          evals[(k * A + a) * I + i] = e;
        }
      }
    }
    const auto& rec = eval::coco_recall_thresholds();
    precision.assign(T * R * K * A * M, -1);
    recall.assign(T * K * A * M, -1);
    for (size_t k = 0; k < K; ++k) {
      for (int a = 0; a < A; ++a) {
        for (int m = 0; m < M; ++m) {
          const size_t max_det = eval::kCocoMaxDets[m];
          std::vector<double> sc;
          std::vector<std::array<int64_t, T>> mt;
          std::vector<std::array<bool, T>> ig;
          int64_t npig = 0;
          bool any = false;
          for (size_t i = 0; i < I; ++i) {
            const auto& e = evals[(k * A + a) * I + i];
            if (!e) continue;
            any = true;
            for (size_t x = 0; x < e->scores.size() && x < max_det; ++x) {
              sc.push_back(e->scores[x]);
              mt.push_back(e->dtm[x]);
              ig.push_back(e->dt_ig[x]);
            }
            for (bool b : e->gt_ig) npig += !b;
          }
          if (!any || npig == 0) continue;
          std::vector<size_t> order(sc.size());
          std::iota(order.begin(), order.end(), 0);
          std::stable_sort(order.begin(), order.end(),
                           [&](size_t x, size_t y) { return -sc[x] < -sc[y]; });
          for (int t = 0; t < T; ++t) {
            std::vector<double> rc, pr;
            double tp = 0, fp = 0;
            for (size_t x : order) {
              tp += mt[x][t] != 0 && !ig[x][t];
              fp += mt[x][t] == 0 && !ig[x][t];
              rc.push_back(tp / static_cast<double>(npig));
              pr.push_back(tp / (fp + tp + kEps));
            }
            const size_t nd = rc.size();
            recall[((t * K + k) * A + a) * M + m] = nd ? rc.back() : 0;
            for (size_t x = nd; x-- > 1;) pr[x - 1] = std::max(pr[x - 1], pr[x]);
            for (int r = 0; r < R; ++r) {
              const size_t pi = std::lower_bound(rc.begin(), rc.end(), rec[r]) - rc.begin();
              precision[(((t * R + r) * K + k) * A + a) * M + m] = pi < nd ? pr[pi] : 0;
            }
          }
        }
      }
    }
    const auto mean = [](const std::vector<double>& v) {
      double sum = 0;
      int n = 0;
      for (double x : v) {
        if (x > -1) sum += x, ++n;
      }
      return n ? sum / n : -1.0;
    };
    const auto ap = [&](int t_only, int a) {
      std::vector<double> v;
      for (int t = 0; t < T; ++t) {
        if (t_only >= 0 && t != t_only) continue;
        for (int r = 0; r < R; ++r) {
          for (size_t k = 0; k < K; ++k)
            v.push_back(precision[(((t * R + r) * K + k) * A + a) * M + 2]);
        }
      }
      return mean(v);
    };
    const auto ar = [&](int a, int m) {
      std::vector<double> v;
      for (int t = 0; t < T; ++t) {
        for (size_t k = 0; k < K; ++k) v.push_back(recall[((t * K + k) * A + a) * M + m]);
      }
      return mean(v);
    };
    stats = {ap(-1, 0), ap(0, 0), ap(5, 0), ap(-1, 1), ap(-1, 2), ap(-1, 3),
             ar(0, 0),  ar(0, 1), ar(0, 2), ar(1, 2),  ar(2, 2),  ar(3, 2)};
  }
};

// Random scenes that hit every rule: crowd regions, tied scores and tied IoUs, cells with more
// than 100 detections, images and categories with no GT or no detections, GT whose `area`
// differs from its box, areas on the range bounds, and a GT with id 0.
TEST(CocoEval, AgreesWithALiteralTranscriptionOnRandomScenes) {
  uint64_t state = 2024;
  const auto uniform = [&state] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(state >> 11) * 0x1.0p-53;
  };
  for (int scene = 0; scene < 12; ++scene) {
    std::vector<int64_t> images;
    const int num_images = 3 + scene;
    for (int i = 0; i < num_images; ++i) images.push_back(100 - 7 * i);
    const std::vector<int64_t> cats = {3, 1, 7, 4};  // 4 never has GT, 7 rarely
    std::vector<coco::CocoAnnotation> anns;
    std::vector<coco::Detection> dts;
    for (int64_t im : images) {
      if (uniform() < 0.2) continue;  // an image without GT
      const int n = 1 + static_cast<int>(uniform() * 6);
      for (int j = 0; j < n; ++j) {
        const int64_t cat = cats[static_cast<size_t>(uniform() * (uniform() < 0.9 ? 2 : 3))];
        const double side = uniform() < 0.15 ? 32 : 4 + uniform() * 150;
        const double x = std::round(uniform() * 400), y = std::round(uniform() * 300);
        const double w = side, h = uniform() < 0.5 ? side : std::round(side * (0.5 + uniform()));
        const double area = uniform() < 0.2 ? w * h * (0.3 + uniform()) : w * h;
        anns.push_back(
            gt_box(static_cast<int64_t>(anns.size()), im, cat, x, y, w, h, uniform() < 0.12, area));
        if (uniform() < 0.2) {  // a duplicate box: IoU ties between GT
          anns.push_back(gt_box(static_cast<int64_t>(anns.size()) + 1000, im, cat, x, y, w, h));
        }
        const int copies = static_cast<int>(uniform() * 5);
        for (int c = 0; c < copies; ++c) {
          const double s = 0.25 * uniform();
          dts.push_back(det(im, uniform() < 0.9 ? cat : cats[3],
                            x + std::round((uniform() - 0.5) * w * s),
                            y + std::round((uniform() - 0.5) * h * s),
                            std::round(w * (1 + s - 0.1)), h, std::round(uniform() * 10) / 10));
        }
      }
      const int extra = uniform() < 0.25 ? 105 + static_cast<int>(uniform() * 30)
                                         : static_cast<int>(uniform() * 8);
      for (int j = 0; j < extra; ++j) {
        dts.push_back(det(im, cats[0], std::round(uniform() * 500), std::round(uniform() * 400),
                          2 + std::round(uniform() * 120), 2 + std::round(uniform() * 120),
                          std::round(uniform() * 20) / 20));
      }
    }
    if (dts.empty()) continue;
    const auto gt = make_gt(images, cats, anns);
    const Reference ref(gt, dts);
    const auto got = run(gt, dts, 2);
    ASSERT_EQ(got.precision.size(), ref.precision.size());
    EXPECT_EQ(got.precision, ref.precision) << "scene " << scene;
    EXPECT_EQ(got.recall, ref.recall) << "scene " << scene;
    for (int i = 0; i < eval::kCocoStats; ++i) {
      EXPECT_NEAR(got.stats[i], ref.stats[i], 1e-12)
          << "scene " << scene << " " << eval::kCocoStatNames[i];
    }
  }
}

// Bad input: a clear InputError naming the detection.
TEST(CocoEval, RejectsDetectionsItCannotEvaluate) {
  const auto gt = make_gt({1}, {1}, {gt_box(1, 1, 1, 0, 0, 10, 10)});
  const auto message = [&](const std::vector<coco::Detection>& dts) {
    try {
      eval::CocoEvalOptions options;
      options.detections_source = "dets.json";
      eval::evaluate_coco(gt, dts, options);
    } catch (const util::InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const auto ok = det(1, 1, 0, 0, 10, 10, 0.5);
  EXPECT_NE(message({}).find("dets.json: no detections"), std::string::npos);
  auto m = message({ok, det(99, 1, 0, 0, 10, 10, 0.5)});
  EXPECT_NE(m.find("detection 1"), std::string::npos) << m;
  EXPECT_NE(m.find("image_id 99 is not in the ground truth"), std::string::npos) << m;
  m = message({det(1, 7, 0, 0, 10, 10, 0.5)});
  EXPECT_NE(m.find("category_id 7 is not in the ground truth"), std::string::npos) << m;
  EXPECT_NE(message({det(1, 1, 0, 0, -1, 10, 0.5)}).find("negative or not finite"),
            std::string::npos);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_NE(message({det(1, 1, 0, 0, 10, nan, 0.5)}).find("bbox size"), std::string::npos);
  EXPECT_NE(message({det(1, 1, 0, 0, 10, 10, nan)}).find("score"), std::string::npos);
  EXPECT_NE(message({det(1, 1, 0, 0, 10, 10, -0.1)}).find("score"), std::string::npos);
  EXPECT_NE(message({det(1, 1, nan, 0, 10, 10, 0.5)}).find("position"), std::string::npos);
}

}  // namespace
}  // namespace aligndetr
