// Data-parallel training on c10d with Gloo over 127.0.0.1: the collectives between two ranks in
// one process (threads), and whole runs of two `aligndetr train` processes against one process
// with the same global batch: the loss curve and weights, sharded evaluation, resuming across
// world sizes, and a killed rank named by the survivor.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <unistd.h>

#include "aligndetr/coco/annotations.h"
#include "aligndetr/data/synth.h"
#include "aligndetr/engine/checkpoint.h"
#include "aligndetr/engine/distributed.h"
#include "aligndetr/engine/experiment.h"
#include "aligndetr/model/sync_batch_norm.h"
#include "aligndetr/model/weights.h"
#include "aligndetr/util/error.h"
#include "test_support.h"

namespace aligndetr {
namespace {

namespace fs = std::filesystem;

// A port per call, spread by process id so that suites running side by side do not collide.
int next_port() {
  static int offset = 0;
  return 20000 + int(::getpid() % 2000) * 8 + (offset++ % 8);
}

// Runs `body(rank, dist)` on two ranks in two threads; rethrows the first failure.
void two_ranks(const std::function<void(int, engine::Distributed&)>& body, double timeout_s = 30) {
  const int port = next_port();
  std::exception_ptr errors[2];
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      try {
        engine::LaunchEnv env;
        env.rank = r;
        env.world_size = 2;
        env.master_port = port;
        engine::DistributedOptions o;
        o.timeout_s = timeout_s;
        auto dist = engine::Distributed::connect(env, o, torch::kCPU);
        body(r, *dist);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

TEST(Distributed, ASingleProcessReturnsItsInputs) {
  engine::Distributed single;
  EXPECT_EQ(single.world_size(), 1);
  EXPECT_TRUE(single.is_main());
  EXPECT_EQ(single.sum(2.5), 2.5);
  EXPECT_TRUE(single.any(true));
  std::vector<torch::Tensor> t = {torch::arange(3.0)};
  single.average(t);
  EXPECT_TRUE(torch::equal(t[0], torch::arange(3.0)));
  const auto rows = torch::ones({2, 3});
  EXPECT_TRUE(torch::equal(single.all_gather_rows(rows), rows));
}

TEST(Distributed, CollectivesOverTwoRanks) {
  two_ranks([](int rank, engine::Distributed& d) {
    EXPECT_EQ(d.rank(), rank);
    EXPECT_EQ(d.backend(), "gloo");
    // Rank 0 has 3 boxes, rank 1 has 1: the criterion's num_boxes is their mean on both.
    EXPECT_EQ(d.sum(rank == 0 ? 3.0 : 1.0) / d.world_size(), 2.0);
    EXPECT_EQ(d.sum(std::vector<double>{double(rank), 1.0}), (std::vector<double>{1.0, 2.0}));
    EXPECT_TRUE(d.any(rank == 1));
    EXPECT_FALSE(d.any(false));
    // Gradients of two dtypes, in buckets of at most a few bytes: averaged elementwise.
    std::vector<torch::Tensor> grads = {torch::full({2, 2}, float(rank)),
                                        torch::full({3}, double(2 * rank)),
                                        torch::full({1}, float(4 * rank))};
    d.average(grads, /*bucket_bytes=*/8);
    EXPECT_TRUE(torch::equal(grads[0], torch::full({2, 2}, 0.5f)));
    EXPECT_TRUE(torch::equal(grads[1], torch::full({3}, 1.0, torch::kDouble)));
    EXPECT_TRUE(torch::equal(grads[2], torch::full({1}, 2.0f)));
    std::vector<torch::Tensor> params = {torch::full({4}, float(rank + 7))};
    d.broadcast(params);
    EXPECT_TRUE(torch::equal(params[0], torch::full({4}, 7.0f)));
    // Rank 0 contributes two rows, rank 1 none: concatenated in rank order on both.
    const auto mine = rank == 0 ? torch::tensor({1.0, 2.0, 3.0, 4.0}, torch::kDouble).view({2, 2})
                                : torch::empty({0, 2}, torch::kDouble);
    const auto all = d.all_gather_rows(mine);
    EXPECT_TRUE(
        torch::equal(all, torch::tensor({1.0, 2.0, 3.0, 4.0}, torch::kDouble).view({2, 2})));
    d.barrier();
  });
}

// Two ranks with two images each give what one BatchNorm2d gives over the four: outputs, the
// input gradient of the sum of both ranks' losses, the running statistics; the ranks' affine
// gradients add up to the single process's.
TEST(Distributed, SyncBatchNormEqualsBatchNormOverTheWholeBatch) {
  torch::manual_seed(0);
  const auto x = torch::randn({4, 3, 5, 5}) * 2 + 1;
  const auto g = torch::randn({4, 3, 5, 5});
  const auto weight = torch::rand({3}) + 0.5, bias = torch::randn({3});
  torch::nn::BatchNorm2d reference(3);
  {
    torch::NoGradGuard no_grad;
    reference->weight.copy_(weight);
    reference->bias.copy_(bias);
  }
  const auto xr = x.clone().requires_grad_();
  const auto yr = reference(xr);
  (yr * g).sum().backward();
  two_ranks([&](int rank, engine::Distributed& d) {
    model::SyncBatchNorm2d bn(3);
    {
      torch::NoGradGuard no_grad;
      bn->weight.copy_(weight);
      bn->bias.copy_(bias);
    }
    EXPECT_EQ(model::set_sync_batch_norm_reducer(*bn, [&d](torch::Tensor& t) { d.sum_(t); }), 1);
    const auto xs = x.slice(0, 2 * rank, 2 * rank + 2).clone().requires_grad_();
    const auto y = bn(xs);
    EXPECT_TRUE(torch::allclose(y, yr.slice(0, 2 * rank, 2 * rank + 2), 1e-5, 1e-5));
    (y * g.slice(0, 2 * rank, 2 * rank + 2)).sum().backward();
    EXPECT_TRUE(torch::allclose(xs.grad(), xr.grad().slice(0, 2 * rank, 2 * rank + 2), 1e-4, 1e-5));
    auto weight_grad = bn->weight.grad().clone(), bias_grad = bn->bias.grad().clone();
    d.sum_(weight_grad);
    d.sum_(bias_grad);
    EXPECT_TRUE(torch::allclose(weight_grad, reference->weight.grad(), 1e-4, 1e-5));
    EXPECT_TRUE(torch::allclose(bias_grad, reference->bias.grad(), 1e-4, 1e-5));
    EXPECT_TRUE(torch::allclose(bn->running_mean, reference->running_mean, 1e-5, 1e-6));
    EXPECT_TRUE(torch::allclose(bn->running_var, reference->running_var, 1e-5, 1e-6));
    // Evaluation uses the running statistics, as BatchNorm2d.
    bn->eval();
    reference->eval();
    EXPECT_TRUE(torch::allclose(bn(x), reference(x), 1e-5, 1e-5));
  });
}

TEST(Distributed, SyncBnIsABackboneNormChoice) {
  auto config =
      engine::Config::load(std::string(ALIGNDETR_SOURCE_DIR) + "/configs/align_dino_tiny.yaml");
  config.set("model.backbone.sync_bn=true");
  try {
    engine::model_spec(config);
    FAIL() << "sync_bn with the preset's FrozenBN was accepted";
  } catch (const util::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("sync_bn needs model.backbone.norm BN (it is 'FrozenBN')"),
              std::string::npos)
        << e.what();
  }
  config.set("model.backbone.norm=BN");
  const auto detector = engine::model_spec(config).build();
  int synced = 0, plain = 0;
  for (const auto& m : detector->modules()) {
    synced += m->as<model::SyncBatchNorm2dImpl>() != nullptr;
    plain += m->as<torch::nn::BatchNorm2dImpl>() != nullptr;
  }
  EXPECT_GT(synced, 0);
  EXPECT_EQ(plain, 0);
}

TEST(Distributed, ARankThatRaisesIsNamedByTheOthers) {
  std::string message;
  two_ranks([&](int rank, engine::Distributed& d) {
    if (rank == 1) {
      d.report_failure("cannot read image 17");
      return;
    }
    try {
      d.sum(1.0);
      ADD_FAILURE() << "the collective succeeded without rank 1";
    } catch (const engine::DistributedFailure& e) {
      message = e.what();
    }
  });
  EXPECT_NE(message.find("rank 1 failed: cannot read image 17"), std::string::npos) << message;
}

TEST(Distributed, LaunchVariablesAreCheckedBeforeAnyWork) {
  const auto with = [](const std::vector<std::pair<const char*, const char*>>& vars) {
    for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) {
      ::unsetenv(name);
    }
    for (const auto& [k, v] : vars) ::setenv(k, v, 1);
  };
  with({});
  EXPECT_EQ(engine::launch_env_from_environment().world_size, 1);
  with({{"WORLD_SIZE", "2"},
        {"RANK", "1"},
        {"LOCAL_RANK", "1"},
        {"MASTER_ADDR", "10.0.0.1"},
        {"MASTER_PORT", "29400"}});
  const auto env = engine::launch_env_from_environment();
  EXPECT_EQ(env.rank, 1);
  EXPECT_EQ(env.world_size, 2);
  EXPECT_EQ(env.master_addr, "10.0.0.1");
  EXPECT_EQ(env.master_port, 29400);
  for (const auto& bad : std::vector<std::vector<std::pair<const char*, const char*>>>{
           {{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}},  // no RANK
           {{"WORLD_SIZE", "2"}, {"RANK", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}},
           {{"WORLD_SIZE", "two"}},
           {{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_PORT", "1"}},  // no MASTER_ADDR
           {{"WORLD_SIZE", "2"}, {"RANK", "0"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "0"}}}) {
    with(bad);
    EXPECT_THROW(engine::launch_env_from_environment(), util::InputError);
  }
  with({});
}

// --- Whole runs ---------------------------------------------------------------------------

// The trainer tests' tiny DINO on 4 synthetic images, every one cropped to 96x96 and resized to
// 128x128 (so no batch pads; the crop's position is drawn from the sample's own seed, the same
// in every process), and no denoising queries: a step's result depends only on which images it
// takes, not on the process that draws them.
std::string write_config(const fs::path& dir, int batch, int64_t max_iter) {
  data::SynthOptions synth;
  synth.out_dir = (dir / "synth").string();
  synth.train_images = 4;
  synth.val_images = 3;
  synth.size = 160;
  synth.seed = 3;
  synth.min_object_size = 16;
  synth.threads = 1;
  if (!fs::exists(dir / "synth/annotations/instances_train.json")) {
    data::write_synthetic_dataset(synth);
  }
  const fs::path root = synth.out_dir;
  const std::string text = fmt::format(R"(
model:
  type: dino
  num_classes: 8
  backbone: {{depth: 18, freeze_at: 1, out_stages: [2, 3, 4]}}
  neck: {{num_extra_levels: 1}}
  transformer: {{embed_dim: 64, num_heads: 4, num_points: 2, encoder_layers: 1, decoder_layers: 2,
                ffn_dim: 128, num_queries: 50}}
  denoising: {{dn_number: 0}}
criterion:
  loss: ia_bce
  k: 3
  alpha: 0.25
  gamma: 2.0
  tau: 1.5
  weights: {{class: 1.0, bbox: 5.0, giou: 2.0}}
  matcher: {{cost_class: 2.0, cost_bbox: 5.0, cost_giou: 2.0}}
data:
  train: {{ann: {0}/annotations/instances_train.json, images: {0}/images/train}}
  val: {{ann: {0}/annotations/instances_val.json, images: {0}/images/val}}
  batch_size: {1}
  workers: 1
  transforms:
    flip_prob: 0.0
    crop_prob: 1.0
    crop_resize_sizes: [140]
    crop_min: 96
    crop_max: 96
    train_short_sizes: [128]
    train_max_size: 192
    test_short_size: 128
    test_max_size: 192
solver:
  lr: 2.0e-5
  backbone_lr_mult: 0.1
  max_iter: {2}
  steps: [100000]
train:
  checkpoint_period: 5
  keep_checkpoints: 5
  eval_period: 0
  log_period: 1
  seed: 7
  device: cpu
  eval_top_k: 100
  dist_timeout_s: 20
)",
                                       root.string(), batch, max_iter);
  const auto path = dir / fmt::format("b{}_i{}.yaml", batch, max_iter);
  testing::write_text(path, text);
  return path.string();
}

struct Run {
  int exit_code = -1;
  std::string log;
};

// `world` processes of `aligndetr train` (one thread each) through scripts/dist-train.sh.
Run train(int world, const std::string& config, const fs::path& out, bool resume = false) {
  const fs::path log = out.string() + ".log";
  const std::string cmd = fmt::format(
      "bash {}/scripts/dist-train.sh -n {} -t 1 -p {} -b {} -- --config {} --output {}{} >{} 2>&1",
      ALIGNDETR_SOURCE_DIR, world, next_port(), ALIGNDETR_BIN, config, out.string(),
      resume ? " --resume" : "", log.string());
  Run run;
  const int status = std::system(cmd.c_str());
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(log);
  run.log.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return run;
}

// The "loss" of every train line of metrics.jsonl, by iteration.
std::vector<double> losses(const fs::path& run_dir) {
  std::ifstream in(run_dir / "metrics.jsonl");
  std::vector<double> out;
  static const std::regex loss_re(R"re("type": "train".*"loss": ([-0-9.e]+))re");
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_search(line, m, loss_re)) out.push_back(std::stod(m[1]));
  }
  return out;
}

double max_weight_difference(const fs::path& a, const fs::path& b, double* scale) {
  const auto x = model::load_tensors(a.string());
  const auto y = model::load_tensors(b.string());
  double worst = 0;
  *scale = 0;
  for (const auto& kv : x) {
    if (!kv.value().is_floating_point()) continue;
    worst = std::max(worst, (kv.value() - y[kv.key()]).abs().max().item<double>());
    *scale = std::max(*scale, kv.value().abs().max().item<double>());
  }
  return worst;
}

std::string read(const fs::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The two runs add the same float32 numbers in another order (each rank's backward over one
// image, then the average, against one backward over both), so they differ in the last bits.
// AdamW turns such noise on a near-zero gradient into a reversed step (2 lr), and a few of those
// can flip a matching or a proposal, after which the runs part; lr 2e-5 keeps 20 steps clear of
// that. Measured: losses within 1.5e-7 (LibTorch 1.13) and 1.7e-6 (2.x) of each other
// (relative), weights within 2.3e-7 and 4.5e-6 (the backbone channels-last; in NCHW 2.3e-6 and
// 2.4e-6, 1.3e-5 and 1.3e-5). The weights' bound is one reversed step: more
// means a difference that is not rounding (an unaveraged gradient moves weights by up to 20 lr
// here). A missing gradient average or an unaveraged num_boxes shows in the loss at the second
// or the first step, by far more than its bound.
constexpr double kLossTolerance = 1e-5;
constexpr double kWeightTolerance = 2 * 2e-5;  // 2 lr

TEST(DataParallel, TwoProcessesOfOneImageEqualOneProcessOfTwo) {
  testing::TempDir dir;
  const auto one = train(1, write_config(dir.path(), 2, 20), dir / "one");
  ASSERT_EQ(one.exit_code, 0) << one.log;
  const auto two = train(2, write_config(dir.path(), 1, 20), dir / "two");
  ASSERT_EQ(two.exit_code, 0) << two.log;
  EXPECT_NE(two.log.find("data-parallel: 2 ranks (gloo), 1 image(s) per rank per step"),
            std::string::npos)
      << two.log;

  // The ranks' images have different box counts: num_boxes must be averaged for this to hold.
  const auto train_set = coco::read_coco((dir / "synth/annotations/instances_train.json").string());
  std::map<int64_t, int> boxes;
  for (const auto& a : train_set.annotations) ++boxes[a.image_id];
  std::set<int> counts;
  for (const auto& [id, n] : boxes) counts.insert(n);
  EXPECT_GT(counts.size(), 1u) << "every image has the same number of boxes";

  const auto a = losses(dir / "one"), b = losses(dir / "two");
  ASSERT_EQ(a.size(), 20u);
  ASSERT_EQ(b.size(), 20u);
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::abs(b[i] - a[i]) / std::abs(a[i]));
    EXPECT_NEAR(b[i], a[i], kLossTolerance * std::abs(a[i])) << "iteration " << i + 1;
  }
  std::printf("largest relative loss difference %.3g\n", worst);
  double scale = 0;
  const double diff =
      max_weight_difference(dir / "one/model_final.pt", dir / "two/model_final.pt", &scale);
  std::printf("max |w(2x1) - w(1x2)| = %.3g (max |w| %.3g)\n", diff, scale);
  EXPECT_LT(diff, kWeightTolerance);

  // Rank 0 alone wrote the run; its sharded final evaluation is a single process's, exactly.
  EXPECT_EQ(fs::exists(dir / "two/checkpoints"), true);
  const auto eval = testing::run_cli(
      "--threads 1 eval --config " + write_config(dir.path(), 1, 20) + " --weights " +
      (dir / "two/model_final.pt").string() + " --out " + (dir / "two_eval").string());
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  EXPECT_EQ(read(dir / "two/eval_final.json"), read(dir / "two_eval/eval.json"));
}

TEST(DataParallel, CheckpointsResumeOnAnotherWorldSize) {
  testing::TempDir dir;
  const auto whole = train(1, write_config(dir.path(), 2, 20), dir / "whole");
  ASSERT_EQ(whole.exit_code, 0) << whole.log;
  // 2 processes to iteration 10, then 1 process to 20; and the reverse.
  for (const auto& [first, second] : {std::pair{2, 1}, std::pair{1, 2}}) {
    const fs::path out = dir / fmt::format("from{}to{}", first, second);
    const auto a = train(first, write_config(dir.path(), 2 / first, 10), out);
    ASSERT_EQ(a.exit_code, 0) << a.log;
    const auto b = train(second, write_config(dir.path(), 2 / second, 20), out, true);
    ASSERT_EQ(b.exit_code, 0) << b.log;
    EXPECT_NE(b.log.find("resumed from"), std::string::npos) << b.log;
    const auto expected = losses(dir / "whole"), got = losses(out);
    ASSERT_EQ(got.size(), 20u) << out;
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_NEAR(got[i], expected[i], kLossTolerance * std::abs(expected[i]))
          << out << " iteration " << i + 1;
    }
    double scale = 0;
    EXPECT_LT(max_weight_difference(dir / "whole/model_final.pt", out / "model_final.pt", &scale),
              kWeightTolerance)
        << out;
  }
}

