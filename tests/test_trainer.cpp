// The training engine end to end on small real data: the loss falls, AP rises above zero,
// resuming gives the same losses as an uninterrupted run, checkpoints are atomic, and bad
// configs or weights give clear errors.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "aligndetr/data/coco.h"
#include "aligndetr/engine/checkpoint.h"
#include "aligndetr/engine/experiment.h"
#include "aligndetr/engine/trainer.h"
#include "aligndetr/model/weights.h"
#include "aligndetr/util/error.h"
#include "test_support.h"

namespace aligndetr {
namespace {

namespace fs = std::filesystem;

// A tiny model on the first `images` images of COCO128, training and validating on them.
Config tiny_config(const fs::path& dir, int images, int64_t max_iter) {
  const auto root = testing::shared_data() / "coco128";
  auto full = read_coco((root / "annotations/instances.json").string());
  CocoDataset subset = full;
  subset.images.clear();
  subset.annotations.clear();
  for (int i = 0; i < images; ++i) subset.images.push_back(full.images[size_t(i)]);
  subset.reindex();
  for (const auto& a : full.annotations) {
    if (subset.image_index(a.image_id) >= 0) subset.annotations.push_back(a);
  }
  const auto ann = (dir / "subset.json").string();
  write_coco(subset, ann);
  const std::string yaml = fmt::format(R"(
model:
  type: dino
  num_classes: 80
  backbone: {{depth: 18, freeze_at: 1, out_stages: [2, 3, 4]}}
  neck: {{num_extra_levels: 1}}
  transformer: {{embed_dim: 64, num_heads: 4, num_points: 2, encoder_layers: 1, decoder_layers: 2,
                ffn_dim: 128, num_queries: 50}}
  denoising: {{dn_number: 10}}
criterion:
  loss: ia_bce
  k: 3
  alpha: 0.25
  gamma: 2.0
  tau: 1.5
  weights: {{class: 1.0, bbox: 5.0, giou: 2.0}}
  matcher: {{cost_class: 2.0, cost_bbox: 5.0, cost_giou: 2.0}}
data:
  train: {{ann: {0}, images: {1}}}
  val: {{ann: {0}, images: {1}}}
  batch_size: 2
  workers: 1
  transforms:
    flip_prob: 0.0
    crop_prob: 0.0
    train_short_sizes: [128]
    train_max_size: 192
    test_short_size: 128
    test_max_size: 192
solver:
  lr: 4.0e-4
  backbone_lr_mult: 0.1
  max_iter: {2}
  steps: [100000]
train:
  checkpoint_period: 2
  keep_checkpoints: 2
  eval_period: 0
  log_period: 1
  seed: 7
  device: cpu
  eval_top_k: 100
)",
                                       ann, (root / "images").string(), max_iter);
  return Config::parse(yaml, "test-config");
}

TEST(Trainer, LossFallsAndApRisesOnCoco128) {
  REQUIRE_SHARED_DATA();
  testing::TempDir dir;
  auto config = tiny_config(dir.path(), 4, 120);
  const auto result = train(make_experiment(config), (dir / "run").string(), false);
  ASSERT_EQ(result.loss_history.size(), 120u);
  double first = 0, last = 0;
  for (int i = 0; i < 10; ++i) {
    first += result.loss_history[size_t(i)].second / 10;
    last += result.loss_history[result.loss_history.size() - 1 - size_t(i)].second / 10;
  }
  EXPECT_LT(last, 0.7 * first) << "first " << first << " last " << last;
  ASSERT_TRUE(result.final_eval.has_value());
  EXPECT_GT(result.final_eval->stats[1], 0.0) << result.final_eval->summary();  // AP50
  EXPECT_TRUE(fs::exists(dir / "run/model_final.pt"));
  EXPECT_TRUE(fs::exists(dir / "run/eval_final.json"));
  EXPECT_TRUE(fs::exists(dir / "run/config.yaml"));
  // Only the newest two checkpoints are kept.
  EXPECT_TRUE(fs::exists(checkpoint_path((dir / "run/checkpoints").string(), 120)));
  EXPECT_TRUE(fs::exists(checkpoint_path((dir / "run/checkpoints").string(), 118)));
  EXPECT_FALSE(fs::exists(checkpoint_path((dir / "run/checkpoints").string(), 116)));
}

TEST(Trainer, ResumedRunMatchesAnUninterruptedOne) {
  REQUIRE_SHARED_DATA();
  testing::TempDir dir;
  const auto full =
      train(make_experiment(tiny_config(dir.path(), 4, 6)), (dir / "a").string(), false);
  // A run killed after logging step 3 but before checkpointing it: the newest checkpoint is
  // step 2's, and step 3's log line is a leftover.
  train(make_experiment(tiny_config(dir.path(), 4, 3)), (dir / "b").string(), false);
  fs::remove(checkpoint_path((dir / "b/checkpoints").string(), 3));
  const auto resumed =
      train(make_experiment(tiny_config(dir.path(), 4, 6)), (dir / "b").string(), true);
  ASSERT_EQ(full.loss_history.size(), 6u);
  ASSERT_EQ(resumed.loss_history.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(resumed.loss_history[i].first, full.loss_history[2 + i].first);
    EXPECT_DOUBLE_EQ(resumed.loss_history[i].second, full.loss_history[2 + i].second)
        << "step " << 3 + i;
  }
  // The log reads as one run: steps 1..6 once each.
  std::ifstream log(dir / "b/metrics.jsonl");
  std::string line;
  std::vector<std::string> train_iters;
  while (std::getline(log, line)) {
    if (line.find("\"type\": \"train\"") != std::string::npos) {
      train_iters.push_back(line.substr(0, line.find(',')));
    }
  }
  ASSERT_EQ(train_iters.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(train_iters[i], fmt::format("{{\"iter\": {}", i + 1));
}

TEST(Trainer, KilledCheckpointWriteLeavesThePreviousOneLoadable) {
  REQUIRE_SHARED_DATA();
  testing::TempDir dir;
  train(make_experiment(tiny_config(dir.path(), 2, 2)), (dir / "run").string(), false);
  const auto ckpt_dir = (dir / "run/checkpoints").string();
  const auto good = latest_checkpoint(ckpt_dir);
  ASSERT_FALSE(good.empty());
  // A write killed midway leaves only a temporary file behind: it is never picked up.
  testing::write_text(checkpoint_path(ckpt_dir, 4) + ".tmp.123.abc", "partial");
  EXPECT_EQ(latest_checkpoint(ckpt_dir), good);
  const auto e = make_experiment(tiny_config(dir.path(), 2, 2));
  const auto model = e.model.build();
  EXPECT_EQ(load_checkpoint(good, *model).iteration, 2);
  // The weights file and a training checkpoint both load; a truncated file is a clear error.
  EXPECT_EQ(load_checkpoint((dir / "run/model_final.pt").string(), *model).iteration, -1);
  const auto broken = (dir / "broken.pt").string();
  {
    std::ifstream in(good, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    testing::write_text(broken, bytes.substr(0, bytes.size() / 2));
  }
  EXPECT_THROW(load_checkpoint(broken, *model), InputError);
}

TEST(Checkpoint, RandomStatesOfTheCpuAndEveryCudaDeviceRoundTrip) {
  testing::TempDir dir;
  torch::nn::Linear model(3, 2);
  torch::optim::AdamW optimizer(model->parameters());
  const auto path = (dir / "ckpt.pt").string();
  torch::manual_seed(11);
  save_checkpoint(path, *model, optimizer, 5, "a: 1\n");
  const auto expected = torch::rand({4});
  const TensorDict saved = load_tensors(path);
  EXPECT_TRUE(saved.contains("trainer.rng_cpu"));
  const int64_t gpus = torch::cuda::is_available() ? int64_t(torch::cuda::device_count()) : 0;
  for (int64_t i = 0; i < gpus + 1; ++i) {
    EXPECT_EQ(saved.contains(fmt::format("trainer.rng_cuda.{}", i)), i < gpus) << i;
  }
  torch::manual_seed(99);
  EXPECT_EQ(load_checkpoint(path, *model, &optimizer).iteration, 5);
  EXPECT_TRUE(torch::equal(torch::rand({4}), expected));
  // A checkpoint from a machine with one more GPU than this one still resumes (with a warning).
  TensorDict more = saved;
  more.insert(fmt::format("trainer.rng_cuda.{}", gpus), saved["trainer.rng_cpu"]);
  const auto other = (dir / "more_gpus.pt").string();
  save_tensors(other, more);
  EXPECT_EQ(load_checkpoint(other, *model, &optimizer).iteration, 5);
}

TEST(Trainer, ANewRunInAnOldDirectoryReplacesItsLogAndCheckpoints) {
  REQUIRE_SHARED_DATA();
  testing::TempDir dir;
  const auto run = (dir / "run").string();
  const auto lines = [&] {
    std::ifstream in(run + "/metrics.jsonl");
    int n = 0;
    for (std::string line; std::getline(in, line);) ++n;
    return n;
  };
  train(make_experiment(tiny_config(dir.path(), 2, 4)), run, false);
  const int first = lines();
  ASSERT_GT(first, 0);
  ASSERT_EQ(latest_checkpoint(run + "/checkpoints"), checkpoint_path(run + "/checkpoints", 4));
  train(make_experiment(tiny_config(dir.path(), 2, 2)), run, false);
  // Only the second run's lines (2 steps instead of 4) and its own checkpoint remain.
  EXPECT_LT(lines(), first);
  EXPECT_EQ(latest_checkpoint(run + "/checkpoints"), checkpoint_path(run + "/checkpoints", 2));
}

TEST(Trainer, MismatchedWeightsAreRejectedWithNames) {
  REQUIRE_SHARED_DATA();
  testing::TempDir dir;
  train(make_experiment(tiny_config(dir.path(), 2, 1)), (dir / "run").string(), false);
  auto config = tiny_config(dir.path(), 2, 1);
  config.set("model.transformer.num_queries=60");
  const auto other = make_experiment(config).model.build();
  try {
    load_checkpoint((dir / "run/model_final.pt").string(), *other);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("transformer.tgt_embed.weight"), std::string::npos)
        << e.what();
  }
}

TEST(Trainer, ConfigErrors) {
  REQUIRE_SHARED_DATA();
  testing::TempDir dir;
  auto config = tiny_config(dir.path(), 0, 1);
  auto missing = Config::parse(config.dump() + "\n");
  EXPECT_NO_THROW(make_experiment(missing));
  // A stray key anywhere is an error naming it.
  auto stray = Config::parse(config.dump() + "solver2: {lr: 1}\n", "stray");
  try {
    make_experiment(stray);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("solver2.lr"), std::string::npos) << e.what();
  }
  // A missing required key names it.
  auto text = config.dump();
  const auto pos = text.find("max_iter");
  text.replace(pos, 8, "max_iters");
  try {
    make_experiment(Config::parse(text, "typo"));
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("missing key 'solver.max_iter'"), std::string::npos)
        << e.what();
  }
}

