#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <regex>
#include <string>
#include <vector>

#include "aligndetr/engine/criterion_case.h"
#include "aligndetr/loss/classification.h"
#include "aligndetr/loss/criterion.h"
#include "aligndetr/loss/ia_bce.h"
#include "aligndetr/loss/prime_weights.h"
#include "aligndetr/loss/regression.h"
#include "aligndetr/matching/many_to_one.h"
#include "aligndetr/matching/matcher.h"
#include "aligndetr/util/error.h"
#include "test_support.h"

namespace aligndetr {
namespace {

using boxes::Target;
using loss::CriterionOptions;
using matching::ImageMatch;
using model::OutputSet;

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

torch::Tensor longs(std::vector<int64_t> v) {
  return torch::tensor(v, torch::kLong);
}

// The worked example of the reference notes (section 1): 3 queries, 2 classes, one GT of class 1
// at (0.5, 0.5, 0.4, 0.4) matched to queries 0 and 2 with k = 2, tau = 1.5. Query 0 predicts the
// GT box exactly with logit 2 (s = 0.8808); query 2 is shifted by 0.05 in x with logit 0
// (s = 0.5, IoU = 0.14 / 0.18). The four negative entries have logits 0.5, -1, -2, -3.
struct WorkedExample {
  model::OutputSet out{
      torch::tensor({-1.0, 2.0, 0.5, -3.0, -2.0, 0.0}, kF64).view({1, 3, 2}),
      torch::tensor({0.5, 0.5, 0.4, 0.4, 0.2, 0.2, 0.1, 0.1, 0.55, 0.5, 0.4, 0.4}, kF64)
          .view({1, 3, 4})};
  std::vector<boxes::Target> targets{
      {longs({1}), torch::tensor({0.5, 0.5, 0.4, 0.4}, kF64).view({1, 4})}};
  std::vector<ImageMatch> matches{{longs({0, 2}), longs({0, 0}), 2}};
};

TEST(Criterion, WorkedExampleQualityRanksAndWeights) {
  const WorkedExample ex;
  const auto s = torch::tensor({2.0, 0.0}, kF64).sigmoid();
  const auto iou = torch::tensor({0.16 / (0.16 + 1e-6), 0.14 / (0.18 + 1e-6)}, kF64);
  const auto t = loss::quality(s, iou, 0.25);
  EXPECT_NEAR(t[0].item<double>(), 0.968762, 1e-6);
  EXPECT_NEAR(t[1].item<double>(), 0.696438, 1e-6);
  const auto group = longs({0, 0});
  EXPECT_TRUE(torch::equal(loss::prime_ranks(t, group), longs({0, 1})));
  const auto w = loss::prime_weights(t, group, 1.5);
  EXPECT_NEAR(w[0].item<double>(), 1.0, 1e-12);
  EXPECT_NEAR(w[1].item<double>(), 0.513417, 1e-6);
}

TEST(Criterion, WorkedExampleLossValues) {
  const WorkedExample ex;
  const CriterionOptions options;
  const auto l = loss::set_losses(ex.out, ex.targets, ex.matches, /*ranks=*/true, options);
  EXPECT_NEAR(l.cls.item<double>(), 1.284534, 1e-6);
  EXPECT_NEAR(l.bbox.item<double>(), 0.025671, 1e-6);
  EXPECT_NEAR(l.giou.item<double>(), 0.114101, 1e-6);
  const double total = l.cls.item<double>() + 5 * l.bbox.item<double>() + 2 * l.giou.item<double>();
  EXPECT_NEAR(total, 1.641091, 1e-6);
}

TEST(Criterion, KCapPerImage) {
  using matching::effective_k;
  EXPECT_EQ(effective_k(900, 20, 3), 3);
  EXPECT_EQ(effective_k(900, 200, 3), 2);
  EXPECT_EQ(effective_k(900, 300, 3), 1);
  EXPECT_EQ(effective_k(900, 500, 3), 1);  // the released code would use k = 0 here
  EXPECT_EQ(effective_k(3, 1, 2), 1);
  EXPECT_THROW(effective_k(900, 20, 0), std::invalid_argument);

  // Image 0 (4 GT, 10 queries) is capped to 1 copy; image 1 (1 GT) keeps 3: no leak across images.
  torch::manual_seed(0);
  const auto logits = torch::randn({2, 10, 3});
  const auto boxes = torch::rand({2, 10, 4}) * 0.5 + 0.25;
  std::vector<boxes::Target> targets{{longs({0, 1, 2, 0}), torch::rand({4, 4}) * 0.5 + 0.25},
                                     {longs({2}), torch::rand({1, 4}) * 0.5 + 0.25}};
  const auto m = matching::match(logits, boxes, targets, 3, {});
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].k, 1);
  EXPECT_TRUE(torch::equal(m[0].gt, longs({0, 1, 2, 3})));
  EXPECT_EQ(m[1].k, 3);
  EXPECT_TRUE(torch::equal(m[1].gt, longs({0, 0, 0})));
  // Within a GT's group, distinct queries in increasing order.
  const auto q = m[1].query;
  EXPECT_LT(q[0].item<int64_t>(), q[1].item<int64_t>());
  EXPECT_LT(q[1].item<int64_t>(), q[2].item<int64_t>());
}

