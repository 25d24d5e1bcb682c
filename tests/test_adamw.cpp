#include <gtest/gtest.h>
#include <torch/torch.h>

#include "aligndetr/engine/adamw.h"

namespace aligndetr {
namespace {

struct Twin {
  std::vector<torch::Tensor> ours, theirs;
};

// Two identical parameter sets in two parameter groups (the second without weight decay), one
// parameter never given a gradient.
Twin make_twin(torch::Dtype dtype) {
  torch::manual_seed(0);
  Twin t;
  for (const auto& shape : {std::vector<int64_t>{5, 7}, {1000}, {3, 4, 5}, {2}}) {
    const auto p = torch::randn(shape, torch::dtype(dtype));
    t.ours.push_back(p.clone().requires_grad_());
    t.theirs.push_back(p.clone().requires_grad_());
  }
  return t;
}

torch::optim::AdamW make_optimizer(const std::vector<torch::Tensor>& p) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  auto decayed = std::make_unique<torch::optim::AdamWOptions>(2e-3);
  decayed->betas({0.9, 0.999}).weight_decay(0.05);
  groups.emplace_back(std::vector<torch::Tensor>{p[0], p[1]}, std::move(decayed));
  auto plain = std::make_unique<torch::optim::AdamWOptions>(1e-3);
  plain->weight_decay(0.0).eps(1e-6);
  groups.emplace_back(std::vector<torch::Tensor>{p[2], p[3]}, std::move(plain));
  return torch::optim::AdamW(std::move(groups));
}

void set_gradients(Twin& t, int step) {
  torch::manual_seed(100 + step);
  for (size_t i = 0; i + 1 < t.ours.size(); ++i) {  // the last parameter gets none
    // Gradients of every magnitude, zeros included.
    auto g = torch::randn(t.ours[i].sizes(), t.ours[i].options()) *
             std::pow(10.0, double(step % 3) - 2.0);
    g.view(-1)[0] = 0;
    t.ours[i].mutable_grad() = g.clone();
    t.theirs[i].mutable_grad() = g.clone();
  }
}

// Steps [first, end) of both optimizers on the same gradients: ours through adamw_step, or
// through LibTorch's own step where `fused` is false; theirs always LibTorch's.
void step_both(Twin& t, torch::optim::AdamW& ours, torch::optim::AdamW& theirs, int first, int end,
               bool fused = true) {
  for (int step = first; step < end; ++step) {
    set_gradients(t, step);
    if (fused) {
      engine::adamw_step(ours);
    } else {
      ours.step();
    }
    theirs.step();
  }
}

double difference(const Twin& t, size_t i) {
  return (t.ours[i] - t.theirs[i]).abs().max().item<double>();
}

TEST(AdamW, FusedStepEqualsLibTorchsAdamWOverStepsAndGroups) {
  auto t = make_twin(torch::kFloat);
  auto ours = make_optimizer(t.ours);
  auto theirs = make_optimizer(t.theirs);
  step_both(t, ours, theirs, 0, 5);
  for (size_t i = 0; i < t.ours.size(); ++i) EXPECT_LT(difference(t, i), 1e-6) << "parameter " << i;
  // The state is LibTorch's own: its step continues from ours as from its own (moments, step
  // counts and bias corrections), and none was made for the parameter without a gradient.
  EXPECT_EQ(ours.state().size(), 3u);
  EXPECT_EQ(theirs.state().size(), 3u);
  step_both(t, ours, theirs, 5, 6, /*fused=*/false);
  for (size_t i = 0; i < t.ours.size(); ++i) EXPECT_LT(difference(t, i), 1e-6) << "parameter " << i;
  // A weight-decayed parameter moved by more than its decay alone.
  EXPECT_GT((t.ours[0] - make_twin(torch::kFloat).ours[0]).abs().max().item<float>(), 1e-3);
  EXPECT_TRUE(torch::equal(t.ours[3], make_twin(torch::kFloat).ours[3]));
}

TEST(AdamW, OtherDtypesTakeLibTorchsStep) {
  auto t = make_twin(torch::kDouble);
  auto ours = make_optimizer(t.ours);
  auto theirs = make_optimizer(t.theirs);
  step_both(t, ours, theirs, 0, 3);
  for (size_t i = 0; i < t.ours.size(); ++i) EXPECT_TRUE(torch::equal(t.ours[i], t.theirs[i]));
}

}  // namespace
}  // namespace aligndetr
