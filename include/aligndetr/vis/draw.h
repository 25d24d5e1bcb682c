#pragma once
// Drawing boxes with class names (and scores) on images, for `dataset show` and `predict`.

#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "aligndetr/data/transforms.h"

namespace aligndetr::vis {

struct DrawnBox {
  data::BoxXYXY box;  // pixels
  int label = 0;
  float score = -1.0f;  // < 0: no score shown
};

// Draws on an RGB image in place; each class has its own colour.
void draw_boxes(cv::Mat& rgb, const std::vector<DrawnBox>& boxes,
                const std::vector<std::string>& class_names);

// Writes an RGB image (JPEG or PNG by extension). Throws InputError on failure.
void write_image_rgb(const std::string& path, const cv::Mat& rgb);

}  // namespace aligndetr::vis
