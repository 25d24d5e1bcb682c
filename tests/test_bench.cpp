// `aligndetr bench`: what it reports (never how fast: benchmarks assert no times).

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>

#include "aligndetr/engine/bench.h"
#include "aligndetr/engine/config.h"
#include "aligndetr/model/flops.h"
#include "aligndetr/ops/attention.h"
#include "aligndetr/util/error.h"

namespace aligndetr {
namespace {

engine::Experiment tiny() {
  return engine::make_experiment(
      engine::Config::load(std::string(ALIGNDETR_SOURCE_DIR) + "/configs/align_dino_tiny.yaml"));
}

engine::BenchOptions small(bool train) {
  engine::BenchOptions o;
  o.height = 128;
  o.width = 160;
  o.train = train;
  o.warmup = 0;
  o.iterations = 2;
  return o;
}

bool has(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

TEST(Bench, InferenceReportsStagesOperatorsAndTheRooflineOfTheCountedWork) {
  const auto e = tiny();
  const auto r = engine::run_bench(e, small(false));
  ASSERT_EQ(r.seconds.size(), 2u);
  for (const char* stage : {"backbone", "neck", "encoder", "proposals", "decoder", "postprocess"}) {
    EXPECT_TRUE(has(r.stage_order, stage)) << stage;
    EXPECT_GT(r.stages.at(stage), 0.0) << stage;
  }
  double staged = 0;
  for (const auto& [name, t] : r.stages) staged += t;
  EXPECT_LE(staged, r.max() * 1.0001);

  // The work is that of one forward pass as `model info` counts it.
  auto model = e.model.build();
  model->eval();
  torch::NoGradGuard no_grad;
  const auto flops = model::count_flops([&] {
    model->forward(torch::zeros({1, 3, 128, 160}), torch::zeros({1, 128, 160}, torch::kBool),
                   nullptr);
  });
  EXPECT_NEAR(r.gmacs, double(flops.total) / 1e9, 1e-9);
  EXPECT_NEAR(r.gmacs, r.gmacs_conv + r.gmacs_matmul, 1e-12);
  EXPECT_GT(r.machine.matmul_fp32, 0);
  EXPECT_GT(r.machine.conv_fp32, 0);
  EXPECT_NEAR(
      r.roofline_seconds,
      r.gmacs_conv * 1e9 / r.machine.conv_fp32 + r.gmacs_matmul * 1e9 / r.machine.matmul_fp32,
      1e-12);
  EXPECT_NEAR(r.roofline_ratio(), r.median() / r.roofline_seconds, 1e-12);

  ASSERT_FALSE(r.operators.empty());
  EXPECT_LE(r.operators.size(), 12u);
  for (size_t i = 1; i < r.operators.size(); ++i) {
    EXPECT_GE(r.operators[i - 1].self_seconds, r.operators[i].self_seconds);
  }
  // The test binary keeps the library's allocator (only the command links tcmalloc).
  ASSERT_FALSE(r.machine.allocator.empty());
  const auto text = r.text();
  EXPECT_NE(text.find("allocator " + r.machine.allocator), std::string::npos) << text;
  EXPECT_NE(r.json().find("\"allocator\": \"" + r.machine.allocator + "\""), std::string::npos);
  EXPECT_EQ(r.machine.attention_kernel, ops::blocked_attention_kernel());
  EXPECT_NE(text.find("self-attention kernel " + r.machine.attention_kernel), std::string::npos);
  EXPECT_NE(r.json().find("\"attention_kernel\": \"" + r.machine.attention_kernel + "\""),
            std::string::npos);
  for (const char* part : {"x of roofline", "stage", "backbone", "operator (profiled iteration)",
                           "GMAC/s", "page faults per iteration"}) {
    EXPECT_NE(text.find(part), std::string::npos) << part << "\n" << text;
  }
  const auto json = r.json();
  for (const char* key : {"\"median_s\"", "\"x_of_roofline\"", "\"stages\": {\"backbone\"",
                          "\"operators\": [{\"name\"", "\"machine\": {\"cpu\""}) {
    EXPECT_NE(json.find(key), std::string::npos) << key << "\n" << json;
  }
}

TEST(Bench, TrainingStepsTimeTheCriterionBackwardAndOptimizer) {
  const auto r = engine::run_bench(tiny(), small(true));
  for (const char* stage :
       {"backbone", "encoder", "decoder", "criterion", "backward", "optimizer"}) {
    EXPECT_TRUE(has(r.stage_order, stage)) << stage;
  }
  EXPECT_FALSE(has(r.stage_order, "postprocess"));
  bool kernel_backward = false;
  for (const auto& op : r.operators)
    kernel_backward |= op.name == "aligndetr::ms_deform_attn_cpu_backward";
  EXPECT_TRUE(kernel_backward || r.operators.size() == 12u);
}

TEST(Bench, OptionsThatMeanNothingAreInputErrors) {
  const auto e = tiny();
  auto o = small(false);
  o.height = 8;
  EXPECT_THROW(engine::run_bench(e, o), util::InputError);
  o = small(false);
  o.iterations = 0;
  EXPECT_THROW(engine::run_bench(e, o), util::InputError);
  if (!engine::cpu_bf16_autocast_supported()) {
    o = small(false);
    o.bf16 = true;
    try {
      engine::run_bench(e, o);
      FAIL() << "bf16 accepted by a LibTorch that cannot run it";
    } catch (const util::InputError& err) {
      EXPECT_NE(std::string(err.what()).find("needs LibTorch 2.x"), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace aligndetr
