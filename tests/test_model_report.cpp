// Parameter counts per module and the analytic FLOP count of backbone and neck. The ResNet
// reference numbers come from torchvision models with forward hooks summing
// out_h * out_w * weight.numel() over every Conv2d (the same as torchvision's documented 1.81 and
// 4.09 GFLOPS of ResNet-18/50 at 224, less the fc layer).

#include <gtest/gtest.h>

#include <torch/torch.h>

#include "aligndetr/model/backbone.h"
#include "aligndetr/model/neck.h"
#include "aligndetr/model/report.h"
#include "support/analytic_flops.h"
#include "support/model_options.h"

namespace aligndetr {
namespace {

TEST(ModelReport, ParametersPerChild) {
  model::ResNet net(testing::resnet_options(50, 2, false, {2, 3, 4}));
  const auto counts = model::count_parameters(*net);
  ASSERT_EQ(counts.size(), 6u);  // conv1, bn1, layer1..layer4
  EXPECT_EQ(counts[0].name, "conv1");
  EXPECT_EQ(counts[0].trainable, 0);
  EXPECT_EQ(counts[0].frozen, 9408);
  EXPECT_EQ(counts[1].name, "bn1");
  EXPECT_EQ(counts[1].trainable + counts[1].frozen, 0);
  EXPECT_EQ(counts[2].name, "layer1");
  EXPECT_EQ(counts[2].frozen, 212992);
  EXPECT_EQ(counts[2].trainable, 0);
  int64_t total_trainable = 0;
  for (const auto& c : counts) total_trainable += c.trainable;
  EXPECT_EQ(total_trainable, 23454912 - 9408 - 212992);
  EXPECT_EQ(model::count_trainable_parameters(*net), total_trainable);
}

TEST(ModelReport, ConvFlopsAndOutputSize) {
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(8, 16, 3).stride(2).padding(1).groups(2));
  testing::SpatialSize out{};
  // Output ceil(7 / 2) = 4 by floor((11 + 2 - 3) / 2) + 1 = 6; per output pixel 16 * 4 * 9 MACs.
  EXPECT_EQ(testing::conv2d_flops(*conv, {7, 11}, &out), 4 * 6 * 16 * 4 * 9);
  EXPECT_EQ(out, (testing::SpatialSize{4, 6}));
}

TEST(ModelReport, ResNetFlopsMatchTorchvision) {
  struct Case {
    int depth;
    bool dc5;
    testing::SpatialSize image;
    int64_t flops;
  };
  for (const Case& c :
       {Case{18, false, {224, 224}, 1813561344}, Case{18, false, {800, 1333}, 38731801600},
        Case{50, false, {224, 224}, 4087136256}, Case{50, false, {800, 1333}, 87333299200},
        Case{50, true, {800, 1333}, 132749747200}}) {
    model::ResNet net(testing::resnet_options(c.depth, 1, c.dc5, {1, 2, 3, 4}));
    const testing::FlopCount count = testing::resnet_flops(*net, c.image);
    EXPECT_EQ(count.flops, c.flops) << c.depth << (c.dc5 ? " DC5 " : " ") << c.image[0];
    if (c.image[0] == 800 && !c.dc5) {
      EXPECT_EQ(count.out_sizes,
                (std::vector<testing::SpatialSize>{{200, 334}, {100, 167}, {50, 84}, {25, 42}}));
    }
  }
}

TEST(ModelReport, NeckFlopsByHand) {
  model::ResNet net(testing::resnet_options(50, 1, false, {2, 3, 4}));
  model::ChannelMapper neck(testing::channel_mapper_options(net->out_channels(), 256, 1, 32));
  const testing::FlopCount backbone = testing::resnet_flops(*net, {800, 1333});
  ASSERT_EQ(backbone.out_sizes,
            (std::vector<testing::SpatialSize>{{100, 167}, {50, 84}, {25, 42}}));
  const testing::FlopCount count = testing::channel_mapper_flops(*neck, backbone.out_sizes);
  const int64_t expected = int64_t{512} * 256 * 100 * 167 + int64_t{1024} * 256 * 50 * 84 +
                           int64_t{2048} * 256 * 25 * 42 + int64_t{2048} * 256 * 9 * 13 * 21;
  EXPECT_EQ(count.flops, expected);
  EXPECT_EQ(count.out_sizes,
            (std::vector<testing::SpatialSize>{{100, 167}, {50, 84}, {25, 42}, {13, 21}}));
  // The real forward agrees on the level sizes.
  torch::NoGradGuard no_grad;
  model::ResNet small(testing::resnet_options(18, 1, false, {2, 3, 4}));
  model::ChannelMapper small_neck(testing::channel_mapper_options(small->out_channels(), 32, 2, 8));
  const auto levels = small_neck->forward(small->forward(torch::zeros({1, 3, 75, 101})));
  const testing::FlopCount small_count = testing::channel_mapper_flops(
      *small_neck, testing::resnet_flops(*small, {75, 101}).out_sizes);
  ASSERT_EQ(levels.size(), small_count.out_sizes.size());
  for (size_t i = 0; i < levels.size(); ++i) {
    EXPECT_EQ((testing::SpatialSize{levels[i].size(2), levels[i].size(3)}),
              small_count.out_sizes[i])
        << i;
  }
}

}  // namespace
}  // namespace aligndetr
