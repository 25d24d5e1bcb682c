#pragma once
// ChannelMapper neck (detrex's ChannelMapper with 1x1 convs and GroupNorm, no activation): maps
// every backbone level to the model width and adds extra, coarser levels by 3x3 stride-2 convs.
// Parameter names follow detrex: convs.{i}.conv.*, convs.{i}.norm.*, extra_convs.{j}.conv.*,
// extra_convs.{j}.norm.*.

#include <cstdint>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

namespace aligndetr::model {

// A convolution with bias followed by GroupNorm, registered as `conv` and `norm`.
class ConvNormImpl : public torch::nn::Module {
 public:
  ConvNormImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
               int64_t groups);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Conv2d conv{nullptr};
  torch::nn::GroupNorm norm{nullptr};
};
TORCH_MODULE(ConvNorm);

struct ChannelMapperOptions {
  std::vector<int64_t> in_channels;  // channels of each backbone output, finest first
  int64_t out_channels = 256;
  // Extra levels: the first is a 3x3 stride-2 conv on the last raw backbone output (e.g. the
  // 2048-channel res5 of a ResNet-50), each further one on the previous extra level.
  int num_extra = 1;
  int groups = 32;  // GroupNorm groups
};

class ChannelMapperImpl : public torch::nn::Module {
 public:
  explicit ChannelMapperImpl(ChannelMapperOptions options);
  // One tensor per in_channels entry; returns in_channels.size() + num_extra levels.
  std::vector<torch::Tensor> forward(const std::vector<torch::Tensor>& features);
  const ChannelMapperOptions& options() const { return options_; }

 private:
  ChannelMapperOptions options_;
  torch::nn::ModuleList convs_{nullptr}, extra_convs_{nullptr};
};
TORCH_MODULE(ChannelMapper);

// The padding mask ([B, H, W] bool, true on padding) at a feature level's [h, w], by nearest
// interpolation of the mask as float, as detrex does.
torch::Tensor downsample_mask(const torch::Tensor& mask, int64_t height, int64_t width);
// One mask per feature ([B, C, h, w]).
std::vector<torch::Tensor> downsample_masks(const torch::Tensor& mask,
                                            const std::vector<torch::Tensor>& features);
// Boxes [B, N, 4] (cx, cy, w, h) normalized to the whole padded canvas, re-expressed relative to
// each image's valid region (mask [B, H, W], true on padding), the frame every detector reports in.
// Needed when a model ran with an all-valid mask on a padded batch.
torch::Tensor boxes_relative_to_valid_region(const torch::Tensor& boxes, const torch::Tensor& mask);

}  // namespace aligndetr::model
