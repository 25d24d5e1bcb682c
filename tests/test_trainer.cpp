// The training engine end to end on small synthetic data: the loss falls, AP rises above zero,
// resuming gives the same losses as an uninterrupted run, checkpoints are atomic, and bad
// configs or weights give clear errors.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include "aligndetr/coco/annotations.h"
#include "aligndetr/data/dataset.h"
#include "aligndetr/data/synth.h"
#include "aligndetr/engine/checkpoint.h"
#include "aligndetr/engine/evaluation.h"
#include "aligndetr/engine/experiment.h"
#include "aligndetr/engine/run_dir.h"
#include "aligndetr/engine/stop.h"
#include "aligndetr/engine/trainer.h"
#include "aligndetr/model/weights.h"
#include "aligndetr/util/error.h"
#include "aligndetr/util/sha256.h"
#include "test_support.h"

namespace aligndetr {
namespace {

namespace fs = std::filesystem;

// A tiny model on `images` synthetic images (generated in well under a second), training and
// validating on them.
engine::Config tiny_config(const fs::path& dir, int images, int64_t max_iter) {
  data::SynthOptions synth;
  synth.out_dir = (dir / fmt::format("synth{}", images)).string();
  synth.train_images = std::max(images, 1);
  synth.val_images = 1;
  synth.size = 160;
  synth.seed = 3;
  synth.min_object_size = 16;
  synth.threads = 1;
  const fs::path root = synth.out_dir;
  if (!fs::exists(root / "annotations/instances_train.json")) data::write_synthetic_dataset(synth);
  const auto ann = (root / "annotations/instances_train.json").string();
  const std::string yaml = fmt::format(R"(
model:
  type: dino
  num_classes: 8
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
                                       ann, (root / "images/train").string(), max_iter);
  return engine::Config::parse(yaml, "test-config");
}

TEST(Trainer, LossFallsAndApRises) {
  testing::TempDir dir;
  auto config = tiny_config(dir.path(), 4, 120);
  const auto result = engine::train(engine::make_experiment(config), (dir / "run").string(), false);
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
  EXPECT_TRUE(fs::exists(engine::checkpoint_path((dir / "run/checkpoints").string(), 120)));
  EXPECT_TRUE(fs::exists(engine::checkpoint_path((dir / "run/checkpoints").string(), 118)));
  EXPECT_FALSE(fs::exists(engine::checkpoint_path((dir / "run/checkpoints").string(), 116)));
}

TEST(Trainer, ResumedRunMatchesAnUninterruptedOne) {
  testing::TempDir dir;
  const auto full = engine::train(engine::make_experiment(tiny_config(dir.path(), 4, 6)),
                                  (dir / "a").string(), false);
  // A run killed after logging step 3 but before checkpointing it: the newest checkpoint is
  // step 2's, and step 3's log line is a leftover.
  engine::train(engine::make_experiment(tiny_config(dir.path(), 4, 3)), (dir / "b").string(),
                false);
  fs::remove(engine::checkpoint_path((dir / "b/checkpoints").string(), 3));
  const auto resumed = engine::train(engine::make_experiment(tiny_config(dir.path(), 4, 6)),
                                     (dir / "b").string(), true);
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
  testing::TempDir dir;
  engine::train(engine::make_experiment(tiny_config(dir.path(), 2, 2)), (dir / "run").string(),
                false);
  const auto ckpt_dir = (dir / "run/checkpoints").string();
  const auto good = engine::latest_checkpoint(ckpt_dir);
  ASSERT_FALSE(good.empty());
  // A write killed midway leaves only a temporary file behind: it is never picked up.
  testing::write_text(engine::checkpoint_path(ckpt_dir, 4) + ".tmp.123.abc", "partial");
  EXPECT_EQ(engine::latest_checkpoint(ckpt_dir), good);
  const auto e = engine::make_experiment(tiny_config(dir.path(), 2, 2));
  const auto model = e.model.build();
  EXPECT_EQ(engine::load_checkpoint(good, *model).iteration, 2);
  // The weights file and a training checkpoint both load; a truncated file is a clear error.
  EXPECT_EQ(engine::load_checkpoint((dir / "run/model_final.pt").string(), *model).iteration, -1);
  const auto broken = (dir / "broken.pt").string();
  {
    std::ifstream in(good, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    testing::write_text(broken, bytes.substr(0, bytes.size() / 2));
  }
  EXPECT_THROW(engine::load_checkpoint(broken, *model), util::InputError);
}

TEST(Checkpoint, RandomStatesOfTheCpuAndEveryCudaDeviceRoundTrip) {
  testing::TempDir dir;
  torch::nn::Linear model(3, 2);
  torch::optim::AdamW optimizer(model->parameters());
  const auto path = (dir / "ckpt.pt").string();
  torch::manual_seed(11);
  engine::save_checkpoint(path, *model, optimizer, 5, "a: 1\n");
  const auto expected = torch::rand({4});
  const model::TensorDict saved = model::load_tensors(path);
  EXPECT_TRUE(saved.contains("trainer.rng_cpu"));
  const int64_t gpus = torch::cuda::is_available() ? int64_t(torch::cuda::device_count()) : 0;
  for (int64_t i = 0; i < gpus + 1; ++i) {
    EXPECT_EQ(saved.contains(fmt::format("trainer.rng_cuda.{}", i)), i < gpus) << i;
  }
  torch::manual_seed(99);
  EXPECT_EQ(engine::load_checkpoint(path, *model, &optimizer).iteration, 5);
  EXPECT_TRUE(torch::equal(torch::rand({4}), expected));
  // A checkpoint from a machine with one more GPU than this one still resumes (with a warning).
  model::TensorDict more = saved;
  more.insert(fmt::format("trainer.rng_cuda.{}", gpus), saved["trainer.rng_cpu"]);
  const auto other = (dir / "more_gpus.pt").string();
  model::save_tensors(other, more);
  EXPECT_EQ(engine::load_checkpoint(other, *model, &optimizer).iteration, 5);
}

TEST(Trainer, ANewRunInAnOldDirectoryReplacesItsLogAndCheckpoints) {
  testing::TempDir dir;
  const auto run = (dir / "run").string();
  const auto lines = [&] {
    std::ifstream in(run + "/metrics.jsonl");
    int n = 0;
    for (std::string line; std::getline(in, line);) ++n;
    return n;
  };
  engine::train(engine::make_experiment(tiny_config(dir.path(), 2, 4)), run, false);
  const int first = lines();
  ASSERT_GT(first, 0);
  ASSERT_EQ(engine::latest_checkpoint(run + "/checkpoints"),
            engine::checkpoint_path(run + "/checkpoints", 4));
  engine::train(engine::make_experiment(tiny_config(dir.path(), 2, 2)), run, false);
  // Only the second run's lines (2 steps instead of 4) and its own checkpoint remain.
  EXPECT_LT(lines(), first);
  EXPECT_EQ(engine::latest_checkpoint(run + "/checkpoints"),
            engine::checkpoint_path(run + "/checkpoints", 2));
}

TEST(Trainer, MismatchedWeightsAreRejectedWithNames) {
  testing::TempDir dir;
  engine::train(engine::make_experiment(tiny_config(dir.path(), 2, 1)), (dir / "run").string(),
                false);
  auto config = tiny_config(dir.path(), 2, 1);
  config.set("model.transformer.num_queries=60");
  const auto other = engine::make_experiment(config).model.build();
  try {
    engine::load_checkpoint((dir / "run/model_final.pt").string(), *other);
    FAIL();
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("transformer.tgt_embed.weight"), std::string::npos)
        << e.what();
  }
}

// A learning rate that blows the weights up: whether the outputs or only the loss turn non-finite,
// the run stops through one path, with the last good state saved.
TEST(Trainer, DivergenceStopsWithTheLastGoodStateSaved) {
  testing::TempDir dir;
  auto e = engine::make_experiment(tiny_config(dir.path(), 2, 8));
  e.solver.lr = 1e3;
  try {
    engine::train(e, (dir / "run").string(), false);
    FAIL() << "a learning rate of 1000 trained for 8 steps";
  } catch (const engine::TrainingDiverged& diverged) {
    EXPECT_NE(std::string(diverged.what()).find("non-finite"), std::string::npos)
        << diverged.what();
    EXPECT_TRUE(fs::exists(diverged.checkpoint())) << diverged.checkpoint();
    const auto model = e.model.build();
    EXPECT_GE(engine::load_checkpoint(diverged.checkpoint(), *model).iteration, 0);
  }
}

// A run started from another run's weights (--init): with a zero learning rate its weights stay
// exactly the loaded ones; the resolved config records the file's digest; a resumed run never
// loads the file again.
TEST(Trainer, InitWeightsStartANewRunAndAreRecorded) {
  testing::TempDir dir;
  const auto first = engine::train(engine::make_experiment(tiny_config(dir.path(), 2, 2)),
                                   (dir / "a").string(), false);
  const auto init = (dir / "init.pt").string();
  fs::copy_file(first.final_weights, init);
  auto config = tiny_config(dir.path(), 2, 1);
  engine::set_init_weights(config, init);
  auto e = engine::make_experiment(config);
  ASSERT_EQ(e.model.init.files.size(), 1u);
  e.solver.lr = 0.0;
  const auto second = engine::train(e, (dir / "b").string(), false);
  const auto a = model::load_tensors(init), b = model::load_tensors(second.final_weights);
  for (const auto& kv : a) {
    ASSERT_TRUE(b.contains(kv.key())) << kv.key();
    EXPECT_TRUE(torch::equal(kv.value(), b[kv.key()])) << kv.key();
  }
  EXPECT_EQ(model::category_names(b), model::category_names(a));
  EXPECT_EQ(model::category_names(b).size(), 8u);
  const auto recorded = engine::Config::load((dir / "b/config.yaml").string());
  EXPECT_EQ(recorded.get_string("model.init_weights.0.sha256"), util::sha256_file(init));
  EXPECT_EQ(recorded.get_string("model.init_weights.0.file"), init);
  // The recorded config is a valid config: running it again checks the digest.
  EXPECT_EQ(engine::make_experiment(recorded).model.init.files[0].sha256, util::sha256_file(init));
  fs::remove(init);
  EXPECT_NO_THROW(engine::train(e, (dir / "b").string(), true));
  // Resuming from the original config keeps the recorded digest.
  EXPECT_EQ(engine::Config::load((dir / "b/config.yaml").string())
                .get_string("model.init_weights.0.sha256"),
            recorded.get_string("model.init_weights.0.sha256"));
}

TEST(Trainer, TrainingAndValidationFilesMustShareCategories) {
  testing::TempDir dir;
  auto config = tiny_config(dir.path(), 2, 1);
  auto val = coco::read_coco(config.get_string("data.val.ann"));
  val.categories[3].name = "pentagon";
  const auto val_file = (dir / "val.json").string();
  coco::write_coco(val, val_file);
  config.set("data.val.ann=" + val_file);
  try {
    engine::train(engine::make_experiment(config), (dir / "run").string(), false);
    FAIL();
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'pentagon'"), std::string::npos) << e.what();
  }
}

// Background images (no box at all) as pure negatives: every loss term stays finite.
TEST(Trainer, BackgroundImagesTrainWithKeepEmpty) {
  testing::TempDir dir;
  auto config = tiny_config(dir.path(), 2, 3);
  auto train_set = coco::read_coco(config.get_string("data.train.ann"));
  const int64_t background = train_set.images[0].id;
  std::vector<coco::CocoAnnotation> kept;
  for (const auto& a : train_set.annotations) {
    if (a.image_id != background) kept.push_back(a);
  }
  train_set.annotations = kept;
  const auto file = (dir / "with_background.json").string();
  coco::write_coco(train_set, file);
  config.set("data.train.ann=" + file);
  config.set("data.val.ann=" + file);
  config.assign("data.train.keep_empty", "true");
  const auto e = engine::make_experiment(config);
  EXPECT_FALSE(e.data.train.drop_empty);
  const auto result = engine::train(e, (dir / "run").string(), false);
  ASSERT_EQ(result.loss_history.size(), 3u);
  for (const auto& [iter, loss] : result.loss_history) EXPECT_TRUE(std::isfinite(loss)) << iter;
  EXPECT_EQ(result.skipped_steps, 0);
}

TEST(Trainer, ConfigErrors) {
  testing::TempDir dir;
  auto config = tiny_config(dir.path(), 0, 1);
  // An optional key left out takes its default from the options struct.
  auto text = config.dump();
  const auto line = text.find("checkpoint_period:");
  ASSERT_NE(line, std::string::npos) << text;
  const auto begin = text.rfind('\n', line) + 1;
  text.erase(begin, text.find('\n', line) + 1 - begin);
  auto without_optional = engine::Config::parse(text, "no-checkpoint-period");
  ASSERT_FALSE(without_optional.has("train.checkpoint_period"));
  ASSERT_NE(engine::TrainOptions{}.checkpoint_period, 2);  // the value the config had
  EXPECT_EQ(engine::make_experiment(without_optional).train.checkpoint_period,
            engine::TrainOptions{}.checkpoint_period);
  // A stray key anywhere is an error naming it.
  auto stray = engine::Config::parse(config.dump() + "solver2: {lr: 1}\n", "stray");
  try {
    engine::make_experiment(stray);
    FAIL();
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("solver2.lr"), std::string::npos) << e.what();
  }
  // No training size to draw from: an input error naming the key, not a crash at step 1.
  auto no_sizes = config;
  no_sizes.set("data.transforms.train_short_sizes=[]");
  try {
    engine::make_experiment(no_sizes);
    FAIL();
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("data.transforms.train_short_sizes is empty"),
              std::string::npos)
        << e.what();
  }
  auto negative = config;
  negative.set("data.transforms.train_short_sizes=[128, -1]");
  EXPECT_THROW(engine::make_experiment(negative), util::InputError);
  // A missing required key names it.
  text = config.dump();
  const auto pos = text.find("max_iter");
  text.replace(pos, 8, "max_iters");
  try {
    engine::make_experiment(engine::Config::parse(text, "typo"));
    FAIL();
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("missing key 'solver.max_iter'"), std::string::npos)
        << e.what();
  }
}