TEST(Schedule, WarmupThenSteps) {
  SolverOptions s;
  s.steps = {10, 20};
  s.gamma = 0.1;
  s.warmup_iters = 4;
  s.warmup_factor = 0.2;
  EXPECT_DOUBLE_EQ(lr_factor(s, 0), 0.2);
  EXPECT_DOUBLE_EQ(lr_factor(s, 2), 0.2 * 0.5 + 0.5);
  EXPECT_DOUBLE_EQ(lr_factor(s, 4), 1.0);
  EXPECT_DOUBLE_EQ(lr_factor(s, 9), 1.0);
  EXPECT_DOUBLE_EQ(lr_factor(s, 10), 0.1);
  EXPECT_NEAR(lr_factor(s, 25), 0.01, 1e-15);
}

}  // namespace
}  // namespace aligndetr

namespace aligndetr {
namespace {

TEST(Presets, EveryConfigResolvesWithEveryKeyUnderstood) {
  int count = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(ALIGNDETR_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    const auto e = make_experiment(Config::load(entry.path().string()));
    EXPECT_GT(e.solver.max_iter, 0);
    ++count;
  }
  EXPECT_GE(count, 8);
  const auto paper = make_experiment(
      Config::load(std::string(ALIGNDETR_SOURCE_DIR) + "/configs/align_dino_r50_4scale_12ep.yaml"));
  EXPECT_EQ(paper.criterion.k, 3);
  EXPECT_EQ(paper.model.dino.transformer.num_queries, 900);
  EXPECT_EQ(paper.solver.max_iter, 90000);
  EXPECT_EQ(paper.solver.steps, std::vector<int64_t>{82500});
  EXPECT_DOUBLE_EQ(paper.solver.clip_norm, 0.1);
  EXPECT_EQ(paper.data.batch_size, 16);
  const auto released = make_experiment(Config::load(
      std::string(ALIGNDETR_SOURCE_DIR) + "/configs/align_dino_r50_4scale_12ep_released.yaml"));
  EXPECT_EQ(released.criterion.k, 2);
  const auto baseline = make_experiment(
      Config::load(std::string(ALIGNDETR_SOURCE_DIR) + "/configs/dino_r50_4scale_12ep.yaml"));
  EXPECT_EQ(baseline.criterion.class_loss, loss::ClassLoss::kFocal);
  EXPECT_EQ(baseline.criterion.k, 1);
}

}  // namespace
}  // namespace aligndetr
