#include "aligndetr/engine/grad_scaler.h"

#include <cmath>

#include <fmt/format.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "aligndetr/util/error.h"

namespace aligndetr::engine {
namespace {

// ATen's fused kernels exist for CUDA in every LibTorch and for the CPU from 2.x on; LibTorch
// 1.13's CPU gets the same arithmetic from tensor operations.
bool fused_kernels(const torch::Device& device) {
  return device.is_cuda() || TORCH_VERSION_MAJOR >= 2;
}

void unscale_with_tensor_ops(const std::vector<torch::Tensor>& grads, torch::Tensor& found_inf,
                             const torch::Tensor& inv_scale) {
  for (const auto& g : grads) {
    found_inf.logical_or_(g.isfinite().logical_not().any().view({1}));
    g.mul_(inv_scale);
  }
}

void update_with_tensor_ops(torch::Tensor& scale, torch::Tensor& tracker,
                            const torch::Tensor& found_inf, const GradScalerOptions& o) {
  const auto bad = found_inf > 0;
  // As ATen's kernel: a scale that would grow past float32's range stays.
  const auto grown =
      (tracker + 1 >= o.growth_interval).logical_and((scale * o.growth_factor).isfinite());
  scale.copy_(torch::where(bad, scale * o.backoff_factor,
                           torch::where(grown, scale * o.growth_factor, scale)));
  tracker.copy_(torch::where(bad.logical_or(grown), torch::zeros_like(tracker), tracker + 1));
}

}  // namespace

GradScaler::GradScaler(const GradScalerOptions& options, torch::Device device) : options_(options) {
  if (!(options.init_scale > 0) || !std::isfinite(options.init_scale) ||
      !(options.growth_factor > 1) || !(options.backoff_factor > 0 && options.backoff_factor < 1) ||
      options.growth_interval < 1) {
    throw util::InputError(fmt::format(
        "gradient scaler: init_scale must be positive, growth_factor > 1, backoff_factor in "
        "(0, 1) and growth_interval >= 1; got {}, {}, {}, {}",
        options.init_scale, options.growth_factor, options.backoff_factor,
        options.growth_interval));
  }
  const auto f = torch::TensorOptions().device(device).dtype(torch::kFloat);
  scale_ = torch::full({1}, options.init_scale, f);
  growth_tracker_ = torch::zeros({1}, f.dtype(torch::kInt));
  found_inf_ = torch::zeros({1}, f);
}

bool GradScaler::unscale(const std::vector<torch::Tensor>& grads) {
  torch::NoGradGuard no_grad;
  found_inf_.zero_();
  const auto inv_scale = scale_.reciprocal();
  if (fused_kernels(scale_.device())) {
    if (!grads.empty())
      at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf_, inv_scale);
  } else {
    unscale_with_tensor_ops(grads, found_inf_, inv_scale);
  }
  return found_inf_.item<float>() == 0.0f;
}

void GradScaler::update() {
  torch::NoGradGuard no_grad;
  if (fused_kernels(scale_.device())) {
    at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, options_.growth_factor,
                           options_.backoff_factor, options_.growth_interval);
  } else {
    update_with_tensor_ops(scale_, growth_tracker_, found_inf_, options_);
  }
}

double GradScaler::current_scale() const {
  return scale_.item<double>();
}

int64_t GradScaler::growth_tracker() const {
  return growth_tracker_.item<int64_t>();
}

void GradScaler::load(double scale, int64_t growth_tracker) {
  scale_.fill_(scale);
  growth_tracker_.fill_(growth_tracker);
}

}  // namespace aligndetr::engine