TEST(Trainer, EmaIsWhatIsSavedAndEvaluatedAndResumesExactly) {
  testing::TempDir dir;
  const auto with_ema = [&](int64_t iters) {
    auto c = tiny_config(dir.path(), 4, iters);
    c.assign("train.ema.enabled", "true");
    c.assign("train.ema.decay", "0.5");
    return engine::make_experiment(c);
  };
  engine::train(with_ema(4), (dir / "a").string(), false);
  const auto ckpt =
      model::load_tensors(engine::checkpoint_path((dir / "a/checkpoints").string(), 4));
  const auto final_weights = model::load_tensors((dir / "a/model_final.pt").string());
  int compared = 0, differ = 0;
  for (const auto& kv : final_weights) {
    if (!ckpt.contains("ema." + kv.key())) continue;
    ++compared;
    EXPECT_TRUE(torch::equal(kv.value(), ckpt["ema." + kv.key()])) << kv.key();
    differ += torch::equal(kv.value(), ckpt["model." + kv.key()]) ? 0 : 1;
  }
  EXPECT_GT(compared, 100);
  EXPECT_GT(differ, 10);  // the trained layers: the average lags the weights
  // Two iterations, then a resumed run to four: the same average, to the bit.
  engine::train(with_ema(2), (dir / "b").string(), false);
  engine::train(with_ema(4), (dir / "b").string(), true);
  const auto resumed = model::load_tensors((dir / "b/model_final.pt").string());
  for (const auto& kv : final_weights) {
    ASSERT_TRUE(resumed.contains(kv.key()));
    EXPECT_TRUE(torch::equal(kv.value(), resumed[kv.key()])) << kv.key();
  }
}

