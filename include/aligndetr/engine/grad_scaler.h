#pragma once
// The float16 gradient scaler of `train.amp: fp16` (torch.cuda.amp.GradScaler's algorithm; the
// C++ frontend has none): the loss is multiplied by the scale before backward so that small
// gradients survive float16; before the optimizer step the gradients are divided by it and
// checked in one fused pass. A step whose gradients hold inf or NaN is skipped and the scale
// backs off; after growth_interval good steps in a row it grows. The scale and the count of good
// steps stay on the device: nothing here waits for it except `unscale`'s one answer per step.

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace aligndetr::engine {

struct GradScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

class GradScaler {
 public:
  GradScaler(const GradScalerOptions& options, torch::Device device);

  torch::Tensor scale(const torch::Tensor& loss) const { return loss * scale_; }
  // Divides the gradients by the scale in place; true when all of them are finite.
  bool unscale(const std::vector<torch::Tensor>& grads);
  // After the step (taken or skipped): grows or backs off the scale from unscale's finding.
  void update();

  double current_scale() const;
  int64_t growth_tracker() const;
  // A checkpoint's state.
  void load(double scale, int64_t growth_tracker);

 private:
  GradScalerOptions options_;
  torch::Tensor scale_;           // float32 [1]
  torch::Tensor growth_tracker_;  // int32 [1]: good steps since the last change
  torch::Tensor found_inf_;       // float32 [1]
};

}  // namespace aligndetr::engine
