#include <gtest/gtest.h>
#include <torch/torch.h>

#include "aligndetr/engine/config.h"
#include "aligndetr/engine/model_config.h"
#include "aligndetr/model/flops.h"
#include "aligndetr/model/layers.h"
#include "aligndetr/ops/autocast.h"
#include "aligndetr/ops/ffn.h"

namespace aligndetr {
namespace {

namespace F = torch::nn::functional;

// The definition ops::ffn must reproduce: two linears and a ReLU, through autograd.
torch::Tensor layered(const torch::Tensor& x, const torch::Tensor& w1, const torch::Tensor& b1,
                      const torch::Tensor& w2, const torch::Tensor& b2) {
  return F::linear(torch::relu(F::linear(x, w1, b1)), w2, b2);
}

// The node under the output's view: the recomputing function, or whatever autograd recorded.
std::string producer(const torch::Tensor& y) {
  const auto& edges = y.grad_fn()->next_edges();
  return edges.empty() || !edges[0].function ? "" : edges[0].function->name();
}

TEST(RecomputedFFN, EqualsTheLayersWithEveryGradientInDouble) {
  torch::manual_seed(0);
  const auto opts = torch::TensorOptions().dtype(torch::kDouble).requires_grad(true);
  // 2 x 5 = 10 rows in blocks of 3: three full blocks and one of one row.
  const auto x = torch::randn({2, 5, 4}, opts);
  const auto w1 = torch::randn({6, 4}, opts), b1 = torch::randn({6}, opts);
  const auto w2 = torch::randn({3, 6}, opts), b2 = torch::randn({3}, opts);
  const auto y = ops::ffn(x, w1, b1, w2, b2, 3);
  const auto expect = layered(x, w1, b1, w2, b2);
  ASSERT_EQ(y.sizes(), torch::IntArrayRef({2, 5, 3}));
  EXPECT_LT((y - expect).abs().max().item<double>(), 1e-12);
  // Some hidden units are off for some rows, so the ReLU's gradient mask is exercised.
  const auto h = F::linear(x, w1, b1);
  ASSERT_GT((h <= 0).sum().item<int64_t>(), 0);
  ASSERT_GT((h > 0).sum().item<int64_t>(), 0);
  const auto g = torch::randn({2, 5, 3}, torch::kDouble);
  const auto grads = torch::autograd::grad({y}, {x, w1, b1, w2, b2}, {g});
  const auto expect_grads = torch::autograd::grad({expect}, {x, w1, b1, w2, b2}, {g});
  for (size_t i = 0; i < grads.size(); ++i) {
    EXPECT_LT((grads[i] - expect_grads[i]).abs().max().item<double>(), 1e-12) << i;
  }
}

TEST(RecomputedFFN, PassesLibTorchsGradientCheck) {
  torch::manual_seed(1);
  const auto opts = torch::TensorOptions().dtype(torch::kDouble).requires_grad(true);
  const auto x = torch::randn({7, 3}, opts);
  const auto w1 = torch::randn({5, 3}, opts), b1 = torch::randn({5}, opts);
  const auto w2 = torch::randn({2, 5}, opts), b2 = torch::randn({2}, opts);
  const double eps = 1e-6;
  const auto g = torch::randn({7, 2}, torch::kDouble);
  const auto analytic = torch::autograd::grad({ops::ffn(x, w1, b1, w2, b2, 2)}, {x, w1}, {g});
  // Central differences of <g, ffn> in a few coordinates of x and w1.
  torch::NoGradGuard no_grad;
  const auto loss = [&] { return (ops::ffn(x, w1, b1, w2, b2, 2) * g).sum().item<double>(); };
  for (const auto& [t, grad] : {std::pair{x, analytic[0]}, std::pair{w1, analytic[1]}}) {
    for (int64_t i = 0; i < t.numel(); i += 4) {
      auto flat = t.view(-1);
      const double keep = flat[i].item<double>();
      flat[i] = keep + eps;
      const double up = loss();
      flat[i] = keep - eps;
      const double down = loss();
      flat[i] = keep;
      EXPECT_NEAR(grad.view(-1)[i].item<double>(), (up - down) / (2 * eps), 1e-6) << i;
    }
  }
}

TEST(RecomputedFFN, BackwardIsOneNodeWithoutAProductOrReluOfItsOwn) {
  torch::manual_seed(2);
  const auto x = torch::randn({64, 8}, torch::requires_grad());
  const auto w1 = torch::randn({32, 8}, torch::requires_grad());
  const auto b1 = torch::zeros({32}, torch::requires_grad());
  const auto w2 = torch::randn({8, 32}, torch::requires_grad());
  const auto b2 = torch::zeros({8}, torch::requires_grad());
  const auto y = ops::ffn(x, w1, b1, w2, b2);
  // Under the view of [rows, D'] as x's shape, one node whose inputs are the five tensors.
  ASSERT_TRUE(y.grad_fn());
  ASSERT_EQ(y.grad_fn()->next_edges().size(), 1u);
  EXPECT_NE(producer(y).find("RecomputedFFN"), std::string::npos) << producer(y);
  EXPECT_EQ(y.grad_fn()->next_edges()[0].function->next_edges().size(), 5u);
}

TEST(RecomputedFFN, TheModuleUsesItInTrainingWhenAskedAndEqualsItsInference) {
  torch::manual_seed(3);
  model::FFN ffn(8, 32, /*prelu=*/false, /*recompute=*/true);
  const auto x = torch::randn({2, 5, 8});
  torch::Tensor inference;
  {
    torch::NoGradGuard no_grad;
    inference = ffn(x);
  }
  const auto training = ffn(x);
  EXPECT_NE(producer(training).find("RecomputedFFN"), std::string::npos) << producer(training);
  EXPECT_LT((training - inference).abs().max().item<float>(), 1e-5);
  training.sum().backward();
  for (const auto& p : ffn->parameters()) EXPECT_TRUE(p.grad().defined());
  // Not asked: autograd's own graph, the hidden activation kept.
  model::FFN kept(8, 32);
  EXPECT_EQ(producer(kept(x)), "AddmmBackward0");
  EXPECT_THROW(model::FFN(8, 32, /*prelu=*/true, /*recompute=*/true), c10::Error);
}

TEST(RecomputedFFN, TheDinoConfigTurnsItOn) {
  auto config = engine::Config::load(std::string(ALIGNDETR_SOURCE_DIR) +
                                     "/configs/align_dino_r50_4scale_12ep.yaml");
  EXPECT_FALSE(engine::dino_options(config).transformer.ffn_recompute);
  config.set("model.transformer.ffn_recompute=true");
  EXPECT_TRUE(engine::dino_options(config).transformer.ffn_recompute);
}

TEST(RecomputedFFN, UnderBf16AutocastItRunsInBf16WithFloat32Gradients) {
  torch::manual_seed(4);
  model::FFN ffn(8, 32, /*prelu=*/false, /*recompute=*/true);
  const auto x = torch::randn({6, 8}, torch::requires_grad());
  torch::Tensor y;
  {
    const ops::AutocastGuard autocast(torch::kCPU, torch::kBFloat16);
    y = ffn(x);
  }
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);  // as autocast's linear would give
  torch::Tensor reference;
  {
    torch::NoGradGuard no_grad;
    reference = ffn(x);
  }
  EXPECT_LT((y.to(torch::kFloat) - reference).abs().max().item<float>(), 0.1);
  y.to(torch::kFloat).sum().backward();
  EXPECT_EQ(x.grad().scalar_type(), torch::kFloat);
  for (const auto& p : ffn->parameters()) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_EQ(p.grad().scalar_type(), torch::kFloat);
  }
}