TEST(Criterion, ManyToOneIsOptimalOverGroupedAssignments) {
  // 12 queries, 2 GT, k = 3 copies (the cap floor(12 / 4) = 3 allows them): every GT gets 3
  // distinct queries, and the cost equals the best such choice, found by enumerating every
  // labelling of the queries as GT 0, GT 1 or unmatched.
  torch::manual_seed(3);
  const auto cost = torch::rand({12, 2}, kF64).contiguous();
  const auto pairs = matching::match_with_copies(cost.data_ptr<double>(), 12, 2, 3);
  ASSERT_EQ(pairs.k, 3);
  EXPECT_EQ(pairs.gt, (std::vector<int64_t>{0, 0, 0, 1, 1, 1}));
  const auto c = cost.accessor<double, 2>();
  double got = 0;
  for (size_t i = 0; i < pairs.query.size(); ++i) got += c[pairs.query[i]][pairs.gt[i]];
  double best = 1e9;
  for (int code = 0; code < 531441; ++code) {  // 3^12
    int counts[3] = {0, 0, 0};
    double total = 0;
    for (int q = 0, rest = code; q < 12; ++q, rest /= 3) {
      const int label = rest % 3;
      ++counts[label];
      if (label < 2) total += c[q][label];
    }
    if (counts[0] == 3 && counts[1] == 3) best = std::min(best, total);
  }
  EXPECT_NEAR(got, best, 1e-12);
}

TEST(Criterion, MatchingCostByHand) {
  // One query with logit 0 (p = 0.5) on one GT box it predicts exactly.
  const auto logits = torch::zeros({1, 1}, kF64);
  const auto box = torch::tensor({0.5, 0.5, 0.2, 0.2}, kF64).view({1, 4});
  const auto c = matching::matching_cost(logits, box, {longs({0}), box}, {});
  const double focal = 0.25 * 0.25 * -std::log(0.5 + 1e-8) - 0.75 * 0.25 * -std::log(0.5 + 1e-8);
  const double giou = 0.04 / (0.04 + 1e-6);  // no enclosing-area penalty
  EXPECT_NEAR(c.item<double>(), 2 * focal - 2 * giou, 1e-9);
}

TEST(Criterion, RanksWithEqualQualities) {
  // Group 0 has qualities 0.5, 0.5, 0.7: 0.7 ranks first, then the tied entries in input (query)
  // order. Group 1 is independent.
  const auto t = torch::tensor({0.5, 0.5, 0.7, 0.5, 0.9}, kF64);
  const auto g = longs({0, 0, 0, 1, 1});
  EXPECT_TRUE(torch::equal(loss::prime_ranks(t, g), longs({1, 2, 0, 1, 0})));
  const auto w = loss::prime_weights(t, g, 1.5);
  EXPECT_NEAR(w[1].item<double>(), std::exp(-2 / 1.5), 1e-12);
}

