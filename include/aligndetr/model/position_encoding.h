#pragma once
// Sine position embedding of image features, computed from the padding mask (DETR-style, with
// detrex's options). For each valid pixel, y = cumulative count of valid rows and x of valid
// columns; with normalize, (count + offset) / (last count + eps) * scale. Each coordinate gives
// num_pos_feats features: channel 2i is sin(c / T^(2i/n)), channel 2i+1 is cos(c / T^(2i/n)).
// The output stacks the y features first, then the x features.

#include <cstdint>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace aligndetr::model {

struct PositionEmbeddingSineOptions {
  int64_t num_pos_feats = 128;  // per coordinate; the output has twice as many channels
  // detrex's DINO uses 10000; DAB-DETR and the official DINO use 20 (for both H and W).
  double temperature_h = 10000.0;
  double temperature_w = 10000.0;
  bool normalize = true;
  double scale = 6.283185307179586;  // 2 pi
  double offset = -0.5;              // detrex's DINO; 0 for DAB-DETR and the official DINO
  double eps = 1e-6;
};

// No parameters: a module only so that models compose it like their other parts.
class PositionEmbeddingSineImpl : public torch::nn::Module {
 public:
  explicit PositionEmbeddingSineImpl(PositionEmbeddingSineOptions options = {});
  // mask: [B, H, W] bool, true on padding. Returns float [B, 2 * num_pos_feats, H, W] on the
  // mask's device, channels-last.
  torch::Tensor forward(const torch::Tensor& mask) const;
  const PositionEmbeddingSineOptions& options() const { return options_; }

 private:
  PositionEmbeddingSineOptions options_;
};
TORCH_MODULE(PositionEmbeddingSine);

}  // namespace aligndetr::model