TEST(Trainer, Bf16AutocastTrainsOnTheCpuNearFloat32) {
  testing::TempDir dir;
  if (!engine::cpu_bf16_autocast_supported()) {
    auto c = tiny_config(dir.path(), 0, 1);
    c.assign("train.amp", "bf16");
    try {
      engine::make_experiment(c);
      FAIL() << "bf16 on the CPU accepted by a LibTorch without CPU bfloat16 norms";
    } catch (const util::InputError& e) {
      EXPECT_NE(std::string(e.what()).find("needs LibTorch 2.x"), std::string::npos) << e.what();
    }
    GTEST_SKIP() << "LibTorch " << TORCH_VERSION << " refuses CPU bf16 (checked); the 2.x build "
                 << "trains with it";
  }
  const auto fp32 = engine::train(engine::make_experiment(tiny_config(dir.path(), 4, 3)),
                                  (dir / "fp32").string(), false);
  auto c = tiny_config(dir.path(), 4, 3);
  c.assign("train.amp", "bf16");
  const auto bf16 = engine::train(engine::make_experiment(c), (dir / "bf16").string(), false);
  ASSERT_EQ(bf16.loss_history.size(), 3u);
  // The first step's loss is the same weights' in both precisions; the three steps are compared
  // as a mean. One step's bf16 loss moves by several percent on a one-ulp change upstream:
  // folding the frozen stem's norm into its weights (the same error against float32 either way)
  // moved this run's bf16 losses by 3.9%, 1.5% and 4.2%, fp32's by under 0.1%. DINO's discrete
  // choices (top-k proposals, matching) turn bf16's coarse scores into other picks, and AdamW's
  // first steps, lr * sign(g), carry them into the weights.
  double mean_fp32 = 0, mean_bf16 = 0;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(std::isfinite(bf16.loss_history[i].second)) << "step " << i + 1;
    mean_fp32 += fp32.loss_history[i].second / 3;
    mean_bf16 += bf16.loss_history[i].second / 3;
  }
  EXPECT_NEAR(bf16.loss_history[0].second, fp32.loss_history[0].second,
              0.05 * fp32.loss_history[0].second);
  EXPECT_NEAR(mean_bf16, mean_fp32, 0.05 * mean_fp32);
  EXPECT_EQ(bf16.skipped_steps, 0);
  EXPECT_EQ(bf16.overflow_steps, 0);
}