TEST(Criterion, ImagesWithoutGroundTruth) {
  torch::manual_seed(1);
  const auto logits = torch::randn({2, 8, 3}, kF64);
  const auto boxes = torch::rand({2, 8, 4}, kF64) * 0.5 + 0.25;
  const boxes::Target empty{torch::empty({0}, torch::kLong), torch::empty({0, 4}, kF64)};
  const double negatives = (logits.sigmoid().pow(2) * torch::softplus(logits)).sum().item<double>();

  // No GT anywhere: num_boxes clamps to 1, only the negative term remains.
  model::DetectorOutputs inputs;
  inputs.decoder = {{logits, boxes}, {logits, boxes}};
  auto terms = loss::compute_criterion(inputs, {empty, empty}, CriterionOptions{});
  EXPECT_EQ(terms.num_boxes, 1.0);
  EXPECT_NEAR(terms.unweighted.at("loss_class").item<double>(), negatives, 1e-12);
  EXPECT_EQ(terms.unweighted.at("loss_bbox").item<double>(), 0.0);
  EXPECT_EQ(terms.unweighted.at("loss_giou_0").item<double>(), 0.0);

  // One image with GT, one without: finite, and the empty image adds only negatives.
  const boxes::Target one{longs({1}), torch::tensor({0.5, 0.5, 0.3, 0.3}, kF64).view({1, 4})};
  terms = loss::compute_criterion(inputs, {one, empty}, CriterionOptions{});
  EXPECT_TRUE(std::isfinite(terms.total.item<double>()));
  EXPECT_GT(terms.unweighted.at("loss_bbox").item<double>(), 0.0);
}

TEST(Criterion, TermNamesWeightsAndNormalization) {
  torch::manual_seed(2);
  const auto set = [](int64_t q) {
    return model::OutputSet{torch::randn({2, q, 4}, kF64).requires_grad_(),
                            (torch::rand({2, q, 4}, kF64) * 0.4 + 0.3).requires_grad_()};
  };
  const std::vector<boxes::Target> targets{
      {longs({0, 3}), torch::tensor({0.4, 0.4, 0.2, 0.3, 0.6, 0.6, 0.3, 0.2}, kF64).view({2, 4})},
      {longs({2}), torch::tensor({0.5, 0.5, 0.4, 0.4}, kF64).view({1, 4})}};
  model::DetectorOutputs inputs;
  inputs.decoder = {set(20), set(20), set(20)};
  inputs.encoder = set(20);
  model::DenoisingOutputs dn;
  dn.layers = {set(6), set(6)};
  // Two groups, 2 * max_gt = 4 slots each: GT j of group g sits at slot 4 g + j.
  dn.pairs = {{longs({0, 1, 4, 5}), longs({0, 1, 0, 1}), 1}, {longs({0, 4}), longs({0, 0}), 1}};
  dn.groups = 2;
  inputs.denoising = dn;
  CriterionOptions options;
  options.reduce_num_boxes = [](double local) { return local + 1; };  // as if another rank had 1
  const auto terms = loss::compute_criterion(inputs, targets, options);
  EXPECT_EQ(terms.num_boxes, 4.0);

  std::vector<std::string> names;
  for (const auto& kv : terms.unweighted) names.push_back(kv.first);
  std::vector<std::string> expected;
  for (const char* base : {"loss_bbox", "loss_class", "loss_giou"}) {
    for (const char* suffix : {"", "_0", "_1", "_dn", "_dn_0", "_enc"}) {
      expected.push_back(std::string(base) + suffix);
    }
  }
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names, expected);

  double sum = 0;
  for (const auto& [name, value] : terms.weighted) {
    const double w = name.rfind("loss_bbox", 0) == 0 ? 5 : name.rfind("loss_giou", 0) == 0 ? 2 : 1;
    EXPECT_NEAR(value.item<double>(), w * terms.unweighted.at(name).item<double>(), 1e-12) << name;
    sum += value.item<double>();
  }
  EXPECT_NEAR(terms.total.item<double>(), sum, 1e-9);

  // DN: fixed pairs, no ranks, divided by num_boxes * groups.
  const auto l = loss::set_losses(dn.layers[1], targets, dn.pairs, false, options);
  EXPECT_NEAR(terms.unweighted.at("loss_class_dn").item<double>(), l.cls.item<double>() / 8, 1e-12);
  EXPECT_NEAR(terms.unweighted.at("loss_giou_dn").item<double>(), l.giou.item<double>() / 8, 1e-12);

  terms.total.backward();
  EXPECT_TRUE(inputs.decoder[0].logits.grad().defined());
  EXPECT_TRUE(dn.layers[0].boxes.grad().defined());
}

