#include "aligndetr/data/batch.h"

#include <torch/torch.h>

namespace aligndetr::data {

Batch Batch::to(const torch::Device& device) const {
  Batch b;
  b.images = images.to(device);
  b.mask = mask.to(device);
  b.targets.reserve(targets.size());
  for (const auto& t : targets) b.targets.push_back(t.to(device));
  return b;
}

Batch collate(std::vector<Sample> samples) {
  TORCH_CHECK(!samples.empty(), "collate: empty batch");
  int64_t max_h = 0, max_w = 0;
  for (const auto& s : samples) {
    max_h = std::max(max_h, s.image.size(1));
    max_w = std::max(max_w, s.image.size(2));
  }
  const auto n = static_cast<int64_t>(samples.size());
  Batch batch;
  batch.images = torch::zeros({n, 3, max_h, max_w}, samples[0].image.options());
  batch.mask = torch::ones({n, max_h, max_w}, torch::kBool);
  for (int64_t i = 0; i < n; ++i) {
    const auto& img = samples[static_cast<size_t>(i)].image;
    const int64_t h = img.size(1), w = img.size(2);
    batch.images[i].narrow(1, 0, h).narrow(2, 0, w).copy_(img);
    batch.mask[i].narrow(0, 0, h).narrow(1, 0, w).fill_(false);
    batch.targets.push_back(std::move(samples[static_cast<size_t>(i)].target));
  }
  return batch;
}

}  // namespace aligndetr::data
