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
  for (size_t b = 0; b < targets.size(); ++b) {
    const auto& t = targets[b];
    const std::string image = where + ": targets of image " + std::to_string(b);
    if (!t.labels.defined() || !t.boxes.defined()) throw util::InputError(image + ": no tensors");
    const int64_t n = t.labels.numel();
    if (t.labels.dim() != 1 || t.boxes.numel() != 4 * n || (n > 0 && t.boxes.size(-1) != 4)) {
      throw util::InputError(image + ": expected labels [n] and boxes [n, 4]");
    }
    if (n > 0 &&
        (t.labels.min().item<int64_t>() < 0 || t.labels.max().item<int64_t>() >= classes)) {
      throw util::InputError(image + ": a label is outside [0, " + std::to_string(classes) + ")");
    }
  }
}

}  // namespace aligndetr::boxes