TEST(Criterion, DefaultAndReleasedK) {
  EXPECT_EQ(CriterionOptions::paper().layer_k(6), (std::vector<int64_t>{3, 3, 3, 3, 3, 1}));
  EXPECT_EQ(CriterionOptions::released().layer_k(6), (std::vector<int64_t>{2, 2, 2, 2, 2, 1}));
  CriterionOptions o;
  o.decoder_k = {2, 1};
  EXPECT_EQ(o.layer_k(2), (std::vector<int64_t>{2, 1}));
  EXPECT_THROW(o.layer_k(3), util::InputError);
}

TEST(Criterion, NonFiniteInputsNameTensorAndLayer) {
  const WorkedExample ex;
  model::DetectorOutputs inputs;
  auto bad = ex.out.logits.clone();
  bad[0][1][0] = std::nan("");
  inputs.decoder = {ex.out, {bad, ex.out.boxes}};
  try {
    loss::compute_criterion(inputs, ex.targets, CriterionOptions{});
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("logits of decoder layer 1"), std::string::npos)
        << e.what();
  }
  auto bad_boxes = ex.out.boxes.clone();
  bad_boxes[0][0][2] = INFINITY;
  inputs.decoder = {ex.out};
  inputs.encoder = model::OutputSet{ex.out.logits, bad_boxes};
  try {
    loss::compute_criterion(inputs, ex.targets, CriterionOptions{});
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("boxes of encoder output"), std::string::npos) << e.what();
  }
}

TEST(Criterion, NonFiniteOutputsAreADivergenceNotAnInputError) {
  const WorkedExample ex;
  model::DetectorOutputs inputs;
  inputs.decoder = {ex.out};
  inputs.decoder[0].boxes = ex.out.boxes.clone();
  inputs.decoder[0].boxes[0][0][0] = std::numeric_limits<float>::quiet_NaN();
  try {
    loss::compute_criterion(inputs, ex.targets, CriterionOptions{});
    FAIL();
  } catch (const loss::NonFiniteOutputs& e) {
    EXPECT_NE(std::string(e.what()).find("boxes of decoder layer 0"), std::string::npos)
        << e.what();
  }
}

TEST(Criterion, RejectsBadTargets) {
  const WorkedExample ex;
  model::DetectorOutputs inputs;
  inputs.decoder = {ex.out};
  const auto boxes = ex.targets[0].boxes;
  EXPECT_THROW(loss::compute_criterion(inputs, {{longs({2}), boxes}}, CriterionOptions{}),
               util::InputError);  // 2 classes only
  EXPECT_THROW(loss::compute_criterion(inputs, {{longs({1, 0}), boxes}}, CriterionOptions{}),
               util::InputError);  // two labels, one box
  EXPECT_THROW(loss::compute_criterion(inputs, {ex.targets[0], ex.targets[0]}, CriterionOptions{}),
               util::InputError);  // two targets for one image
}

TEST(Criterion, ClassLossNames) {
  for (const char* name : {"ia_bce", "focal", "varifocal", "quality_focal", "table_b_focal",
                           "table_b_one", "table_b_t", "table_b_square", "table_b_square_neg"}) {
    EXPECT_EQ(loss::to_string(loss::parse_class_loss(name)), name);
  }
  EXPECT_THROW(loss::parse_class_loss("bce"), util::InputError);
}

