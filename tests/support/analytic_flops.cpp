#include "support/analytic_flops.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <variant>

namespace aligndetr::testing {

namespace {

const torch::nn::Conv2dImpl* child_conv(const torch::nn::Module& m, const std::string& name) {
  for (const auto& child : m.named_children()) {
    if (child.key() == name) return child.value()->as<torch::nn::Conv2dImpl>();
  }
  return nullptr;
}

std::shared_ptr<torch::nn::Module> child(const torch::nn::Module& m, const std::string& name) {
  for (const auto& c : m.named_children()) {
    if (c.key() == name) return c.value();
  }
  throw std::logic_error("module has no child '" + name + "'");
}

// One residual block, whatever its kind: conv1 -> conv2 [-> conv3] in sequence, and the optional
// downsample conv on the block input.
int64_t block_flops(const torch::nn::Module& block, SpatialSize in, SpatialSize* out) {
  int64_t flops = 0;
  SpatialSize size = in;
  for (const char* name : {"conv1", "conv2", "conv3"}) {
    if (const auto* conv = child_conv(block, name)) flops += conv2d_flops(*conv, size, &size);
  }
  for (const auto& c : block.named_children()) {
    if (c.key() != "downsample") continue;
    SpatialSize unused{};
    flops += conv2d_flops(*child_conv(*c.value(), "0"), in, &unused);
  }
  *out = size;
  return flops;
}

}  // namespace

int64_t conv2d_flops(const torch::nn::Conv2dImpl& conv, SpatialSize in, SpatialSize* out) {
  const auto& o = conv.options;
  // LibTorch 1.x keeps the padding in a c10::variant, 2.x in a std::variant: argument-dependent
  // lookup picks the matching get_if.
  using std::get_if;
  const auto* padding = get_if<torch::ExpandingArray<2>>(&o.padding());
  if (!padding)
    throw std::invalid_argument("FLOP count: convolutions with string padding are not supported");
  for (int d = 0; d < 2; ++d) {
    const int64_t span = o.dilation()->at(d) * (o.kernel_size()->at(d) - 1) + 1;
    (*out)[d] = (in[d] + 2 * (*padding)->at(d) - span) / o.stride()->at(d) + 1;
  }
  return (*out)[0] * (*out)[1] * conv.weight.numel();
}

FlopCount resnet_flops(const model::ResNetImpl& net, SpatialSize image) {
  FlopCount count;
  SpatialSize size = image;
  count.flops += conv2d_flops(*child_conv(net, "conv1"), size, &size);
  for (int d = 0; d < 2; ++d) size[d] = (size[d] + 2 - 3) / 2 + 1;  // 3x3 max pool, stride 2
  const auto& stages = net.options().out_stages;
  for (int stage = 1; stage <= stages.back(); ++stage) {
    const auto layer = child(net, "layer" + std::to_string(stage));
    for (const auto& block : layer->children()) count.flops += block_flops(*block, size, &size);
    if (std::find(stages.begin(), stages.end(), stage) != stages.end()) {
      count.out_sizes.push_back(size);
    }
  }
  return count;
}

FlopCount channel_mapper_flops(const model::ChannelMapperImpl& neck,
                               const std::vector<SpatialSize>& in) {
  const auto& options = neck.options();
  if (in.size() != options.in_channels.size()) {
    throw std::invalid_argument("FLOP count: the neck expects " +
                                std::to_string(options.in_channels.size()) + " levels, got " +
                                std::to_string(in.size()));
  }
  FlopCount count;
  const auto convs = child(neck, "convs")->children();
  for (size_t i = 0; i < in.size(); ++i) {
    SpatialSize size{};
    count.flops += conv2d_flops(*convs[i]->as<model::ConvNormImpl>()->conv, in[i], &size);
    count.out_sizes.push_back(size);
  }
  if (options.num_extra > 0) {
    SpatialSize size = in.back();
    for (const auto& extra : child(neck, "extra_convs")->children()) {
      count.flops += conv2d_flops(*extra->as<model::ConvNormImpl>()->conv, size, &size);
      count.out_sizes.push_back(size);
    }
  }
  return count;
}

}  // namespace aligndetr::testing
