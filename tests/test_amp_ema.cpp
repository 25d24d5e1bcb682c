// Mixed precision and the weight average without a GPU: the float16 gradient scaler's decisions
// (skip on inf/NaN, back off, grow), autocast's guards, bfloat16 autocast on the CPU against
// float32 on the tiny model, and the EMA's arithmetic, swap and loading.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "aligndetr/engine/distributed.h"
#include "aligndetr/engine/ema.h"
#include "aligndetr/engine/grad_scaler.h"
#include "aligndetr/engine/solver.h"
#include "aligndetr/loss/criterion.h"
#include "aligndetr/model/dino.h"
#include "aligndetr/ops/autocast.h"
#include "aligndetr/util/error.h"
#include "support/model_options.h"

namespace aligndetr {
namespace {

engine::GradScalerOptions scaler_options(double init, int64_t interval) {
  engine::GradScalerOptions o;
  o.init_scale = init;
  o.growth_interval = interval;
  return o;
}

TEST(GradScaler, UnscalesFiniteGradientsAndGrowsAfterTheInterval) {
  engine::GradScaler scaler(scaler_options(8.0, 3), torch::kCPU);
  EXPECT_DOUBLE_EQ(scaler.scale(torch::tensor(1.5)).item<double>(), 12.0);
  for (int step = 1; step <= 3; ++step) {
    auto g = torch::tensor({8.0f, -16.0f});
    ASSERT_TRUE(scaler.unscale({g}));
    EXPECT_TRUE(torch::equal(g, torch::tensor({1.0f, -2.0f})));
    scaler.update();
    // Three good steps in a row double the scale and restart the count.
    EXPECT_DOUBLE_EQ(scaler.current_scale(), step < 3 ? 8.0 : 16.0) << step;
    EXPECT_EQ(scaler.growth_tracker(), step < 3 ? step : 0) << step;
  }
}

TEST(GradScaler, InfOrNanSkipsAndBacksOff) {
  engine::GradScaler scaler(scaler_options(1024.0, 2), torch::kCPU);
  auto good = torch::tensor({1.0f});
  ASSERT_TRUE(scaler.unscale({good}));
  scaler.update();
  EXPECT_EQ(scaler.growth_tracker(), 1);
  for (const float bad : {std::numeric_limits<float>::infinity(), std::nanf("")}) {
    auto g1 = torch::tensor({1.0f, 2.0f});
    auto g2 = torch::tensor({bad});
    EXPECT_FALSE(scaler.unscale({g1, g2}));
    scaler.update();
    EXPECT_EQ(scaler.growth_tracker(), 0);
  }
  EXPECT_DOUBLE_EQ(scaler.current_scale(), 256.0);  // halved twice
  scaler.load(32.0, 1);
  EXPECT_DOUBLE_EQ(scaler.current_scale(), 32.0);
  EXPECT_EQ(scaler.growth_tracker(), 1);
  EXPECT_THROW(engine::GradScaler(scaler_options(0.0, 2), torch::kCPU), util::InputError);
  EXPECT_THROW(engine::GradScaler(scaler_options(8.0, 0), torch::kCPU), util::InputError);
}

TEST(GradScaler, TheSolverSkipsAnOverflowedStepAndLeavesTheWeights) {
  torch::manual_seed(0);
  torch::nn::Linear layer(3, 2);
  engine::SolverOptions so;
  so.lr = 0.1;
  so.clip_norm = 0;
  engine::Solver solver(*layer, so);
  engine::GradScaler scaler(scaler_options(4.0, 100), torch::kCPU);
  const engine::Distributed single;
  const auto before = layer->weight.detach().clone();
  solver.begin_step(0);
  scaler.scale(layer(torch::ones({1, 3})).sum() * std::numeric_limits<float>::infinity())
      .backward();
  EXPECT_FALSE(solver.step(single, &scaler));
  EXPECT_TRUE(torch::equal(layer->weight, before));
  EXPECT_DOUBLE_EQ(scaler.current_scale(), 2.0);
  // The skipped step's gradients are dropped (to none), so the next step's are its own alone.
  EXPECT_FALSE(layer->weight.grad().defined());
  solver.begin_step(1);
  EXPECT_FALSE(layer->weight.grad().defined());
  scaler.scale(layer(torch::ones({1, 3})).sum()).backward();
  EXPECT_TRUE(solver.step(single, &scaler));
  EXPECT_FALSE(torch::equal(layer->weight, before));
}

TEST(Autocast, GuardsNestAndRestore) {
  ASSERT_FALSE(ops::autocast_enabled(torch::kCPU));
  {
    const ops::AutocastGuard outer(torch::kCPU, torch::kBFloat16);
    EXPECT_TRUE(ops::autocast_enabled(torch::kCPU));
    const auto a = torch::randn({4, 8}), b = torch::randn({8, 2});
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    {
      const ops::AutocastOff off;
      EXPECT_FALSE(ops::autocast_enabled(torch::kCPU));
      EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
    }
    EXPECT_TRUE(ops::autocast_enabled(torch::kCPU));
  }
  EXPECT_FALSE(ops::autocast_enabled(torch::kCPU));
  EXPECT_THROW(ops::AutocastGuard(torch::kCPU, torch::kFloat), c10::Error);
}

// The tiny DINO's loss from the same weights and inputs in float32 and under bfloat16 autocast.
double tiny_loss(bool bf16) {
  torch::manual_seed(0);
  model::Dino dino(testing::tiny_dino_options(5));
  dino->train();
  const auto images = torch::randn({2, 3, 96, 128});
  const auto mask = torch::zeros({2, 96, 128}, torch::kBool);
  std::vector<boxes::Target> targets(2);
  targets[0].labels = torch::tensor({1, 3}, torch::kInt64);
  targets[0].boxes = torch::tensor({0.3f, 0.3f, 0.2f, 0.2f, 0.6f, 0.7f, 0.3f, 0.4f}).view({2, 4});
  targets[1].labels = torch::tensor({4}, torch::kInt64);
  targets[1].boxes = torch::tensor({0.5f, 0.5f, 0.5f, 0.5f}).view({1, 4});
  model::DetectorOutputs outputs;
  torch::manual_seed(1);
  {
    std::optional<ops::AutocastGuard> autocast;
    if (bf16) autocast.emplace(torch::kCPU, torch::kBFloat16);
    outputs = dino->forward(images, mask, &targets);
  }
  if (bf16) {
    EXPECT_EQ(outputs.decoder.back().logits.scalar_type(), torch::kBFloat16);
  }
  const auto losses = loss::compute_criterion(outputs, targets, loss::CriterionOptions::paper());
  EXPECT_EQ(losses.total.scalar_type(), torch::kFloat);
  return losses.total.item<double>();
}

TEST(Autocast, BFloat16OnTheCpuGivesTheFloat32LossWithinTolerance) {
  if (!engine::cpu_bf16_autocast_supported()) {
    GTEST_SKIP() << "LibTorch " << TORCH_VERSION << " has no CPU bfloat16 norms (the 2.x build "
                 << "runs this test)";
  }
  const double fp32 = tiny_loss(false), bf16 = tiny_loss(true);
  ASSERT_TRUE(std::isfinite(bf16));
  // bfloat16 keeps 8 bits of mantissa: a few tenths of a percent per product, more after the
  // matching; 3% leaves room for a changed assignment of one query.
  EXPECT_NEAR(bf16, fp32, 0.03 * std::abs(fp32)) << "fp32 " << fp32 << " bf16 " << bf16;
  EXPECT_NE(bf16, fp32);  // autocast did run the model in bfloat16
}

TEST(ModelEma, MovesTowardsTheWeightsAtTheDecay) {
  torch::nn::Linear layer(2, 1);
  {
    torch::NoGradGuard no_grad;
    layer->weight.fill_(1.0);
    layer->bias.fill_(0.0);
  }
  engine::ModelEma ema(*layer, 0.75);
  {
    torch::NoGradGuard no_grad;
    layer->weight.fill_(3.0);
    layer->bias.fill_(4.0);
  }
  ema.update(*layer);  // 0.75 * 1 + 0.25 * 3, 0.75 * 0 + 0.25 * 4
  ema.update(*layer);  // 0.75 * 1.5 + 0.25 * 3, 0.75 * 1 + 0.25 * 4
  ASSERT_EQ(ema.state().size(), 2u);
  EXPECT_EQ(ema.state()[0].first, "weight");
  EXPECT_TRUE(torch::allclose(ema.state()[0].second, torch::full({1, 2}, 1.875)));
  EXPECT_TRUE(torch::allclose(ema.state()[1].second, torch::full({1}, 1.75)));
  // A swap exchanges the weights and the average; a second one restores both.
  const auto* impl = layer->weight.unsafeGetTensorImpl();
  ema.swap(*layer);
  EXPECT_TRUE(torch::allclose(layer->weight, torch::full({1, 2}, 1.875)));
  EXPECT_TRUE(torch::allclose(ema.state()[0].second, torch::full({1, 2}, 3.0)));
  EXPECT_EQ(layer->weight.unsafeGetTensorImpl(), impl);  // the same parameter object
  {
    const engine::ModelEma::Swap back(&ema, *layer);
    EXPECT_TRUE(torch::allclose(layer->weight, torch::full({1, 2}, 3.0)));
  }
  EXPECT_TRUE(torch::allclose(layer->weight, torch::full({1, 2}, 1.875)));
  EXPECT_THROW(engine::ModelEma(*layer, 1.0), util::InputError);
}

TEST(ModelEma, LoadNamesWhatIsMissingOrMisshapen) {
  torch::nn::Linear layer(2, 1);
  engine::ModelEma ema(*layer, 0.9);
  auto saved = ema.state();
  saved[1].second = torch::full({1}, 7.0);
  ema.load(saved, "ckpt.pt");
  EXPECT_DOUBLE_EQ(ema.state()[1].second.item<double>(), 7.0);
  auto misshapen = saved;
  misshapen[0].second = torch::zeros({3});
  try {
    ema.load(misshapen, "ckpt.pt");
    FAIL() << "expected InputError";
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'weight' has shape 3"), std::string::npos) << e.what();
  }
  saved.pop_back();
  EXPECT_THROW(ema.load(saved, "ckpt.pt"), util::InputError);
}

}  // namespace
}  // namespace aligndetr
