#include "aligndetr/model/backbone.h"

#include "aligndetr/model/sync_batch_norm.h"

#include <algorithm>
#include <string>
#include <utility>

#include <torch/nn/functional/pooling.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/normalization.h>

#include "aligndetr/util/error.h"

namespace aligndetr::model {
namespace {

namespace F = torch::nn::functional;

// torchvision's convs: no bias, "same" padding before the stride, Kaiming-normal (fan_out, ReLU)
// init.
torch::nn::Conv2d make_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                            int64_t dilation = 1) {
  const int64_t padding = dilation * (kernel - 1) / 2;
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(in, out, kernel)
                             .stride(stride)
                             .padding(padding)
                             .dilation(dilation)
                             .bias(false));
  torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
  return conv;
}

torch::nn::AnyModule make_norm(BackboneNorm norm, int64_t channels) {
  switch (norm) {
    case BackboneNorm::kBatchNorm:
      return torch::nn::AnyModule(torch::nn::BatchNorm2d(channels));
    case BackboneNorm::kSyncBatchNorm:
      return torch::nn::AnyModule(SyncBatchNorm2d(channels));
    case BackboneNorm::kGroupNorm:
      return torch::nn::AnyModule(torch::nn::GroupNorm(32, channels));
    case BackboneNorm::kFrozenBatchNorm:
      break;
  }
  return torch::nn::AnyModule(FrozenBatchNorm2d(channels));
}

struct DepthSpec {
  std::vector<int64_t> blocks;
  bool bottleneck;
};

DepthSpec depth_spec(int depth) {
  switch (depth) {
    case 18:
      return {{2, 2, 2, 2}, false};
    case 34:
      return {{3, 4, 6, 3}, false};
    case 50:
      return {{3, 4, 6, 3}, true};
    case 101:
      return {{3, 4, 23, 3}, true};
    default:
      throw util::InputError("ResNet depth must be 18, 34, 50 or 101, got " +
                             std::to_string(depth));
  }
}

}  // namespace

FrozenBatchNorm2dImpl::FrozenBatchNorm2dImpl(int64_t num_features, double eps_) : eps(eps_) {
  weight = register_buffer("weight", torch::ones({num_features}));
  bias = register_buffer("bias", torch::zeros({num_features}));
  running_mean = register_buffer("running_mean", torch::zeros({num_features}));
  running_var = register_buffer("running_var", torch::ones({num_features}));
}

torch::Tensor FrozenBatchNorm2dImpl::forward(const torch::Tensor& x) {
  // Folded into one scale and shift per channel; the same arithmetic as detectron2's
  // FrozenBatchNorm2d, so imported weights give the reference's numbers.
  const torch::Tensor scale = weight * (running_var + eps).rsqrt();
  const torch::Tensor shift = bias - running_mean * scale;
  // One pass over x (x * scale, then + shift: the same two roundings as two operators).
  return torch::addcmul(shift.view({1, -1, 1, 1}).to(x.dtype()), x,
                        scale.view({1, -1, 1, 1}).to(x.dtype()));
}

torch::Tensor FrozenBatchNorm2dImpl::forward_after(torch::nn::Conv2dImpl& conv,
                                                   const torch::Tensor& x) {
  const auto& o = conv.options;
  if (torch::enumtype::get_enum_name(o.padding_mode()) != "kZeros") return forward(conv.forward(x));
  const auto fold = [&](Folded& f) {
    const torch::Tensor scale = weight * (running_var + eps).rsqrt();
    const torch::Tensor shift = bias - running_mean * scale;
    f.weight = conv.weight * scale.view({-1, 1, 1, 1});
    f.bias = conv.bias.defined() ? torch::addcmul(shift, conv.bias, scale) : shift;
  };
  const bool needs_grad =
      torch::GradMode::is_enabled() &&
      (conv.weight.requires_grad() || (conv.bias.defined() && conv.bias.requires_grad()));
  Folded fresh;
  if (needs_grad) {
    fold(fresh);  // in the graph, so not kept
  } else {
    const std::vector<torch::Tensor> sources{conv.weight, conv.bias,    weight,
                                             bias,        running_mean, running_var};
    if (!folded_.sources.matches(sources)) {
      fold(folded_);
      folded_.sources = ops::TensorStamp(sources);
    }
  }
  const Folded& f = needs_grad ? fresh : folded_;
  return F::conv2d(x, f.weight,
                   F::Conv2dFuncOptions()
                       .bias(f.bias)
                       .stride(o.stride())
                       .padding(o.padding())
                       .dilation(o.dilation())
                       .groups(o.groups()));
}

