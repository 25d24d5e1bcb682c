// ResNet backbones, frozen batch norm, the ChannelMapper neck, mask downsampling and the sine
// position embedding: shapes, strides, parameter counts, freezing, and values computed by hand.

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <string>

#include <torch/torch.h>

#include "aligndetr/model/backbone.h"
#include "aligndetr/model/neck.h"
#include "aligndetr/model/position_encoding.h"
#include "aligndetr/ops/autocast.h"
#include "aligndetr/util/error.h"
#include "support/model_options.h"
#include "support/op_calls.h"

namespace aligndetr {
namespace {

int64_t count(const std::vector<torch::Tensor>& tensors, bool trainable_only) {
  int64_t n = 0;
  for (const auto& t : tensors) {
    if (!trainable_only || t.requires_grad()) n += t.numel();
  }
  return n;
}

int64_t frozen_bn_affine(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& item : m.named_buffers(true)) {
    const std::string& name = item.key();
    const bool affine = name.size() > 7 && (name.compare(name.size() - 7, 7, ".weight") == 0 ||
                                            name.compare(name.size() - 5, 5, ".bias") == 0);
    if (affine) n += item.value().numel();
  }
  return n;
}

TEST(FrozenBatchNorm, MatchesTheFormulaByHand) {
  model::FrozenBatchNorm2d bn(2);
  bn->weight.copy_(torch::tensor({2.0f, 0.5f}));
  bn->bias.copy_(torch::tensor({1.0f, -1.0f}));
  bn->running_mean.copy_(torch::tensor({3.0f, -2.0f}));
  bn->running_var.copy_(torch::tensor({4.0f, 0.25f}));
  const torch::Tensor x = torch::tensor({5.0f, 1.0f}).view({1, 2, 1, 1});
  const torch::Tensor y = bn(x);
  // Channel 0: (5 - 3) * 2 / sqrt(4 + 1e-5) + 1; channel 1: (1 + 2) * 0.5 / sqrt(0.25 + 1e-5) - 1.
  EXPECT_NEAR(y[0][0][0][0].item<double>(), 2.0 * 2.0 / std::sqrt(4.0 + 1e-5) + 1.0, 1e-6);
  EXPECT_NEAR(y[0][1][0][0].item<double>(), 3.0 * 0.5 / std::sqrt(0.25 + 1e-5) - 1.0, 1e-6);
  EXPECT_TRUE(bn->parameters().empty());
  EXPECT_EQ(bn->buffers().size(), 4u);
}

// forward_after(conv, x) is forward(conv(x)): with and without a conv bias, through stride,
// padding and dilation, and so are the gradients of x and of the conv's weights.
TEST(FrozenBatchNorm, FoldedIntoItsConvolutionGivesTheNormOfTheConvolution) {
  torch::manual_seed(4);
  for (const bool with_bias : {false, true}) {
    torch::nn::Conv2d conv(
        torch::nn::Conv2dOptions(3, 5, 3).stride(2).padding(2).dilation(2).bias(with_bias));
    model::FrozenBatchNorm2d bn(5);
    bn->weight.uniform_(0.5, 2.0);
    bn->bias.normal_();
    bn->running_mean.normal_();
    bn->running_var.uniform_(0.1, 3.0);
    const auto x = torch::randn({2, 3, 11, 9}, torch::requires_grad());
    const auto folded = bn->forward_after(*conv, x);
    const auto plain = bn(conv(x));
    ASSERT_EQ(folded.sizes(), plain.sizes());
    EXPECT_LT((folded - plain).abs().max().item<float>(), 1e-5) << with_bias;
    const auto g = torch::randn(plain.sizes());
    const auto gf = torch::autograd::grad({folded}, {x, conv->weight}, {g});
    const auto gp = torch::autograd::grad({plain}, {x, conv->weight}, {g});
    EXPECT_LT((gf[0] - gp[0]).abs().max().item<float>(), 1e-5) << with_bias;
    EXPECT_LT((gf[1] - gp[1]).abs().max().item<float>(), 1e-4) << with_bias;
  }
}

// The unfolded frozen norm's one pass.
int addcmul_calls(const std::function<void()>& work) {
  return testing::calls_of("aten::addcmul", work);
}

// Without gradients the folded weights (three products: scale, shift, weights) are made once and
// kept, and made again when the convolution's weights or bias or the norm's statistics change in
// place or are replaced.
TEST(FrozenBatchNorm, FoldedWeightsAreKeptUntilTheirSourcesChange) {
  torch::manual_seed(6);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 4, 3).padding(1).bias(true));
  model::FrozenBatchNorm2d bn(4);
  bn->weight.uniform_(0.5, 2.0);
  bn->running_var.uniform_(0.1, 3.0);
  const auto x = torch::randn({1, 3, 6, 5});
  torch::NoGradGuard no_grad;
  const auto expect_unfolded = [&](const char* after) {
    torch::Tensor folded;
    EXPECT_EQ(testing::calls_of("aten::mul", [&] { folded = bn->forward_after(*conv, x); }), 3)
        << after;
    EXPECT_LT((folded - bn(conv(x))).abs().max().item<float>(), 1e-5) << after;
    EXPECT_EQ(testing::calls_of("aten::mul", [&] { folded = bn->forward_after(*conv, x); }), 0)
        << after;
    EXPECT_LT((folded - bn(conv(x))).abs().max().item<float>(), 1e-5) << after;
  };
  expect_unfolded("first call");
  conv->weight.mul_(-2);
  expect_unfolded("weights changed in place");
  conv->bias.add_(1);
  expect_unfolded("bias changed in place");
  bn->running_var.mul_(4);
  expect_unfolded("variance changed in place");
  bn->running_mean.add_(1);
  expect_unfolded("mean changed in place");
  conv->weight.set_data(torch::randn_like(conv->weight));
  expect_unfolded("weights replaced");
}

