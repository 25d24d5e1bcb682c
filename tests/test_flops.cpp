#include <gtest/gtest.h>
#include <torch/torch.h>

#include "aligndetr/model/backbone.h"
#include "aligndetr/model/flops.h"
#include "aligndetr/model/report.h"
#include "aligndetr/ops/attention.h"
#include "aligndetr/ops/linear.h"
#include "support/analytic_flops.h"

namespace aligndetr {
namespace {

TEST(Flops, CountsMatrixProductsAndConvolutionsByHand) {
  torch::NoGradGuard no_grad;
  torch::nn::Linear linear(4, 3);
  const auto x = torch::randn({5, 4});
  EXPECT_EQ(model::count_flops([&] { linear(x); }).total, 5 * 4 * 3);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(3, 8, 3).padding(1));
  const auto img = torch::randn({1, 3, 10, 10});
  EXPECT_EQ(model::count_flops([&] { conv(img); }).total, 8 * 10 * 10 * 3 * 3 * 3);
  const auto a = torch::randn({2, 3, 4}), b = torch::randn({2, 4, 5});
  EXPECT_EQ(model::count_flops([&] { torch::bmm(a, b); }).total, 2 * 3 * 5 * 4);
  EXPECT_EQ(model::count_flops([&] { torch::matmul(a, b); }).total, 2 * 3 * 5 * 4);
  // Element-wise work is free.
  EXPECT_EQ(model::count_flops([&] { (a * 2 + 1).relu(); }).total, 0);
  // The blocked attention's two products, N Lq Lk (E + Ev), and not its inner products again.
  const auto q = torch::randn({6, 10, 4}), k = torch::randn({6, 7, 4}), v = torch::randn({6, 7, 5});
  const auto attention = model::count_flops([&] { ops::blocked_attention(q, k, v, {}, {}, 3, 4); });
  EXPECT_EQ(attention.total, 6 * 10 * 7 * (4 + 5));
  EXPECT_EQ(attention.by_operator.size(), 1u);
  // ops::Linear, whichever route it takes (300 rows at inference: oneDNN's 1x1 convolution where
  // the build has it), is a matrix product of rows x in x out.
  ops::Linear ours(16, 8);
  const auto rows = torch::randn({300, 16});
  const auto product = model::count_flops([&] { ours(rows); });
  EXPECT_EQ(product.total, 300 * 16 * 8);
  ASSERT_EQ(product.by_operator.size(), 1u);
  // Counted under a name bench does not take for a convolution's.
  EXPECT_EQ(product.by_operator.begin()->first.find("conv"), std::string::npos)
      << product.by_operator.begin()->first;
}

TEST(Flops, ObservedResNetEqualsTheAnalyticCount) {
  torch::NoGradGuard no_grad;
  model::ResNetOptions o;
  o.depth = 18;
  model::ResNet net(o);
  net->eval();
  const auto observed = model::count_flops([&] {
                          net->forward(torch::zeros({1, 3, 224, 224}));
                        }).total;
  EXPECT_EQ(observed, testing::resnet_flops(*net, {224, 224}).flops);
}

}  // namespace
}  // namespace aligndetr