TEST(Trainer, AmpAndEmaOptionsAreChecked) {
  testing::TempDir dir;
  const auto expect_error = [&](const char* key, const char* value, const char* says) {
    auto c = tiny_config(dir.path(), 0, 1);
    c.assign(key, value);
    try {
      engine::make_experiment(c);
      ADD_FAILURE() << key << "=" << value << " accepted";
    } catch (const util::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  expect_error("train.amp", "fp8", "train.amp must be off, bf16 or fp16");
  expect_error("train.amp", "fp16", "on the CPU use bf16");
  expect_error("train.ema.decay", "1.0", "train.ema.decay must be in [0, 1)");
  auto c = tiny_config(dir.path(), 0, 1);
  c.assign("train.amp", "off");
  c.assign("train.ema.enabled", "true");
  const auto e = engine::make_experiment(c);
  EXPECT_EQ(e.train.amp, engine::Amp::kOff);
  EXPECT_TRUE(e.train.ema);
  EXPECT_DOUBLE_EQ(e.train.ema_decay, 0.9998);
}

TEST(Trainer, AStopRequestFinishesTheStepWritesACheckpointAndResumes) {
  testing::TempDir dir;
  engine::request_stop(SIGINT);
  try {
    engine::train(engine::make_experiment(tiny_config(dir.path(), 4, 6)), (dir / "run").string(),
                  false);
    engine::request_stop(0);
    FAIL() << "a stop request was ignored";
  } catch (const engine::TrainingInterrupted& stopped) {
    engine::request_stop(0);
    EXPECT_EQ(stopped.exit_code(), 130);
    EXPECT_NE(std::string(stopped.what()).find("SIGINT (Ctrl-C) after iteration 1 of 6"),
              std::string::npos)
        << stopped.what();
    EXPECT_EQ(stopped.checkpoint(), engine::checkpoint_path((dir / "run/checkpoints").string(), 1));
    EXPECT_TRUE(fs::exists(stopped.checkpoint()));
  }
  const auto resumed = engine::train(engine::make_experiment(tiny_config(dir.path(), 4, 6)),
                                     (dir / "run").string(), true);
  ASSERT_EQ(resumed.loss_history.size(), 5u);
  EXPECT_EQ(resumed.loss_history.front().first, 2);
}

// A checkpoint inside a log window (here a stop after step 1 of a 4-step window) carries the
// window: the first line after the resume averages steps 1-4, as the uninterrupted run's does.
TEST(Trainer, TheLogLineAfterAResumeAveragesTheWholeWindow) {
  testing::TempDir dir;
  auto config = tiny_config(dir.path(), 4, 6);
  config.set("train.log_period=4");
  const auto full = engine::train(engine::make_experiment(config), (dir / "a").string(), false);
  engine::request_stop(SIGINT);
  EXPECT_THROW(engine::train(engine::make_experiment(config), (dir / "b").string(), false),
               engine::TrainingInterrupted);
  engine::request_stop(0);
  const auto resumed = engine::train(engine::make_experiment(config), (dir / "b").string(), true);
  ASSERT_EQ(full.loss_history.size(), 2u);
  ASSERT_EQ(resumed.loss_history.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(resumed.loss_history[i].first, full.loss_history[i].first);
    EXPECT_EQ(resumed.loss_history[i].second, full.loss_history[i].second)
        << "the line of step " << full.loss_history[i].first;
  }
}

TEST(Trainer, SigtermStopsTheCommandWithACheckpointAndExit143) {
  testing::TempDir dir;
  const auto config = dir / "tiny.yaml";
  testing::write_text(config, tiny_config(dir.path(), 4, 100000).dump());
  const auto log = dir / "log.txt";
  const pid_t child = fork();
  if (child == 0) {
    const std::string cmd = std::string("exec ") + ALIGNDETR_BIN + " --threads 1 train --config " +
                            config.string() + " --output " + (dir / "run").string() + " > " +
                            log.string() + " 2>&1";
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait for the first logged step, then ask it to stop.
  const auto metrics = dir / "run/metrics.jsonl";
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(120)) {
    std::ifstream in(metrics);
    std::string line;
    if (std::getline(in, line) && line.find("\"train\"") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(kill(child, SIGTERM), 0);
  int status = 0;
  waitpid(child, &status, 0);
  std::ifstream in(log);
  const std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(WIFEXITED(status)) << output;
  EXPECT_EQ(WEXITSTATUS(status), 143) << output;
  EXPECT_NE(output.find("stopped by SIGTERM after iteration"), std::string::npos) << output;
  EXPECT_FALSE(engine::latest_checkpoint((dir / "run/checkpoints").string()).empty()) << output;
  EXPECT_EQ(output.find("internal error"), std::string::npos) << output;
}

TEST(Trainer, ALockedRunDirectoryIsRefused) {
  testing::TempDir dir;
  const engine::RunDirLock other((dir / "run").string());
  try {
    engine::train(engine::make_experiment(tiny_config(dir.path(), 4, 1)), (dir / "run").string(),
                  false);
    FAIL() << "trained into a directory another training holds";
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("in use by another training"), std::string::npos)
        << e.what();
  }
}

TEST(Trainer, ResumingWithAChangedConfigIsRefusedUnlessAsked) {
  testing::TempDir dir;
  engine::train(engine::make_experiment(tiny_config(dir.path(), 4, 2)), (dir / "run").string(),
                false);
  const auto before = [&] {
    std::ifstream in(dir / "run/config.yaml");
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }();
  auto changed = tiny_config(dir.path(), 4, 4);  // a longer run is not a change
  changed.set("solver.lr=8.0e-4");
  changed.set("train.seed=8");
  try {
    engine::train(engine::make_experiment(changed), (dir / "run").string(), true);
    FAIL() << "resumed with another learning rate and seed";
  } catch (const util::InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("solver.lr: 4.0e-4 -> 8.0e-4"), std::string::npos) << what;
    EXPECT_NE(what.find("train.seed: 7 -> 8"), std::string::npos) << what;
    EXPECT_EQ(what.find("max_iter"), std::string::npos) << what;
    EXPECT_NE(what.find("--resume-with-changes"), std::string::npos) << what;
  }
  std::ifstream unchanged(dir / "run/config.yaml");
  EXPECT_EQ(
      std::string((std::istreambuf_iterator<char>(unchanged)), std::istreambuf_iterator<char>()),
      before);
  auto e = engine::make_experiment(changed);
  e.train.resume_with_changes = true;
  const auto resumed = engine::train(e, (dir / "run").string(), true);
  EXPECT_EQ(resumed.loss_history.size(), 2u);
  EXPECT_TRUE(fs::exists(dir / "run/config.before_0000002.yaml"));
}

// Each value is refused before any work, naming its key (not a late failure, an internal error
// or a silent acceptance).
TEST(Trainer, EveryUnusableValueIsAnInputErrorNamingItsKey) {
  testing::TempDir dir;
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"data.batch_size", "0"},
      {"data.batch_size", "-2"},
      {"data.transforms.test_short_size", "0"},
      {"data.transforms.flip_prob", "1.5"},
      {"data.transforms.crop_min", "700"},  // above crop_max
      {"solver.lr", ".nan"},
      {"solver.lr", ".inf"},
      {"solver.clip_norm", "-1"},
      {"criterion.tau", "0"},
      {"criterion.tau", "-1.5"},
      {"criterion.alpha", "1.5"},
      {"criterion.gamma", ".nan"},
      {"model.transformer.num_queries", "0"},
      {"model.denoising.dn_number", "-1"},
      {"train.eval_top_k", "0"},
  };
  for (const auto& [key, value] : bad) {
    auto c = tiny_config(dir.path(), 0, 1);
    c.assign(key, value);
    try {
      engine::make_experiment(c);
      ADD_FAILURE() << key << "=" << value << " accepted";
    } catch (const util::InputError& e) {
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos)
          << key << "=" << value << ": " << e.what();
    }
  }
}