TEST(DataParallel, AKilledRankIsNamedByTheSurvivorWithinTheTimeout) {
  testing::TempDir dir;
  const std::string config = write_config(dir.path(), 1, 100000);
  const int port = next_port();
  const fs::path out = dir / "run";
  // Each rank started on its own, so that rank 1's process can be killed.
  for (int r = 0; r < 2; ++r) {
    const std::string cmd = fmt::format(
        "(RANK={0} WORLD_SIZE=2 LOCAL_RANK={0} MASTER_ADDR=127.0.0.1 MASTER_PORT={1} {2} "
        "--threads 1 train --config {3} --output {4} >{5}/rank{0}.log 2>&1 & echo $! "
        ">{5}/rank{0}.pid; wait $!; echo $? >{5}/rank{0}.rc) >/dev/null 2>&1 &",
        r, port, ALIGNDETR_BIN, config, out.string(), dir.path().string());
    ASSERT_EQ(std::system(("bash -c '" + cmd + "'").c_str()), 0);
  }
  // Kill rank 1 once training is under way.
  for (int i = 0; i < 50 && !(fs::exists(dir / "rank0.pid") && fs::exists(dir / "rank1.pid"));
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const auto start = std::chrono::steady_clock::now();
  while (losses(out).size() < 3 &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(120)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_GE(losses(out).size(), 3u) << read(dir / "rank0.log") << read(dir / "rank1.log");
  const auto pid_of = [&](int rank) {
    return std::to_string(std::stol(read(dir / fmt::format("rank{}.pid", rank))));
  };
  const std::string pid1 = pid_of(1), pid0 = pid_of(0);
  ASSERT_EQ(std::system(("kill -9 " + pid1).c_str()), 0);
  const auto killed = std::chrono::steady_clock::now();
  // Rank 0 is not a child of this process: wait for it to be gone.
  while (std::system(("kill -0 " + pid0 + " 2>/dev/null").c_str()) == 0 &&
         std::chrono::steady_clock::now() - killed < std::chrono::seconds(60)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  std::printf("rank 0 exited %.1f s after rank 1 was killed\n", seconds);
  EXPECT_LT(seconds, 20.0) << "train.dist_timeout_s is 20\n" << read(dir / "rank0.log");
  const auto log0 = read(dir / "rank0.log");
  EXPECT_NE(log0.find("rank 1 stopped"), std::string::npos) << log0;
  // The rank's exit code (written by the waiting shell; it may lag the process a moment).
  for (int i = 0; i < 50 && !fs::exists(dir / "rank0.rc"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(std::stoi(read(dir / "rank0.rc")), util::kExitDistributed) << log0;
}

}  // namespace
}  // namespace aligndetr