// At inference every frozen norm runs inside its convolution, with the unfolded result; in
// training so do those of the frozen stem, while the trained convolutions keep theirs apart.
TEST(ResNet, FrozenNormsFoldIntoConvolutionsThatTakeNoGradient) {
  torch::manual_seed(5);
  model::ResNetOptions o;
  o.depth = 18;
  o.freeze_at = 1;  // the stem frozen, its norm folded in training too
  model::ResNet net(o);
  for (auto& b : net->buffers()) {
    if (b.dim() == 1) b.uniform_(0.5, 1.5);  // norms that are no identity
  }
  const auto images = torch::randn({1, 3, 64, 96});
  net->eval();
  std::vector<torch::Tensor> folded;
  {
    torch::NoGradGuard no_grad;
    EXPECT_EQ(addcmul_calls([&] { folded = net->forward(images); }), 0);
  }
  net->train();
  std::vector<torch::Tensor> trained;
  // ResNet-18: 20 norms, the stem's folded.
  EXPECT_EQ(addcmul_calls([&] { trained = net->forward(images); }), 19);
  ASSERT_EQ(folded.size(), trained.size());
  for (size_t i = 0; i < folded.size(); ++i) {
    const double scale = trained[i].abs().max().item<double>();
    EXPECT_LT((folded[i] - trained[i]).abs().max().item<double>(), 1e-5 * scale) << i;
  }
}

struct DepthCase {
  int depth;
  std::vector<int64_t> channels;
  int64_t parameters;  // conv weights: torchvision's count without fc and BatchNorm affines
  int64_t bn_affine;   // torchvision's BatchNorm weight + bias, buffers here
};

// How GoogleTest (and so ctest's test list) prints a case.
void PrintTo(const DepthCase& c, std::ostream* os) {
  *os << "ResNet-" << c.depth;
}

class ResNetDepths : public ::testing::TestWithParam<DepthCase> {};

TEST_P(ResNetDepths, ShapesStridesAndParameterCounts) {
  const DepthCase& c = GetParam();
  model::ResNet net(testing::resnet_options(c.depth, 1, false, {1, 2, 3, 4}));
  EXPECT_EQ(net->out_channels(), c.channels);
  EXPECT_EQ(net->out_strides(), (std::vector<int64_t>{4, 8, 16, 32}));
  EXPECT_EQ(count(net->parameters(), false), c.parameters);
  EXPECT_EQ(count(net->parameters(), true), c.parameters - 64 * 3 * 7 * 7);
  // Parameters plus the frozen affine terms give torchvision's parameter count without fc.
  EXPECT_EQ(count(net->parameters(), false) + frozen_bn_affine(*net), c.parameters + c.bn_affine);
  EXPECT_EQ(frozen_bn_affine(*net), c.bn_affine);

  torch::NoGradGuard no_grad;
  const auto features = net->forward(torch::randn({2, 3, 64, 96}));
  ASSERT_EQ(features.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    const int64_t stride = net->out_strides()[i];
    EXPECT_EQ(features[i].sizes(),
              (std::vector<int64_t>{2, c.channels[i], 64 / stride, 96 / stride}));
  }
}