namespace {

// norm(conv(x)), a frozen norm folded into the convolution where the convolution's weights take
// no gradient (inference, frozen stages): a trained one would keep its folded copy for backward,
// 80 MB more at the peak of an R50 training step, for a gain lost in the noise.
torch::Tensor conv_norm(torch::nn::Conv2dImpl& conv, torch::nn::AnyModule& norm,
                        const torch::Tensor& x) {
  auto* frozen = norm.ptr()->as<FrozenBatchNorm2dImpl>();
  if (frozen && !(torch::GradMode::is_enabled() && conv.weight.requires_grad())) {
    return frozen->forward_after(conv, x);
  }
  return norm.forward(conv.forward(x));
}

}  // namespace

ResidualBlockImpl::ResidualBlockImpl(int64_t in_channels, int64_t planes, int64_t stride,
                                     int64_t dilation, bool bottleneck, BackboneNorm norm)
    : bottleneck_(bottleneck) {
  const int64_t out_channels = bottleneck ? planes * 4 : planes;
  const auto add_norm = [&](const char* name, int64_t channels) {
    torch::nn::AnyModule m = make_norm(norm, channels);
    register_module(name, m.ptr());
    return m;
  };
  if (bottleneck) {
    conv1_ = register_module("conv1", make_conv(in_channels, planes, 1, 1));
    bn1_ = add_norm("bn1", planes);
    conv2_ = register_module("conv2", make_conv(planes, planes, 3, stride, dilation));
    bn2_ = add_norm("bn2", planes);
    conv3_ = register_module("conv3", make_conv(planes, out_channels, 1, 1));
    bn3_ = add_norm("bn3", out_channels);
  } else {
    conv1_ = register_module("conv1", make_conv(in_channels, planes, 3, stride, dilation));
    bn1_ = add_norm("bn1", planes);
    conv2_ = register_module("conv2", make_conv(planes, planes, 3, 1, dilation));
    bn2_ = add_norm("bn2", planes);
  }
  if (stride != 1 || in_channels != out_channels) {
    torch::nn::Sequential downsample;
    downsample->push_back(make_conv(in_channels, out_channels, 1, stride));
    downsample->push_back(make_norm(norm, out_channels));
    downsample_ = register_module("downsample", downsample);
  }
}

// ReLUs and the residual add in place, as torchvision's blocks: no norm's backward reads its
// output, so each block keeps one tensor per norm alive instead of two.
torch::Tensor ResidualBlockImpl::forward(const torch::Tensor& x) {
  torch::Tensor out = conv_norm(*conv1_, bn1_, x).relu_();
  out = conv_norm(*conv2_, bn2_, out);
  if (bottleneck_) out = conv_norm(*conv3_, bn3_, out.relu_());
  torch::Tensor identity = x;
  if (downsample_) {
    auto layers = downsample_->begin();  // the convolution and its norm
    identity = conv_norm(*layers[0].get<torch::nn::Conv2d>(), layers[1], x);
  }
  // Without autograd on the CPU in float32, one pass adds and rectifies (ATen's _add_relu_): R50
  // backbone at 800x1216 0.649-0.671 -> 0.618-0.639 s (`aligndetr bench`, three alternating pairs).
  if (!(torch::GradMode::is_enabled() && (out.requires_grad() || identity.requires_grad())) &&
      out.is_cpu() && out.scalar_type() == torch::kFloat &&
      identity.scalar_type() == torch::kFloat) {
    return at::_add_relu_(out, identity);
  }
  return out.add_(identity).relu_();
}