// A flipped bit in a checkpoint: a CRC-32 mismatch naming the record; a file cut short: a
// truncated archive. A resume steps over a damaged newest checkpoint to the one before it.
TEST(Checkpoint, DamagedFilesAreRefusedAndResumeFallsBack) {
  testing::TempDir dir;
  engine::train(engine::make_experiment(tiny_config(dir.path(), 4, 4)), (dir / "run").string(),
                false);
  const auto ckpts = (dir / "run/checkpoints").string();
  const auto newest = engine::checkpoint_path(ckpts, 4);
  ASSERT_TRUE(fs::exists(newest));
  const auto bytes = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  const std::string original = bytes(newest);
  // The middle of the file is tensor data (the weights are nearly all of it).
  std::string flipped = original;
  flipped[flipped.size() / 2] ^= 0x10;
  testing::write_text(dir / "flipped.pt", flipped);
  try {
    model::load_tensors((dir / "flipped.pt").string());
    FAIL() << "a bit-flipped checkpoint loaded";
  } catch (const util::CorruptInput& e) {
    EXPECT_NE(std::string(e.what()).find("does not match its CRC-32"), std::string::npos)
        << e.what();
  }
  testing::write_text(dir / "cut.pt", original.substr(0, original.size() / 3));
  try {
    model::load_tensors((dir / "cut.pt").string());
    FAIL() << "a truncated checkpoint loaded";
  } catch (const util::CorruptInput& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("truncated or damaged"), std::string::npos) << what;
    EXPECT_EQ(what.find("_use_new_zipfile_serialization"), std::string::npos) << what;
  }
  // The run's newest checkpoint damaged: --resume continues from iteration 2 and says why.
  testing::write_text(newest, flipped);
  const auto resumed = engine::train(engine::make_experiment(tiny_config(dir.path(), 4, 6)),
                                     (dir / "run").string(), true);
  ASSERT_EQ(resumed.loss_history.size(), 4u);
  EXPECT_EQ(resumed.loss_history.front().first, 3);
}