INSTANTIATE_TEST_SUITE_P(All, ResNetDepths,
                         ::testing::Values(DepthCase{18, {64, 128, 256, 512}, 11166912, 9600},
                                           DepthCase{34, {64, 128, 256, 512}, 21267648, 17024},
                                           DepthCase{50, {256, 512, 1024, 2048}, 23454912, 53120},
                                           DepthCase{
                                               101, {256, 512, 1024, 2048}, 42394816, 105344}),
                         [](const auto& info) { return "R" + std::to_string(info.param.depth); });

TEST(ResNet, TorchvisionNames) {
  model::ResNet net(testing::resnet_options(50, 1, false, {4}));
  const auto params = net->named_parameters(true);
  const auto buffers = net->named_buffers(true);
  for (const char* name : {"conv1.weight", "layer1.0.conv1.weight", "layer1.0.conv3.weight",
                           "layer1.0.downsample.0.weight", "layer4.2.conv2.weight"}) {
    EXPECT_TRUE(params.contains(name)) << name;
  }
  for (const char* name : {"bn1.running_mean", "layer1.0.bn3.weight",
                           "layer1.0.downsample.1.running_var", "layer4.2.bn2.bias"}) {
    EXPECT_TRUE(buffers.contains(name)) << name;
  }
  EXPECT_FALSE(params.contains("layer1.1.downsample.0.weight"));
  // torchvision v1.5: the stride sits on the 3x3 conv.
  auto* conv1 = net->named_modules()["layer2.0.conv1"]->as<torch::nn::Conv2dImpl>();
  auto* conv2 = net->named_modules()["layer2.0.conv2"]->as<torch::nn::Conv2dImpl>();
  ASSERT_TRUE(conv1 && conv2);
  EXPECT_EQ(conv1->options.stride()->at(0), 1);
  EXPECT_EQ(conv2->options.stride()->at(0), 2);
}

TEST(ResNet, Dc5DilatesTheLastStage) {
  for (int depth : {18, 50}) {
    model::ResNet net(testing::resnet_options(depth, 1, true, {3, 4}));
    EXPECT_EQ(net->out_strides(), (std::vector<int64_t>{16, 16})) << depth;
    torch::NoGradGuard no_grad;
    const auto features = net->forward(torch::randn({1, 3, 64, 64}));
    EXPECT_EQ(features[1].size(2), 4) << depth;
    EXPECT_EQ(features[1].size(3), 4) << depth;
    // detectron2's res5_dilation: every block of the stage is dilated, the first included.
    auto* conv = net->named_modules()[depth == 50 ? "layer4.0.conv2" : "layer4.0.conv1"]
                     ->as<torch::nn::Conv2dImpl>();
    ASSERT_TRUE(conv);
    EXPECT_EQ(conv->options.dilation()->at(0), 2);
    EXPECT_EQ(conv->options.stride()->at(0), 1);
  }
}

// The feature maps' layout says which the convolutions ran in: channels-last in training, under
// autocast and at inference, where NCHW costs oneDNN a reorder per convolution.
TEST(ResNet, ChannelsLastInTrainingUnderAutocastAndAtInference) {
  model::ResNet net(testing::resnet_options(18, 1, false, {2, 3}));
  const auto x = torch::randn({2, 3, 64, 64});
  const auto layouts = [&] {
    std::vector<bool> channels_last;
    for (const auto& f : net->forward(x)) {
      EXPECT_TRUE(f.is_contiguous() != f.is_contiguous(torch::MemoryFormat::ChannelsLast))
          << "neither or both layouts: " << f.sizes() << " " << f.strides();
      channels_last.push_back(f.is_contiguous(torch::MemoryFormat::ChannelsLast));
    }
    return channels_last;
  };
  net->train();
  EXPECT_EQ(layouts(), (std::vector<bool>{true, true}));
  {
    const ops::AutocastGuard autocast(torch::kCPU, torch::kBFloat16);
    const auto features = net->forward(x);
    EXPECT_EQ(features[0].scalar_type(), torch::kBFloat16);
    EXPECT_EQ(layouts(), (std::vector<bool>{true, true}));
  }
  net->eval();
  torch::NoGradGuard no_grad;
  EXPECT_EQ(layouts(), (std::vector<bool>{true, true}));
}

