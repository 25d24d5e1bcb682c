#include <gtest/gtest.h>
#include <torch/torch.h>

#include "aligndetr/boxes/boxes.h"

namespace aligndetr {
namespace {

using namespace boxes;

torch::Tensor T(std::vector<std::vector<double>> rows) {
  std::vector<double> flat;
  for (auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  return torch::tensor(flat, torch::kFloat64).view({static_cast<int64_t>(rows.size()), -1});
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, double tol = 1e-9) {
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_TRUE(torch::allclose(a, b, 0, tol)) << a << "\nvs\n" << b;
}

TEST(Boxes, FormatConversionsByHand) {
  const auto cxcywh = T({{0.5, 0.5, 0.4, 0.2}, {10, 20, 4, 6}});
  const auto xyxy = T({{0.3, 0.4, 0.7, 0.6}, {8, 17, 12, 23}});
  expect_close(cxcywh_to_xyxy(cxcywh), xyxy);
  expect_close(xyxy_to_cxcywh(xyxy), cxcywh);
  const auto xywh = T({{8, 17, 4, 6}});
  expect_close(xywh_to_xyxy(xywh), T({{8, 17, 12, 23}}));
  expect_close(xyxy_to_xywh(T({{8, 17, 12, 23}})), xywh);
  // Batched leading dimensions are kept.
  EXPECT_EQ(cxcywh_to_xyxy(torch::rand({2, 3, 4})).sizes(), torch::IntArrayRef({2, 3, 4}));
}

TEST(Boxes, AreaClampsNegativeExtents) {
  expect_close(area(T({{0, 0, 2, 3}, {1, 1, 1, 5}, {2, 2, 1, 1}})),
               torch::tensor({6.0, 0.0, 0.0}, torch::kFloat64));
}

TEST(Boxes, PairwiseIouByHand) {
  const auto a = T({{0, 0, 2, 2}, {0, 0, 1, 1}});
  const auto b = T({{1, 1, 3, 3}, {0, 0, 2, 2}, {5, 5, 6, 6}});
  // a0 vs b0: inter 1, union 4+4-1=7.  a0 vs b1: identical.  a1 vs b1: inter 1, union 4.
  const auto expected =
      T({{1.0 / (7 + 1e-6), 4.0 / (4 + 1e-6), 0.0}, {0.0, 1.0 / (4 + 1e-6), 0.0}});
  expect_close(pairwise_iou(a, b), expected, 1e-12);
}

TEST(Boxes, PairwiseGiouByHand) {
  const auto a = T({{0, 0, 2, 2}});
  const auto b = T({{1, 1, 3, 3}, {3, 0, 4, 1}});
  // b0: iou 1/7, enclosing 9, union 7 -> 1/7 - 2/9.  b1: disjoint, union 5, enclosing 4*2=8.
  const double g0 = 1.0 / (7 + 1e-6) - (9.0 - 7.0) / (9 + 1e-6);
  const double g1 = 0.0 - (8.0 - 5.0) / (8 + 1e-6);
  expect_close(pairwise_giou(a, b), T({{g0, g1}}), 1e-12);
}

TEST(Boxes, ZeroAreaBoxesGiveFiniteValues) {
  const auto a = T({{1, 1, 1, 1}, {0, 0, 0, 0}});
  const auto b = T({{1, 1, 1, 1}, {2, 2, 3, 3}});
  const auto iou = aligned_iou(a, b);
  const auto giou = aligned_giou(a, b);
  EXPECT_TRUE(torch::isfinite(iou).all().item<bool>());
  EXPECT_TRUE(torch::isfinite(giou).all().item<bool>());
  EXPECT_DOUBLE_EQ(iou[0].item<double>(), 0.0);
  // Point box at origin vs [2,3]^2: union 1, enclosing 9 -> giou = -(9-1)/9.
  EXPECT_NEAR(giou[1].item<double>(), -(9.0 - 1.0) / (9 + 1e-6), 1e-12);
}

TEST(Boxes, AlignedEqualsPairwiseDiagonal) {
  torch::manual_seed(0);
  const auto a = cxcywh_to_xyxy(torch::rand({7, 4}, torch::kFloat64));
  const auto b = cxcywh_to_xyxy(torch::rand({7, 4}, torch::kFloat64));
  expect_close(aligned_iou(a, b), pairwise_iou(a, b).diagonal(), 1e-14);
  expect_close(aligned_giou(a, b), pairwise_giou(a, b).diagonal(), 1e-14);
}

TEST(Boxes, GiouBoundsAndIdentity) {
  torch::manual_seed(1);
  const auto a = cxcywh_to_xyxy(torch::rand({50, 4}, torch::kFloat64) * 0.5 + 0.25);
  const auto b = cxcywh_to_xyxy(torch::rand({40, 4}, torch::kFloat64) * 0.5 + 0.25);
  const auto g = pairwise_giou(a, b);
  const auto i = pairwise_iou(a, b);
  EXPECT_TRUE((g <= i + 1e-12).all().item<bool>());
  EXPECT_TRUE((g >= -1).all().item<bool>());
  // A box with itself: area / (area + 1e-6), the reference's epsilon.
  const auto self = area(a);
  expect_close(aligned_iou(a, a), self / (self + 1e-6), 1e-14);
}

TEST(Boxes, ClipScaleNormalize) {
  expect_close(clip(T({{-5, 3, 700, 500}}), 480, 640), T({{0, 3, 640, 480}}));
  const auto px = scale(T({{0.5, 0.25, 0.1, 0.2}}), 480, 640);
  expect_close(px, T({{320, 120, 64, 96}}));
  expect_close(normalize(px, 480, 640), T({{0.5, 0.25, 0.1, 0.2}}));
}

TEST(Boxes, GiouGradientMatchesFiniteDifferences) {
  torch::manual_seed(2);
  auto a = cxcywh_to_xyxy(torch::rand({3, 4}, torch::kFloat64) * 0.5 + 0.25).requires_grad_(true);
  const auto b = cxcywh_to_xyxy(torch::rand({3, 4}, torch::kFloat64) * 0.5 + 0.25);
  const auto loss = (1 - aligned_giou(a, b)).sum();
  const auto grad = torch::autograd::grad({loss}, {a})[0];
  const double h = 1e-6;
  auto base = a.detach().clone();
  for (int64_t i = 0; i < base.numel(); ++i) {
    auto p = base.clone();
    auto m = base.clone();
    p.view(-1)[i] += h;
    m.view(-1)[i] -= h;
    const double fd = ((1 - aligned_giou(p, b)).sum().item<double>() -
                       (1 - aligned_giou(m, b)).sum().item<double>()) /
                      (2 * h);
    EXPECT_NEAR(grad.view(-1)[i].item<double>(), fd, 1e-6) << "element " << i;
  }
}

TEST(Boxes, RejectsWrongShapes) {
  EXPECT_THROW(pairwise_iou(torch::rand({3, 3}), torch::rand({2, 4})), c10::Error);
  EXPECT_THROW(aligned_iou(torch::rand({3, 4}), torch::rand({2, 4})), c10::Error);
}

}  // namespace
}  // namespace aligndetr