// A whole file whose entries are not what a checkpoint holds: InputErrors naming the entry, not
// LibTorch's errors (exit 1).
TEST(Checkpoint, EntriesOfTheWrongShapeOrKindAreInputErrorsNamingThem) {
  testing::TempDir dir;
  torch::nn::Linear linear(2, 3);
  torch::optim::AdamW optimizer(linear->parameters());
  const auto write = [&](const std::string& key, const torch::Tensor& value) {
    model::TensorDict dict;
    dict.insert("model.weight", linear->weight.detach().clone());
    dict.insert("model.bias", linear->bias.detach().clone());
    dict.insert("trainer.iteration", torch::tensor(int64_t(4)));
    dict.insert("trainer.config", model::string_tensor("a: 1\n"));
    dict.insert("optimizer.0.0.step", torch::tensor(int64_t(4)));
    dict.insert("optimizer.0.0.exp_avg", torch::zeros({3, 2}));
    dict.insert("optimizer.0.0.exp_avg_sq", torch::zeros({3, 2}));
    if (dict.contains(key)) {
      dict[key] = value;
    } else {
      dict.insert(key, value);
    }
    const auto path = (dir / "bad.pt").string();
    model::save_tensors(path, dict);
    return path;
  };
  const auto error_of = [&](const std::string& path) -> std::string {
    try {
      engine::load_checkpoint(path, *linear, &optimizer);
    } catch (const util::InputError& e) {
      return e.what();
    }
    return "(loaded)";
  };
  EXPECT_EQ(error_of(write("trainer.seed", torch::tensor(1))), "(loaded)");
  EXPECT_NE(error_of(write("trainer.iteration", torch::tensor({1, 2})))
                .find("'trainer.iteration' holds 2 values, not one number"),
            std::string::npos);
  EXPECT_NE(error_of(write("optimizer.0.0.exp_avg", torch::zeros({3})))
                .find("'optimizer.0.0.exp_avg' is a Float [3] tensor, not the [3, 2] parameter's"),
            std::string::npos)
      << error_of(write("optimizer.0.0.exp_avg", torch::zeros({3})));
  EXPECT_NE(error_of(write("trainer.rng_cpu", torch::zeros({5})))
                .find("has an entry this build cannot use"),
            std::string::npos);
}