// Without autograd each block adds its shortcut and rectifies in one pass (ATen's _add_relu_), to
// the values of the two in-place passes autograd needs.
TEST(ResNet, ResidualAddAndReluAreOnePassWithoutAutograd) {
  torch::manual_seed(0);
  // Frozen throughout, so that both paths fold the norms alike; the input takes the gradient.
  model::ResNet net(testing::resnet_options(18, 5, false, {4}));
  net->eval();
  const auto x = torch::randn({1, 3, 64, 64}, torch::requires_grad());
  const auto grad_path = net->forward(x)[0].detach();
  torch::Tensor fused;
  {
    torch::NoGradGuard no_grad;
    EXPECT_EQ(testing::calls_of("aten::_add_relu_", [&] { fused = net->forward(x)[0]; }), 8);
  }
  EXPECT_TRUE(torch::equal(fused, grad_path));
  EXPECT_EQ(testing::calls_of("aten::_add_relu_", [&] { (void)net->forward(x); }), 0);
}

TEST(ResNet, OutStagesSelectAndOrder) {
  model::ResNet net(testing::resnet_options(18, 0, false, {2, 4}));
  EXPECT_EQ(net->out_channels(), (std::vector<int64_t>{128, 512}));
  EXPECT_EQ(net->out_strides(), (std::vector<int64_t>{8, 32}));
  torch::NoGradGuard no_grad;
  EXPECT_EQ(net->forward(torch::randn({1, 3, 32, 32})).size(), 2u);
  EXPECT_THROW(model::ResNet(testing::resnet_options(18, 1, false, {3, 2})), util::InputError);
  EXPECT_THROW(model::ResNet(testing::resnet_options(18, 1, false, {5})), util::InputError);
  EXPECT_THROW(model::ResNet(testing::resnet_options(26, 1, false, {4})), util::InputError);
}

TEST(ResNet, FreezeAtLevels) {
  const auto frozen_names = [](int freeze_at) {
    model::ResNet net(testing::resnet_options(18, freeze_at, false, {4}));
    std::set<std::string> prefixes;
    for (const auto& item : net->named_parameters(true)) {
      if (!item.value().requires_grad()) {
        prefixes.insert(item.key().substr(0, item.key().find('.')));
      }
    }
    return prefixes;
  };
  EXPECT_EQ(frozen_names(0), (std::set<std::string>{}));
  EXPECT_EQ(frozen_names(1), (std::set<std::string>{"conv1"}));
  EXPECT_EQ(frozen_names(2), (std::set<std::string>{"conv1", "layer1"}));
  EXPECT_EQ(frozen_names(3), (std::set<std::string>{"conv1", "layer1", "layer2"}));
  EXPECT_EQ(frozen_names(5),
            (std::set<std::string>{"conv1", "layer1", "layer2", "layer3", "layer4"}));
}

TEST(ResNet, FrozenPartsStayFrozenAfterAnOptimizerStep) {
  torch::manual_seed(0);
  model::ResNet net(testing::resnet_options(18, 2, false, {3, 4}));
  net->train();
  std::map<std::string, torch::Tensor> before;
  for (const auto& item : net->named_parameters(true)) before[item.key()] = item.value().clone();
  for (const auto& item : net->named_buffers(true)) before[item.key()] = item.value().clone();

  std::vector<torch::Tensor> trainable;
  for (const auto& p : net->parameters()) {
    if (p.requires_grad()) trainable.push_back(p);
  }
  torch::optim::SGD sgd(trainable, torch::optim::SGDOptions(0.1));
  const auto features = net->forward(torch::randn({2, 3, 64, 64}));
  (features[0].square().mean() + features[1].square().mean()).backward();
  sgd.step();

  for (const auto& item : net->named_parameters(true)) {
    const bool frozen = item.key().rfind("conv1.", 0) == 0 || item.key().rfind("layer1.", 0) == 0;
    EXPECT_EQ(item.value().requires_grad(), !frozen) << item.key();
    EXPECT_EQ(torch::equal(item.value(), before[item.key()]), frozen) << item.key();
    if (frozen) {
      EXPECT_FALSE(item.value().grad().defined()) << item.key();
    }
  }
  for (const auto& item : net->named_buffers(true)) {
    EXPECT_TRUE(torch::equal(item.value(), before[item.key()])) << item.key();
  }
}

