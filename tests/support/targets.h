#pragma once
// The ground truth of a two-image batch the model tests train and match on: three boxes of three
// classes, two in the first image and one in the second.

#include <vector>

#include <torch/torch.h>

#include "aligndetr/boxes/target.h"

namespace aligndetr::testing {

inline std::vector<boxes::Target> two_image_targets() {
  std::vector<boxes::Target> t(2);
  t[0].labels = torch::tensor({1, 3}, torch::kInt64);
  t[0].boxes = torch::tensor({0.3f, 0.3f, 0.2f, 0.2f, 0.6f, 0.7f, 0.3f, 0.4f}).view({2, 4});
  t[1].labels = torch::tensor({4}, torch::kInt64);
  t[1].boxes = torch::tensor({0.5f, 0.5f, 0.5f, 0.5f}).view({1, 4});
  return t;
}

}  // namespace aligndetr::testing