// Summed block by block in bfloat16, the weight gradients of many small blocks drift: each
// addition is rounded to 8 bits. They are summed in float32 and rounded once.
TEST(RecomputedFFN, Bf16GradientsSumTheBlocksInFloat32) {
  torch::manual_seed(5);
  const auto bf16 = torch::TensorOptions().dtype(torch::kBFloat16);
  const auto x = torch::rand({2048, 8}, bf16), w1 = torch::rand({16, 8}, bf16) * 0.1;
  const auto b1 = torch::full({16}, 0.1, bf16), w2 = torch::rand({4, 16}, bf16) * 0.1;
  const auto b2 = torch::zeros({4}, bf16);
  std::vector<torch::Tensor> leaves;
  for (const auto& t : {x, w1, b1, w2, b2}) leaves.push_back(t.clone().requires_grad_(true));
  const auto gy = torch::ones({2048, 4}, bf16);
  const auto grads = torch::autograd::grad(
      {ops::ffn(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], 4)}, {leaves[1]}, {gy});
  std::vector<torch::Tensor> exact;
  for (const auto& t : {x, w1, b1, w2, b2}) {
    exact.push_back(t.to(torch::kDouble).requires_grad_(true));
  }
  const auto expect =
      torch::autograd::grad({layered(exact[0], exact[1], exact[2], exact[3], exact[4])}, {exact[1]},
                            {gy.to(torch::kDouble)});
  const auto error = (grads[0].to(torch::kDouble) - expect[0]).abs().max().item<double>();
  EXPECT_LT(error, 1e-2 * expect[0].abs().max().item<double>());
}

TEST(RecomputedFFN, TheFlopCountSeesItsTwoProducts) {
  const auto x = torch::randn({10, 4}, torch::requires_grad());
  const auto w1 = torch::randn({6, 4}), b1 = torch::zeros({6});
  const auto w2 = torch::randn({3, 6}), b2 = torch::zeros({3});
  const auto report = model::count_flops([&] { (void)ops::ffn(x, w1, b1, w2, b2, 3); });
  EXPECT_EQ(report.total, 10 * 6 * (4 + 3));
  EXPECT_EQ(report.by_operator.at("aligndetr::ffn"), 10 * 6 * (4 + 3));
}

TEST(RecomputedFFN, RejectsMismatchedShapes) {
  const auto x = torch::randn({3, 4});
  EXPECT_THROW(
      ops::ffn(x, torch::randn({6, 5}), torch::zeros({6}), torch::randn({3, 6}), torch::zeros({3})),
      c10::Error);
  EXPECT_THROW(ops::ffn(x, torch::randn({6, 4}), torch::zeros({6}), torch::randn({3, 6}),
                        torch::zeros({3}), 0),
               c10::Error);
}

}  // namespace
}  // namespace aligndetr