TEST(ResNet, LearnedNormsForTrainingFromScratch) {
  torch::manual_seed(0);
  model::ResNetOptions o{18, 2, false, {3, 4}};
  o.norm = model::BackboneNorm::kBatchNorm;
  model::ResNet bn(o);
  const auto params = bn->named_parameters(true);
  const auto buffers = bn->named_buffers(true);
  // Trainable stages: torch BatchNorm2d under torchvision's names; frozen ones (stem, layer1)
  // keep frozen batch norms, whose affine terms are buffers.
  EXPECT_TRUE(params.contains("layer2.0.bn1.weight"));
  EXPECT_TRUE(params.contains("layer2.0.downsample.1.bias"));
  EXPECT_TRUE(buffers.contains("layer2.0.bn1.num_batches_tracked"));
  EXPECT_FALSE(params.contains("bn1.weight"));
  EXPECT_FALSE(params.contains("layer1.0.bn1.weight"));
  EXPECT_TRUE(buffers.contains("layer1.0.bn1.running_var"));
  // Training normalises with batch statistics and updates the running ones.
  bn->train();
  const auto before = buffers["layer3.1.bn2.running_mean"].clone();
  bn->forward(torch::randn({2, 3, 64, 64}) * 3 + 1);
  EXPECT_FALSE(torch::equal(before, buffers["layer3.1.bn2.running_mean"]));
  EXPECT_EQ(buffers["layer3.1.bn2.num_batches_tracked"].item<int64_t>(), 1);

  o.norm = model::BackboneNorm::kGroupNorm;
  o.freeze_at = 1;
  model::ResNet gn(o);
  const auto gn_params = gn->named_parameters(true);
  EXPECT_TRUE(gn_params.contains("layer1.0.bn2.weight"));
  EXPECT_EQ(gn_params["layer1.0.bn2.weight"].numel(), 64);
  // Group norms of a frozen stem freeze with its conv.
  ASSERT_TRUE(gn_params.contains("bn1.weight"));
  EXPECT_FALSE(gn_params["bn1.weight"].requires_grad());
  EXPECT_TRUE(gn_params["layer1.0.bn2.weight"].requires_grad());
  EXPECT_TRUE(gn->named_buffers(true).is_empty());
  // Each group of 2 channels comes out with zero mean and unit variance at init.
  const auto x = torch::randn({1, 64, 8, 8}) * 5 + 2;
  const auto stem_norm = gn->named_modules()["layer1.0.bn1"];
  const auto y = stem_norm->as<torch::nn::GroupNorm>()->forward(x).view({1, 32, -1});
  EXPECT_LT(y.mean(-1).abs().max().item<double>(), 1e-5);
  EXPECT_NEAR(y.var(-1, false).mean().item<double>(), 1.0, 1e-3);
}