TEST(Criterion, FocalAndTableBByHand) {
  // Two entries: entry 0 positive with logit 1, entry 1 negative with logit -1; target t = 0.6.
  const auto x = torch::tensor({1.0, -1.0}, kF64);
  const auto idx = longs({0});
  const auto t = torch::tensor({0.6}, kF64);
  const double s = 1 / (1 + std::exp(-1.0)), p = 1 - s;  // p = sigmoid(-1)
  const double neg = p * p * -std::log(1 - p);
  EXPECT_NEAR(loss::sigmoid_focal_loss(x, idx, 0.25, 2).item<double>(),
              0.25 * (1 - s) * (1 - s) * -std::log(s) + 0.75 * neg, 1e-12);
  EXPECT_NEAR(loss::ia_bce_loss(x, idx, t, 2).item<double>(),
              0.6 * -std::log(s) + 0.4 * -std::log(1 - s) + neg, 1e-12);
  const auto tb = [&](loss::ClassLoss k) {
    return loss::table_b_loss(k, x, idx, t, 2).item<double>();
  };
  EXPECT_NEAR(tb(loss::ClassLoss::kTableBFocal), (1 - s) * (1 - s) * -std::log(s) + neg, 1e-12);
  EXPECT_NEAR(tb(loss::ClassLoss::kTableBOne), -std::log(s) + neg, 1e-12);
  EXPECT_NEAR(tb(loss::ClassLoss::kTableBT), 0.6 * -std::log(s) + neg, 1e-12);
  const double d2 = (0.6 - s) * (0.6 - s);
  EXPECT_NEAR(tb(loss::ClassLoss::kTableBSquare), d2 * -std::log(s) + d2 * -std::log(1 - s) + neg,
              1e-12);
  EXPECT_NEAR(tb(loss::ClassLoss::kTableBSquareNeg),
              d2 * -std::log(s) + 0.4 * s * s * -std::log(1 - s) + neg, 1e-12);
  EXPECT_NEAR(loss::varifocal_loss(x, idx, t, 0.75, 2).item<double>(),
              0.6 * (0.6 * -std::log(s) + 0.4 * -std::log(1 - s)) + 0.75 * neg, 1e-12);
  EXPECT_NEAR(loss::quality_focal_loss(x, idx, t, 2).item<double>(),
              (0.6 - s) * (0.6 - s) * (0.6 * -std::log(s) + 0.4 * -std::log(1 - s)) + neg, 1e-12);
}

TEST(Criterion, IaBceStableForSaturatedLogits) {
  const auto x = torch::tensor({60.0, -60.0, 80.0}, torch::kFloat32).requires_grad_();
  const auto l = loss::ia_bce_loss(x, longs({1}), torch::tensor({0.5}), 2);
  l.backward();
  EXPECT_TRUE(std::isfinite(l.item<double>()));
  EXPECT_TRUE(torch::isfinite(x.grad()).all().item<bool>());
}

// Central differences of a scalar function of x against autograd, in double precision.
void expect_gradient(const std::function<torch::Tensor(const torch::Tensor&)>& f,
                     const torch::Tensor& x0, const std::string& what) {
  const auto x = x0.clone().requires_grad_();
  const auto grad = torch::autograd::grad({f(x)}, {x})[0];
  const double h = 1e-6;
  auto flat = x0.clone().reshape(-1);
  for (int64_t i = 0; i < flat.numel(); ++i) {
    auto plus = flat.clone(), minus = flat.clone();
    plus[i] += h;
    minus[i] -= h;
    const double numeric =
        (f(plus.view_as(x0)).item<double>() - f(minus.view_as(x0)).item<double>()) / (2 * h);
    const double analytic = grad.reshape(-1)[i].item<double>();
    EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(numeric)))
        << what << " entry " << i;
  }
}

TEST(Criterion, GradientsMatchFiniteDifferences) {
  torch::manual_seed(4);
  const auto logits = torch::randn({2, 5, 3}, kF64) * 2;
  const auto idx = longs({1, 8, 14, 20});
  const auto t = torch::tensor({0.9, 0.3, 0.6, 0.05}, kF64);
  using loss::ClassLoss;
  for (const auto kind :
       {ClassLoss::kIaBce, ClassLoss::kTableBFocal, ClassLoss::kTableBOne, ClassLoss::kTableBT,
        ClassLoss::kTableBSquare, ClassLoss::kTableBSquareNeg}) {
    expect_gradient([&](const torch::Tensor& x) { return loss::table_b_loss(kind, x, idx, t, 2); },
                    logits, loss::to_string(kind));
  }
  expect_gradient([&](const torch::Tensor& x) { return loss::sigmoid_focal_loss(x, idx, 0.25, 2); },
                  logits, "focal");
  expect_gradient([&](const torch::Tensor& x) { return loss::varifocal_loss(x, idx, t, 0.75, 2); },
                  logits, "varifocal");
  expect_gradient([&](const torch::Tensor& x) { return loss::quality_focal_loss(x, idx, t, 2); },
                  logits, "quality_focal");

  // GIoU and L1 on overlapping, disjoint and nested boxes (no ties in min/max, so differentiable).
  const auto pred =
      torch::tensor({0.50, 0.50, 0.30, 0.20, 0.20, 0.25, 0.10, 0.12, 0.61, 0.58, 0.10, 0.14}, kF64)
          .view({3, 4});
  const auto gt =
      torch::tensor({0.55, 0.47, 0.25, 0.33, 0.70, 0.70, 0.20, 0.18, 0.60, 0.60, 0.30, 0.35}, kF64)
          .view({3, 4});
  const auto w = torch::tensor({1.0, 0.5, 0.8}, kF64);
  expect_gradient([&](const torch::Tensor& b) { return loss::giou_loss(b, gt, w); }, pred, "giou");
  expect_gradient([&](const torch::Tensor& b) { return loss::l1_loss(b, gt, w); }, pred, "l1");
}