TEST(Evaluation, ADatasetOfOtherCategoriesThanTheModelsIsRefused) {
  testing::TempDir dir;
  auto c = tiny_config(dir.path(), 4, 1);
  c.set("model.num_classes=5");  // the synthetic set has 8
  const auto e = engine::make_experiment(c);
  const auto model = e.model.build();
  const data::CocoDetection val(e.data.val);
  try {
    engine::evaluate_model(*model, val, torch::kCPU, e, false);
    FAIL() << "evaluated 5 classes against 8 categories";
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("has 8 categories but the model predicts 5 classes"),
              std::string::npos)
        << e.what();
  }
  testing::write_text(dir / "a_file", "x");
  EXPECT_THROW(engine::check_output_directory((dir / "a_file").string()), util::InputError);
  EXPECT_NO_THROW(engine::check_output_directory((dir / "new_dir").string()));
}

TEST(Schedule, WarmupThenSteps) {
  engine::SolverOptions s;
  s.steps = {10, 20};
  s.gamma = 0.1;
  s.warmup_iters = 4;
  s.warmup_factor = 0.2;
  EXPECT_DOUBLE_EQ(engine::lr_factor(s, 0), 0.2);
  EXPECT_DOUBLE_EQ(engine::lr_factor(s, 2), 0.2 * 0.5 + 0.5);
  EXPECT_DOUBLE_EQ(engine::lr_factor(s, 4), 1.0);
  EXPECT_DOUBLE_EQ(engine::lr_factor(s, 9), 1.0);
  EXPECT_DOUBLE_EQ(engine::lr_factor(s, 10), 0.1);
  EXPECT_NEAR(engine::lr_factor(s, 25), 0.01, 1e-15);
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
    const auto e = engine::make_experiment(engine::Config::load(entry.path().string()));
    EXPECT_GT(e.solver.max_iter, 0);
    ++count;
  }
  EXPECT_GE(count, 8);
  const auto paper = engine::make_experiment(engine::Config::load(
      std::string(ALIGNDETR_SOURCE_DIR) + "/configs/align_dino_r50_4scale_12ep.yaml"));
  EXPECT_EQ(paper.criterion.k, 3);
  EXPECT_EQ(paper.model.dino.transformer.num_queries, 900);
  EXPECT_EQ(paper.solver.max_iter, 90000);
  EXPECT_EQ(paper.solver.steps, std::vector<int64_t>{82500});
  EXPECT_DOUBLE_EQ(paper.solver.clip_norm, 0.1);
  EXPECT_EQ(paper.data.batch_size, 16);
  const auto released = engine::make_experiment(engine::Config::load(
      std::string(ALIGNDETR_SOURCE_DIR) + "/configs/align_dino_r50_4scale_12ep_released.yaml"));
  EXPECT_EQ(released.criterion.k, 2);
  const auto baseline = engine::make_experiment(engine::Config::load(
      std::string(ALIGNDETR_SOURCE_DIR) + "/configs/dino_r50_4scale_12ep.yaml"));
  EXPECT_EQ(baseline.criterion.class_loss, loss::ClassLoss::kFocal);
  EXPECT_EQ(baseline.criterion.k, 1);
}

}  // namespace
}  // namespace aligndetr