TEST(ChannelMapper, LevelsNamesAndInit) {
  model::ChannelMapper neck(testing::channel_mapper_options({512, 1024, 2048}, 64, 2, 32));
  const auto params = neck->named_parameters(true);
  for (const char* name :
       {"convs.0.conv.weight", "convs.0.conv.bias", "convs.0.norm.weight", "convs.2.norm.bias",
        "extra_convs.0.conv.weight", "extra_convs.0.norm.weight", "extra_convs.1.conv.weight"}) {
    EXPECT_TRUE(params.contains(name)) << name;
  }
  // The first extra level reads the raw last backbone output, the next one the previous level.
  EXPECT_EQ(params["extra_convs.0.conv.weight"].sizes(), (std::vector<int64_t>{64, 2048, 3, 3}));
  EXPECT_EQ(params["extra_convs.1.conv.weight"].sizes(), (std::vector<int64_t>{64, 64, 3, 3}));
  EXPECT_EQ(params["convs.1.conv.weight"].sizes(), (std::vector<int64_t>{64, 1024, 1, 1}));
  EXPECT_TRUE(torch::equal(params["convs.1.conv.bias"], torch::zeros({64})));
  // Xavier uniform: bound sqrt(6 / (fan_in + fan_out)).
  const double bound = std::sqrt(6.0 / (1024 + 64));
  EXPECT_LE(params["convs.1.conv.weight"].abs().max().item<double>(), bound);
  EXPECT_GT(params["convs.1.conv.weight"].abs().max().item<double>(), 0.9 * bound);

  torch::NoGradGuard no_grad;
  const auto out = neck->forward({torch::randn({2, 512, 16, 20}), torch::randn({2, 1024, 8, 10}),
                                  torch::randn({2, 2048, 4, 5})});
  ASSERT_EQ(out.size(), 5u);
  const std::vector<std::vector<int64_t>> shapes = {
      {2, 64, 16, 20}, {2, 64, 8, 10}, {2, 64, 4, 5}, {2, 64, 2, 3}, {2, 64, 1, 2}};
  for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i].sizes(), shapes[i]) << i;
  // GroupNorm with unit weight and zero bias: every group of 2 channels has mean 0.
  const torch::Tensor group_means = out[0].view({2, 32, -1}).mean(-1);
  EXPECT_LT(group_means.abs().max().item<double>(), 1e-4);

  EXPECT_THROW(neck->forward({torch::randn({2, 512, 16, 20})}), util::InputError);
  EXPECT_THROW(model::ChannelMapper(testing::channel_mapper_options({512}, 100, 1, 32)),
               util::InputError);
}

TEST(MaskDownsample, NearestAsDetrex) {
  // Image 0: valid 5 columns of 8 and 3 rows of 4; image 1: all valid.
  torch::Tensor mask = torch::ones({2, 4, 8}, torch::kBool);
  mask[0].index_put_({torch::indexing::Slice(0, 3), torch::indexing::Slice(0, 5)}, false);
  mask[1].fill_(false);
  const torch::Tensor m = model::downsample_mask(mask, 2, 4);
  // Nearest picks source rows 0, 2 and columns 0, 2, 4, 6.
  const torch::Tensor expected =
      torch::tensor({false, false, false, true, false, false, false, true}).view({2, 4});
  EXPECT_EQ(m.dtype(), torch::kBool);
  EXPECT_TRUE(torch::equal(m[0], expected));
  EXPECT_FALSE(m[1].any().item<bool>());
  const auto masks =
      model::downsample_masks(mask, {torch::zeros({2, 7, 4, 8}), torch::zeros({2, 7, 1, 3})});
  ASSERT_EQ(masks.size(), 2u);
  EXPECT_TRUE(torch::equal(masks[0], mask));
  // Size 1x3 from 4x8: row 0, columns floor(0 * 8/3), floor(1 * 8/3) = 2, floor(2 * 8/3) = 5.
  EXPECT_TRUE(torch::equal(masks[1][0], torch::tensor({false, false, true}).view({1, 3})));
}

TEST(MaskDownsample, BoxesOnThePaddedCanvasBecomeRelativeToTheValidRegion) {
  // Image 0: 4 of 8 columns and 2 of 4 rows valid, so x and width double and so do y and
  // height; image 1: all valid, unchanged.
  torch::Tensor mask = torch::ones({2, 4, 8}, torch::kBool);
  mask[0].index_put_({torch::indexing::Slice(0, 2), torch::indexing::Slice(0, 4)}, false);
  mask[1].fill_(false);
  const auto boxes =
      torch::tensor({0.25f, 0.2f, 0.1f, 0.3f, 0.5f, 0.5f, 0.2f, 0.4f}).view({2, 1, 4});
  const auto out = model::boxes_relative_to_valid_region(boxes, mask);
  EXPECT_TRUE(torch::allclose(out[0][0], torch::tensor({0.5f, 0.4f, 0.2f, 0.6f})));
  EXPECT_TRUE(torch::equal(out[1], boxes[1]));
}