ResNetImpl::ResNetImpl(ResNetOptions options) : options_(std::move(options)) {
  const DepthSpec spec = depth_spec(options_.depth);
  if (options_.freeze_at < 0 || options_.freeze_at > 5) {
    throw util::InputError("ResNet freeze_at must be in 0..5, got " +
                           std::to_string(options_.freeze_at));
  }
  if (options_.out_stages.empty()) throw util::InputError("ResNet out_stages is empty");
  for (size_t i = 0; i < options_.out_stages.size(); ++i) {
    const int s = options_.out_stages[i];
    if (s < 1 || s > 4 || (i > 0 && s <= options_.out_stages[i - 1])) {
      throw util::InputError(
          "ResNet out_stages must be increasing values in 1..4 (layer1..layer4)");
    }
  }

  // Frozen parts keep frozen batch norms: batch statistics of a stage that does not train would
  // only drift.
  const auto norm_of = [&](bool frozen) {
    const bool batch_norm =
        options_.norm == BackboneNorm::kBatchNorm || options_.norm == BackboneNorm::kSyncBatchNorm;
    return frozen && batch_norm ? BackboneNorm::kFrozenBatchNorm : options_.norm;
  };
  conv1_ = register_module("conv1", make_conv(3, 64, 7, 2));
  bn1_ = make_norm(norm_of(options_.freeze_at >= 1), 64);
  register_module("bn1", bn1_.ptr());
  int64_t in_channels = 64;
  int64_t stride_so_far = 4;  // conv1 and the max pool
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t planes = int64_t{64} << stage;
    const bool dilated = options_.dc5 && stage == 3;
    const int64_t first_stride = (stage == 0 || dilated) ? 1 : 2;
    const int64_t dilation = dilated ? 2 : 1;
    torch::nn::Sequential layer;
    for (int64_t b = 0; b < spec.blocks[stage]; ++b) {
      layer->push_back(ResidualBlock(in_channels, planes, b == 0 ? first_stride : 1, dilation,
                                     spec.bottleneck, norm_of(stage + 2 <= options_.freeze_at)));
      in_channels = spec.bottleneck ? planes * 4 : planes;
    }
    stride_so_far *= first_stride;
    layers_.push_back(register_module("layer" + std::to_string(stage + 1), layer));
    stage_channels_.push_back(in_channels);
    stage_strides_.push_back(stride_so_far);
  }

  // detectron2's freeze_at: 1 freezes the stem, k >= 2 also stages res2..res(k), i.e. layer1..
  // layer(k-1). Frozen batch norms have no parameters; group norms do and freeze with the convs.
  if (options_.freeze_at >= 1) {
    for (auto& p : conv1_->parameters()) p.set_requires_grad(false);
    for (auto& p : bn1_.ptr()->parameters()) p.set_requires_grad(false);
  }
  for (int stage = 0; stage + 2 <= options_.freeze_at && stage < 4; ++stage) {
    for (auto& p : layers_[stage]->parameters()) p.set_requires_grad(false);
  }
}

std::vector<torch::Tensor> ResNetImpl::forward(torch::Tensor images) {
  // Channels-last (NHWC) throughout: oneDNN's convolutions take it as it is, where NCHW is
  // reordered to their blocked layout and back at every convolution and its backward, and the
  // transformer's flatten and transpose of a level need no copy. R50 inference at 800x1216: 1.17 s
  // -> 0.96 s (with the one-pass frozen norm); float32 training step, 2 x 320x480: 3.98-4.01 s ->
  // 3.87-3.90 s, the reorders 164 -> 55 ms (ONEDNN_VERBOSE); bf16 training: 2.24-2.40 s -> 1.92 s
  // (`aligndetr bench`, alternating runs). Its weight gradients also sum more alike across batch
  // compositions: two ranks of one image against one process of two, 20 steps, part by 1.5e-7 in
  // the loss where NCHW parted by 2.3e-6 (DataParallel tests).
  images = images.contiguous(torch::MemoryFormat::ChannelsLast);
  torch::Tensor x = conv_norm(*conv1_, bn1_, images).relu_();
  x = F::max_pool2d(x, F::MaxPool2dFuncOptions(3).stride(2).padding(1));
  std::vector<torch::Tensor> outputs;
  const int last = options_.out_stages.back();
  for (int stage = 1; stage <= last; ++stage) {
    x = layers_[stage - 1]->forward(x);
    if (std::find(options_.out_stages.begin(), options_.out_stages.end(), stage) !=
        options_.out_stages.end()) {
      outputs.push_back(x);
    }
  }
  return outputs;
}

std::vector<int64_t> ResNetImpl::out_channels() const {
  std::vector<int64_t> result;
  for (int s : options_.out_stages) result.push_back(stage_channels_[s - 1]);
  return result;
}

std::vector<int64_t> ResNetImpl::out_strides() const {
  std::vector<int64_t> result;
  for (int s : options_.out_stages) result.push_back(stage_strides_[s - 1]);
  return result;
}

}  // namespace aligndetr::model
