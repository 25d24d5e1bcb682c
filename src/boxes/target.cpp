#include "aligndetr/boxes/target.h"

#include <torch/torch.h>

#include "aligndetr/util/error.h"

namespace aligndetr::boxes {

Target Target::to(const torch::Device& device) const {
  Target t = *this;
  t.boxes = boxes.to(device);
  t.labels = labels.to(device);
  return t;
}

void check_targets(const std::vector<Target>& targets, int64_t batch, int64_t classes,
                   const std::string& where) {
  if (static_cast<int64_t>(targets.size()) != batch) {
    throw util::InputError(where + ": " + std::to_string(targets.size()) +
                           " targets for a batch of " + std::to_string(batch));
  }
  std::vector<int64_t> labelled;
  std::vector<torch::Tensor> extremes;
  for (size_t b = 0; b < targets.size(); ++b) {
    const auto& t = targets[b];
    const std::string image = where + ": targets of image " + std::to_string(b);
    if (!t.labels.defined() || !t.boxes.defined()) throw util::InputError(image + ": no tensors");
    const int64_t n = t.labels.numel();
    if (t.labels.dim() != 1 || t.boxes.numel() != 4 * n || (n > 0 && t.boxes.size(-1) != 4)) {
      throw util::InputError(image + ": expected labels [n] and boxes [n, 4]");
    }
    if (n > 0) {
      labelled.push_back(int64_t(b));
      extremes.push_back(torch::stack({t.labels.min(), t.labels.max()}).to(torch::kLong));
    }
  }
  if (extremes.empty()) return;
  // One transfer for the whole batch: targets on a GPU are not waited for once per image.
  const auto host = torch::stack(extremes).to(torch::kCPU);
  const auto range = host.accessor<int64_t, 2>();
  for (size_t i = 0; i < labelled.size(); ++i) {
    if (range[int64_t(i)][0] < 0 || range[int64_t(i)][1] >= classes) {
      throw util::InputError(where + ": targets of image " + std::to_string(labelled[i]) +
                             ": a label is outside [0, " + std::to_string(classes) + ")");
    }
  }
}

}  // namespace aligndetr::boxes