TEST(PositionEmbeddingSine, ValuesByHand) {
  // One image of 2x3 with the last column padded: valid widths 2, heights 2.
  torch::Tensor mask = torch::zeros({1, 2, 3}, torch::kBool);
  mask[0][0][2] = true;
  mask[0][1][2] = true;
  model::PositionEmbeddingSine pe([] {
    model::PositionEmbeddingSineOptions o;
    o.num_pos_feats = 4;
    o.temperature_h = 10000.0;
    o.temperature_w = 20.0;
    return o;
  }());
  const torch::Tensor pos = pe(mask);
  ASSERT_EQ(pos.sizes(), (std::vector<int64_t>{1, 8, 2, 3}));
  // Channels-last: a level's flatten and transpose to tokens x channels is a view.
  EXPECT_TRUE(pos.is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(pos.flatten(2).transpose(1, 2).is_contiguous());
  const auto expect_at = [&](int64_t row, int64_t col, double y, double x, int first_channel) {
    // Channels 0..3: y with temperature 10000: sin(y), cos(y), sin(y / 100), cos(y / 100);
    // channels 4..7: x with temperature 20: sin(x), cos(x), sin(x / sqrt(20)), cos(...).
    const double ty = 10000.0, tx = 20.0;
    const double want[8] = {
        std::sin(y), std::cos(y), std::sin(y / std::pow(ty, 0.5)), std::cos(y / std::pow(ty, 0.5)),
        std::sin(x), std::cos(x), std::sin(x / std::pow(tx, 0.5)), std::cos(x / std::pow(tx, 0.5))};
    for (int c = first_channel; c < 8; ++c) {
      EXPECT_NEAR(pos[0][c][row][col].item<double>(), want[c], 1e-5)
          << "channel " << c << " at " << row << "," << col;
    }
  };
  const double s = 2 * M_PI, eps = 1e-6;
  // Cumulative counts: y = row + 1 over a last of 2; x = col + 1 over a last of 2.
  expect_at(0, 0, 0.5 / (2 + eps) * s, 0.5 / (2 + eps) * s, 0);
  expect_at(1, 1, 1.5 / (2 + eps) * s, 1.5 / (2 + eps) * s, 0);
  // On the padded column x keeps the count of 2 (y there counts no valid row: a large negative
  // value, as in detrex, ignored by the attention masks).
  expect_at(1, 2, 0.0, 1.5 / (2 + eps) * s, 4);

  // No offset (DAB-DETR, official DINO): the last valid position is at 2 pi.
  model::PositionEmbeddingSineOptions dab_options;
  dab_options.num_pos_feats = 4;
  dab_options.temperature_h = dab_options.temperature_w = 20.0;
  dab_options.offset = 0.0;
  model::PositionEmbeddingSine dab(dab_options);
  const torch::Tensor p2 = dab(mask);
  EXPECT_NEAR(p2[0][4][1][1].item<double>(), std::sin(2.0 / (2 + eps) * s), 1e-5);
  EXPECT_NEAR(p2[0][2][1][0].item<double>(), std::sin(2.0 / (2 + eps) * s / std::sqrt(20.0)), 1e-5);
  EXPECT_EQ(p2.dtype(), torch::kFloat);
}

TEST(PositionEmbeddingSine, DefaultsAndUnnormalized) {
  const model::PositionEmbeddingSineOptions defaults;
  EXPECT_EQ(defaults.num_pos_feats, 128);
  EXPECT_EQ(defaults.temperature_h, 10000.0);
  EXPECT_EQ(defaults.offset, -0.5);
  EXPECT_TRUE(defaults.normalize);
  model::PositionEmbeddingSineOptions raw;
  raw.num_pos_feats = 2;
  raw.normalize = false;
  raw.temperature_h = 20.0;
  raw.temperature_w = 20.0;
  model::PositionEmbeddingSine pe(raw);
  const torch::Tensor pos = pe(torch::zeros({1, 3, 2}, torch::kBool));
  // Unnormalized: the raw counts, y = 3 at the last row, x = 2 at the last column.
  EXPECT_NEAR(pos[0][0][2][1].item<double>(), std::sin(3.0), 1e-6);
  EXPECT_NEAR(pos[0][1][2][1].item<double>(), std::cos(3.0), 1e-6);
  EXPECT_NEAR(pos[0][2][2][1].item<double>(), std::sin(2.0), 1e-6);
  model::PositionEmbeddingSineOptions odd;
  odd.num_pos_feats = 3;
  EXPECT_THROW(model::PositionEmbeddingSine{odd}, util::InputError);
}

}  // namespace
}  // namespace aligndetr