// Parses {"layers":[{"loss_class":x,"loss_bbox":x,"loss_giou":x},..]} into one map per layer.
std::vector<std::map<std::string, double>> parse_layers(const std::string& json) {
  std::vector<std::map<std::string, double>> layers;
  const std::regex object(R"(\{([^{}]*)\})");
  const std::regex field(R"re("(\w+)":([-+0-9.eE]+))re");
  for (std::sregex_iterator it(json.begin(), json.end(), object), end; it != end; ++it) {
    const std::string body = (*it)[1];
    std::map<std::string, double> terms;
    for (std::sregex_iterator f(body.begin(), body.end(), field); f != end; ++f) {
      terms[(*f)[1]] = std::stod((*f)[2]);
    }
    layers.push_back(terms);
  }
  return layers;
}

TEST(Criterion, GoldenCaseFromCli) {
  REQUIRE_SHARED_DATA("the golden criterion case of the reference implementation");
  const auto path = testing::shared_data() / "criterion-cases" / "example_small.json";
  const auto result = testing::run_cli("debug criterion --case " + path.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto got = parse_layers(result.stdout_only);
  const engine::CriterionCase c = engine::read_criterion_case(path.string());
  ASSERT_EQ(c.expected.size(), 2u);
  ASSERT_EQ(got.size(), c.expected.size()) << result.stdout_only;
  for (size_t l = 0; l < got.size(); ++l) {
    for (const char* name : {"loss_class", "loss_bbox", "loss_giou"}) {
      const double want = c.expected[l].at(name);
      ASSERT_EQ(got[l].count(name), 1u) << result.stdout_only;
      EXPECT_NEAR(got[l].at(name), want, 1e-4 * std::abs(want)) << "layer " << l << " " << name;
    }
  }
}

// Cases beside the tests: an image without GT next to one whose k is capped and one whose k is
// not (no leak of the cap across images), and more GT than queries.
TEST(Criterion, ProjectCasesAgreeWithIndependentImplementation) {
  const auto dir =
      std::filesystem::path(ALIGNDETR_SOURCE_DIR) / "tests" / "data" / "criterion-cases";
  for (const char* name : {"cap_and_empty.json", "more_gt_than_queries.json"}) {
    const engine::CriterionCase c = engine::read_criterion_case((dir / name).string());
    const auto terms = loss::compute_criterion(c.inputs, c.targets, c.options);
    ASSERT_EQ(c.expected.size(), c.inputs.decoder.size()) << name;
    for (size_t l = 0; l < c.expected.size(); ++l) {
      std::string suffix;  // appended: GCC 12 warns falsely on "_" + std::to_string(l) in C++20
      if (l + 1 != c.expected.size()) (suffix = "_") += std::to_string(l);
      for (const auto& [term, want] : c.expected[l]) {
        EXPECT_NEAR(terms.unweighted.at(term + suffix).item<double>(), want, 1e-4 * std::abs(want))
            << name << " layer " << l << " " << term;
      }
    }
  }
}

TEST(Criterion, CaseReaderRejectsBadFiles) {
  testing::TempDir dir;
  testing::write_text(dir / "bad.json", R"({"num_classes": 3, "alpha": 0.25})");
  const auto result = testing::run_cli("debug criterion --case " + (dir / "bad.json").string());
  EXPECT_EQ(result.exit_code, util::kExitInput) << result.output;
  EXPECT_NE(result.output.find("bad.json"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace aligndetr
