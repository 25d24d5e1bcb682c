#pragma once
// Image and box transforms (OpenCV images, boxes in pixel xyxy), as in the reference's
// DetrDatasetMapper: horizontal flip, then 50/50 between (a) a random shortest-edge resize and
// (b) resize, random crop, then (a). Every size is an option. Randomness comes only from the
// generator passed in, so a sample's augmentation is reproducible from its seed.

#include <array>
#include <cstdint>
#include <random>
#include <vector>

#include <opencv2/core/mat.hpp>

namespace aligndetr::data {

using BoxXYXY = std::array<float, 4>;

// An image (RGB, uint8) with its boxes (pixel xyxy) and their labels.
struct Annotated {
  cv::Mat image;
  std::vector<BoxXYXY> boxes;
  std::vector<int64_t> labels;
};

struct TransformOptions {
  double flip_prob = 0.5;
  std::vector<int> train_short_sizes = {480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800};
  int train_max_size = 1333;
  double crop_prob = 0.5;  // chance of branch (b)
  std::vector<int> crop_resize_sizes = {400, 500, 600};
  int crop_min = 384;
  int crop_max = 600;
  int test_short_size = 800;
  int test_max_size = 1333;
};

// detectron2's ResizeShortestEdge output size (height, width); max_size <= 0 means no limit.
std::array<int, 2> shortest_edge_size(int height, int width, int short_edge, int max_size);

void hflip(Annotated& sample);
void resize(Annotated& sample, int new_height, int new_width);
void resize_shortest_edge(Annotated& sample, int short_edge, int max_size);
// Crops to [x0, x0 + width) x [y0, y0 + height); boxes are shifted and clipped.
void crop(Annotated& sample, int x0, int y0, int width, int height);
// Drops boxes whose width or height is not above 1e-5 pixels (as detectron2), with their labels.
void drop_degenerate(Annotated& sample);

void apply_train_transforms(Annotated& sample, const TransformOptions& options,
                            std::mt19937_64& rng);
void apply_eval_transforms(Annotated& sample, const TransformOptions& options);

}  // namespace aligndetr::data
