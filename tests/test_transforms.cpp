#include <gtest/gtest.h>
#include <torch/torch.h>

#include <opencv2/core.hpp>

#include "aligndetr/data/batch.h"
#include "aligndetr/data/dataset.h"
#include "aligndetr/data/transforms.h"

namespace aligndetr {
namespace {

// A 100x200 (h x w) image whose pixel values encode their position, with two boxes.
data::Annotated make_sample() {
  data::Annotated s;
  s.image = cv::Mat(100, 200, CV_8UC3);
  for (int y = 0; y < 100; ++y) {
    for (int x = 0; x < 200; ++x) s.image.at<cv::Vec3b>(y, x) = cv::Vec3b(x, y, 7);
  }
  s.boxes = {{10, 20, 50, 60}, {150, 0, 200, 100}};
  s.labels = {3, 5};
  return s;
}

void expect_box(const data::BoxXYXY& b, float x0, float y0, float x1, float y1) {
  EXPECT_NEAR(b[0], x0, 1e-4);
  EXPECT_NEAR(b[1], y0, 1e-4);
  EXPECT_NEAR(b[2], x1, 1e-4);
  EXPECT_NEAR(b[3], y1, 1e-4);
}

TEST(Transforms, ShortestEdgeSizeMatchesDetectron2) {
  // 480x640 to short edge 800: 800x1066.67 -> (800, 1067).
  EXPECT_EQ(data::shortest_edge_size(480, 640, 800, 1333), (std::array<int, 2>{800, 1067}));
  // Very wide: limited by max size 1333: 1000x3000 -> 800x2400 -> scaled to 444.33x1333.
  EXPECT_EQ(data::shortest_edge_size(1000, 3000, 800, 1333), (std::array<int, 2>{444, 1333}));
  // Portrait, no limit.
  EXPECT_EQ(data::shortest_edge_size(640, 427, 400, 0), (std::array<int, 2>{600, 400}));
}

TEST(Transforms, FlipMovesPixelsAndBoxesTogether) {
  auto s = make_sample();
  data::hflip(s);
  // Pixel that was at x = 10 is now at x = 189.
  EXPECT_EQ(s.image.at<cv::Vec3b>(20, 189)[0], 10);
  expect_box(s.boxes[0], 150, 20, 190, 60);
  expect_box(s.boxes[1], 0, 0, 50, 100);
  data::hflip(s);
  expect_box(s.boxes[0], 10, 20, 50, 60);
}

TEST(Transforms, ResizeScalesBoxesByEachAxis) {
  auto s = make_sample();
  data::resize(s, 50, 300);  // y x0.5, x x1.5
  EXPECT_EQ(s.image.rows, 50);
  EXPECT_EQ(s.image.cols, 300);
  expect_box(s.boxes[0], 15, 10, 75, 30);
  expect_box(s.boxes[1], 225, 0, 300, 50);
}

TEST(Transforms, CropShiftsClipsAndDropsEmptyBoxes) {
  auto s = make_sample();
  data::crop(s, 30, 10, 100, 50);  // window x [30,130), y [10,60)
  EXPECT_EQ(s.image.cols, 100);
  EXPECT_EQ(s.image.rows, 50);
  EXPECT_EQ(s.image.at<cv::Vec3b>(0, 0)[0], 30);  // pixel (x=30, y=10)
  EXPECT_EQ(s.image.at<cv::Vec3b>(0, 0)[1], 10);
  ASSERT_EQ(s.boxes.size(), 1u);  // the second box lies right of the window
  expect_box(s.boxes[0], 0, 10, 20, 50);
  EXPECT_EQ(s.labels[0], 3);
}

TEST(Transforms, TrainTransformsAreReproducibleAndKeepBoxesInside) {
  data::TransformOptions o;
  o.train_short_sizes = {64, 96};
  o.train_max_size = 160;
  o.crop_resize_sizes = {80, 100};
  o.crop_min = 40;
  o.crop_max = 70;
  int cropped = 0, flipped = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    auto a = make_sample();
    auto b = make_sample();
    std::mt19937_64 ra(seed), rb(seed);
    data::apply_train_transforms(a, o, ra);
    data::apply_train_transforms(b, o, rb);
    ASSERT_EQ(a.boxes, b.boxes);
    ASSERT_EQ(cv::norm(a.image, b.image, cv::NORM_INF), 0);
    const int short_side = std::min(a.image.rows, a.image.cols);
    EXPECT_TRUE(short_side == 64 || short_side == 96 || std::max(a.image.rows, a.image.cols) == 160)
        << a.image.rows << "x" << a.image.cols;
    for (const auto& box : a.boxes) {
      EXPECT_GE(box[0], 0);
      EXPECT_GE(box[1], 0);
      EXPECT_LE(box[2], a.image.cols + 1e-3);
      EXPECT_LE(box[3], a.image.rows + 1e-3);
      EXPECT_GT(box[2] - box[0], 0);
      EXPECT_GT(box[3] - box[1], 0);
    }
    cropped += a.boxes.size() < 2;
    // The pixel encoding tells whether the image was flipped: blue (x) decreases along a row
    // only after a flip.
    const auto& row = a.image;
    flipped +=
        row.at<cv::Vec3b>(row.rows / 2, 0)[0] > row.at<cv::Vec3b>(row.rows / 2, row.cols - 1)[0];
  }
  EXPECT_GT(cropped, 0);  // some crops remove a box
  EXPECT_GT(flipped, 5);
  EXPECT_LT(flipped, 35);
}

TEST(Transforms, BoxesFollowFlipResizeCropByHand) {
  // Compose flip, a resize and a crop by hand and compare with the primitives.
  auto s = make_sample();
  data::hflip(s);
  data::resize(s, 200, 400);  // x2 both axes
  data::crop(s, 250, 20, 150, 120);
  // Box 0 after flip: (150,20,190,60) -> x2: (300,40,380,120) -> crop: (50,20,130,100).
  // Box 1 after flip: (0,0,50,100) -> x2: (0,0,100,200) -> left of the window: dropped.
  ASSERT_EQ(s.boxes.size(), 1u);
  expect_box(s.boxes[0], 50, 20, 130, 100);
  EXPECT_EQ(s.labels[0], 3);
}

TEST(Batch, ToSampleNormalizesImageAndBoxes) {
  auto s = make_sample();
  const data::Sample t = data::to_sample(s, 42, {100, 200});
  EXPECT_EQ(t.image.sizes(), torch::IntArrayRef({3, 100, 200}));
  // Channel 0 at (y=20, x=10) holds 10.
  EXPECT_NEAR(t.image[0][20][10].item<float>(), (10 - data::kPixelMean[0]) / data::kPixelStd[0],
              1e-5);
  EXPECT_NEAR(t.image[2][0][0].item<float>(), (7 - data::kPixelMean[2]) / data::kPixelStd[2], 1e-5);
  // Box (10,20,50,60) in a 200x100 image: cx 30/200, cy 40/100, w 40/200, h 40/100.
  const auto b = t.target.boxes[0];
  EXPECT_NEAR(b[0].item<float>(), 0.15f, 1e-6);
  EXPECT_NEAR(b[1].item<float>(), 0.40f, 1e-6);
  EXPECT_NEAR(b[2].item<float>(), 0.20f, 1e-6);
  EXPECT_NEAR(b[3].item<float>(), 0.40f, 1e-6);
  EXPECT_EQ(t.target.labels[1].item<int64_t>(), 5);
  EXPECT_EQ(t.target.image_id, 42);
}

TEST(Batch, CollatePadsAndMasks) {
  std::vector<data::Sample> samples(2);
  samples[0].image = torch::ones({3, 4, 6});
  samples[1].image = torch::full({3, 5, 3}, 2.0);
  for (auto& s : samples) {
    s.target.boxes = torch::zeros({0, 4});
    s.target.labels = torch::zeros({0}, torch::kInt64);
  }
  const data::Batch b = data::collate(std::move(samples));
  EXPECT_EQ(b.images.sizes(), torch::IntArrayRef({2, 3, 5, 6}));
  EXPECT_EQ(b.mask.sizes(), torch::IntArrayRef({2, 5, 6}));
  // Image 0: valid rows 0-3, cols 0-5; image 1: rows 0-4, cols 0-2.
  EXPECT_EQ(b.mask[0].sum().item<int64_t>(), 6);      // one padded row of 6
  EXPECT_EQ(b.mask[1].sum().item<int64_t>(), 5 * 3);  // three padded columns of 5
  EXPECT_TRUE(b.mask[0][4].all().item<bool>());
  EXPECT_FALSE(b.mask[0][3].any().item<bool>());
  EXPECT_TRUE(b.mask[1].narrow(1, 3, 3).all().item<bool>());
  EXPECT_EQ(b.images[0].sum().item<float>(), 3 * 4 * 6);  // padding is zero
  EXPECT_EQ(b.images[1].sum().item<float>(), 2 * 3 * 5 * 3);
  EXPECT_TRUE(
      (b.images.masked_select(b.mask.unsqueeze(1).expand_as(b.images)) == 0).all().item<bool>());
}

}  // namespace
}  // namespace aligndetr
