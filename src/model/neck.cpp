#include "aligndetr/model/neck.h"

#include <string>
#include <utility>

#include <torch/nn/functional/upsampling.h>
#include <torch/nn/init.h>

#include "aligndetr/util/error.h"

namespace aligndetr::model {

ConvNormImpl::ConvNormImpl(int64_t in_channels, int64_t out_channels, int64_t kernel,
                           int64_t stride, int64_t groups) {
  conv = register_module(
      "conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, out_channels, kernel)
                                    .stride(stride)
                                    .padding((kernel - 1) / 2)
                                    .bias(true)));
  norm = register_module("norm", torch::nn::GroupNorm(groups, out_channels));
  // The reference detectors re-initialise the neck convs this way.
  torch::nn::init::xavier_uniform_(conv->weight);
  torch::nn::init::zeros_(conv->bias);
}

torch::Tensor ConvNormImpl::forward(const torch::Tensor& x) {
  return norm(conv(x));
}

ChannelMapperImpl::ChannelMapperImpl(ChannelMapperOptions options) : options_(std::move(options)) {
  if (options_.in_channels.empty())
    throw util::InputError("ChannelMapper needs at least one input");
  if (options_.num_extra < 0) throw util::InputError("ChannelMapper num_extra must be >= 0");
  if (options_.groups <= 0 || options_.out_channels % options_.groups != 0) {
    throw util::InputError("ChannelMapper width " + std::to_string(options_.out_channels) +
                           " is not divisible by its GroupNorm groups " +
                           std::to_string(options_.groups));
  }
  convs_ = register_module("convs", torch::nn::ModuleList());
  for (int64_t c : options_.in_channels) {
    convs_->push_back(ConvNorm(c, options_.out_channels, 1, 1, options_.groups));
  }
  if (options_.num_extra > 0) {
    extra_convs_ = register_module("extra_convs", torch::nn::ModuleList());
    for (int i = 0; i < options_.num_extra; ++i) {
      const int64_t in = i == 0 ? options_.in_channels.back() : options_.out_channels;
      extra_convs_->push_back(ConvNorm(in, options_.out_channels, 3, 2, options_.groups));
    }
  }
}

std::vector<torch::Tensor> ChannelMapperImpl::forward(const std::vector<torch::Tensor>& features) {
  if (features.size() != options_.in_channels.size()) {
    throw util::InputError("ChannelMapper expects " + std::to_string(options_.in_channels.size()) +
                           " feature maps, got " + std::to_string(features.size()));
  }
  std::vector<torch::Tensor> outputs;
  for (size_t i = 0; i < features.size(); ++i) {
    outputs.push_back(convs_[i]->as<ConvNormImpl>()->forward(features[i]));
  }
  for (int i = 0; i < options_.num_extra; ++i) {
    const torch::Tensor& input = i == 0 ? features.back() : outputs.back();
    outputs.push_back(extra_convs_[i]->as<ConvNormImpl>()->forward(input));
  }
  return outputs;
}

torch::Tensor downsample_mask(const torch::Tensor& mask, int64_t height, int64_t width) {
  namespace F = torch::nn::functional;
  const torch::Tensor resized = F::interpolate(
      mask.unsqueeze(0).to(torch::kFloat),
      F::InterpolateFuncOptions().size(std::vector<int64_t>{height, width}).mode(torch::kNearest));
  return resized.squeeze(0).to(torch::kBool);
}

std::vector<torch::Tensor> downsample_masks(const torch::Tensor& mask,
                                            const std::vector<torch::Tensor>& features) {
  std::vector<torch::Tensor> masks;
  for (const auto& f : features) masks.push_back(downsample_mask(mask, f.size(-2), f.size(-1)));
  return masks;
}

torch::Tensor boxes_relative_to_valid_region(const torch::Tensor& boxes,
                                             const torch::Tensor& mask) {
  const auto valid = mask.logical_not();
  const auto height = static_cast<double>(mask.size(1));
  const auto width = static_cast<double>(mask.size(2));
  const auto valid_w = valid.select(1, 0).sum(1).to(boxes.dtype()).clamp_min(1);
  const auto valid_h = valid.select(2, 0).sum(1).to(boxes.dtype()).clamp_min(1);
  const auto sx = width / valid_w;
  const auto sy = height / valid_h;
  return boxes * torch::stack({sx, sy, sx, sy}, 1).unsqueeze(1);
}

}  // namespace aligndetr::model
