#include "train_run.h"

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "aligndetr/engine/init_weights.h"
#include "aligndetr/model/sync_batch_norm.h"
#include "aligndetr/util/atomic_file.h"
#include "aligndetr/util/error.h"

namespace aligndetr::engine::detail {

namespace fs = std::filesystem;

namespace {

// Training and validation must speak of the same classes, or the evaluation would silently score
// one against the other's labels.
void check_same_categories(const coco::CocoDataset& train_set, const coco::CocoDataset& val_set,
                           const std::string& train_file, const std::string& val_file) {
  const auto describe = [](const coco::CocoCategory& c) {
    return fmt::format("id {} '{}'", c.id, c.name);
  };
  const auto by_id = [](std::vector<coco::CocoCategory> c) {
    std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    return c;
  };
  const auto train = by_id(train_set.categories), val = by_id(val_set.categories);
  const size_t n = std::max(train.size(), val.size());
  for (size_t i = 0; i < n; ++i) {
    const auto* t = i < train.size() ? &train[i] : nullptr;
    const auto* v = i < val.size() ? &val[i] : nullptr;
    if (t && v && t->id == v->id && t->name == v->name) continue;
    throw util::InputError(fmt::format(
        "the training and validation files have different categories: {} has {}, {} has {}",
        train_file, t ? describe(*t) : "nothing", val_file, v ? describe(*v) : "nothing"));
  }
}

int64_t global_batch(const Experiment& e, const Distributed& dist) {
  return int64_t(e.data.batch_size) * e.solver.accumulate * dist.world_size();
}

// model.init_weights.<n>.sha256: the digest of the n-th initial weights file.
bool is_init_weights_digest(const std::string& key) {
  const std::string prefix = "model.init_weights.", suffix = ".sha256";
  if (key.size() <= prefix.size() + suffix.size() || key.compare(0, prefix.size(), prefix) != 0 ||
      key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return false;
  }
  return std::all_of(key.begin() + std::ptrdiff_t(prefix.size()),
                     key.end() - std::ptrdiff_t(suffix.size()),
                     [](unsigned char c) { return std::isdigit(c) != 0; });
}

// Keys a resumed run may change without changing what it computes: how long it runs, how often
// it logs, evaluates and checkpoints, where and with how many loader threads. The batch is
// compared as the images per optimizer step over all ranks (the per-rank batch follows the
// number of ranks), and the digests of initial weights are records, not settings.
bool free_to_change(const std::string& key) {
  static const std::set<std::string> free = {
      "solver.max_iter",        "train.log_period", "train.eval_period",  "train.checkpoint_period",
      "train.keep_checkpoints", "train.device",     "train.dist_backend", "train.dist_timeout_s",
      "train.eval_top_k",       "data.workers",     "data.batch_size",    "solver.accumulate"};
  return free.count(key) > 0 || is_init_weights_digest(key);
}

bool same_value(const std::string& a, const std::string& b) {
  if (a == b) return true;
  char *end_a = nullptr, *end_b = nullptr;
  const double x = std::strtod(a.c_str(), &end_a), y = std::strtod(b.c_str(), &end_b);
  return !a.empty() && !b.empty() && *end_a == '\0' && *end_b == '\0' && x == y;
}

// "key: before -> now" for every setting that differs.
std::vector<std::string> config_changes(const Config& before, const Config& now,
                                        int64_t global_before, int64_t global_now) {
  const auto a = before.leaf_values(), b = now.leaf_values();
  std::set<std::string> keys;
  for (const auto& kv : a) keys.insert(kv.first);
  for (const auto& kv : b) keys.insert(kv.first);
  std::vector<std::string> changes;
  for (const auto& key : keys) {
    if (free_to_change(key)) continue;
    const auto ia = a.find(key), ib = b.find(key);
    const std::string va = ia == a.end() ? "(absent)" : ia->second;
    const std::string vb = ib == b.end() ? "(absent)" : ib->second;
    if (!same_value(va, vb)) changes.push_back(fmt::format("{}: {} -> {}", key, va, vb));
  }
  if (global_before > 0 && global_before != global_now) {
    changes.push_back(
        fmt::format("images per optimizer step (all ranks): {} -> {}", global_before, global_now));
  }
  return changes;
}

// Resumes from the newest checkpoint; returns its iteration (0 without one).
int64_t resume_run(TrainRun& run) {
  const auto candidates = checkpoints_newest_first(run.ckpt_dir);
  if (candidates.empty()) {
    spdlog::warn("--resume: no checkpoint in {}; starting from scratch", run.ckpt_dir);
    return 0;
  }
  // A damaged newest checkpoint (a disk fault, a copy cut short) falls back to the one before;
  // one that is whole but does not fit this model is an error, whichever it is.
  std::string last;
  CheckpointInfo info;
  for (const auto& path : candidates) {
    try {
      info = load_checkpoint(path, *run.model, &run.solver->optimizer(), run.dist.rank(),
                             run.ema.get());
      last = path;
      break;
    } catch (const util::CorruptInput& e) {
      spdlog::warn("--resume: {}; trying the previous checkpoint", e.what());
    }
  }
  if (last.empty()) {
    throw util::CorruptInput(fmt::format(
        "--resume: every checkpoint in {} is damaged ({} tried); see the warnings above",
        run.ckpt_dir, candidates.size()));
  }
  if (run.ema && !info.ema_restored) {
    spdlog::warn("{} holds no weight average (train.ema was off): it starts from the weights",
                 last);
    run.ema = std::make_unique<ModelEma>(*run.model, run.e.train.ema_decay);
  }
  if (run.scaler && info.grad_scale > 0)
    run.scaler->load(info.grad_scale, info.grad_growth_tracker);
  const int64_t now = global_batch(run.e, run.dist);
  if (!info.config_yaml.empty()) {
    const auto changes =
        config_changes(Config::parse(info.config_yaml, last), run.resolved, info.global_batch, now);
    if (!changes.empty() && !run.e.train.resume_with_changes) {
      throw util::InputError(fmt::format(
          "--resume: this config differs from the one {} was trained with:\n  {}\nResume with "
          "the run's own config ({}), or pass --resume-with-changes to continue with these "
          "changes",
          last, fmt::join(changes, "\n  "), (fs::path(run.output_dir) / "config.yaml").string()));
    }
    if (!changes.empty()) {
      const auto kept =
          (fs::path(run.output_dir) / fmt::format("config.before_{:07d}.yaml", info.iteration))
              .string();
      if (run.dist.is_main()) util::write_file_atomic(kept, info.config_yaml);
      spdlog::warn(
          "--resume-with-changes: continuing from iteration {} with {} change(s) (the "
          "config until then is kept as {}):\n  {}",
          info.iteration, changes.size(), kept, fmt::join(changes, "\n  "));
    }
  }
  if (!info.rng_restored) {
    // A rank the checkpoint's run did not have: its own stream, reproducible from the seed.
    torch::manual_seed(run.e.train.seed + uint64_t(run.dist.rank()) * 1000003u +
                       uint64_t(info.iteration));
    spdlog::warn(
        "rank {}: the checkpoint holds no generator state for this rank ({} rank(s) "
        "wrote it); seeded from train.seed",
        run.dist.rank(), info.world_size);
  }
  // The checkpoint holds the window's sums of rank means: rank 0 takes them, as many times as
  // there are ranks now, for the log's sum over ranks and division by steps x ranks to give
  // them back.
  run.log_count = info.log_count;
  for (const auto& [term, sum] : info.log_sums) {
    run.log_sums[term] = run.dist.is_main() ? sum * run.dist.world_size() : 0.0;
  }
  if (run.dist.is_main()) truncate_metrics(run.metrics_path, info.iteration);
  spdlog::info("resumed from {} at iteration {}", last, info.iteration);
  return info.iteration;
}

// config.yaml of the run: the resolved config, with the initial weights' digests (those the
// first run recorded stay in a resumed run's).
void write_run_config(TrainRun& run) {
  const auto config_path = (fs::path(run.output_dir) / "config.yaml").string();
  if (run.start_iter > 0 && fs::exists(config_path)) {
    const Config before = Config::load(config_path);
    for (size_t i = 0; i < run.resolved.list_size("model.init_weights"); ++i) {
      const std::string key = fmt::format("model.init_weights.{}.", i);
      if (before.has(key + "sha256") && !run.resolved.has(key + "sha256") &&
          before.get_string(key + "file", "") == run.resolved.get_string(key + "file")) {
        run.resolved.assign(key + "sha256", before.get_string(key + "sha256"));
      }
    }
  }
  util::write_file_atomic(config_path, run.resolved.dump());
}

}  // namespace

std::unique_ptr<TrainRun> open_run(const Experiment& e, const std::string& output_dir, bool resume,
                                   const Distributed& dist) {
  auto run = std::make_unique<TrainRun>(e, dist);
  run->device = parse_device(e.train.device);
  if (run->device.is_cuda() && dist.world_size() > 1) {
    run->device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(dist.local_rank()));
  }
  run->output_dir = output_dir;
  run->ckpt_dir = (fs::path(output_dir) / "checkpoints").string();
  run->metrics_path = (fs::path(output_dir) / "metrics.jsonl").string();
  if (dist.is_main()) fs::create_directories(run->ckpt_dir);
  // Rank 0 draws the stream a single process draws; the others their own.
  torch::manual_seed(e.train.seed + uint64_t(dist.rank()));
  run->train_set = std::make_shared<const data::CocoDetection>(e.data.train);
  run->val_set = std::make_unique<data::CocoDetection>(e.data.val);
  if (run->train_set->categories().num_classes() != e.model.num_classes()) {
    throw util::InputError(
        fmt::format("the training set has {} categories but model.num_classes is {}",
                    run->train_set->categories().num_classes(), e.model.num_classes()));
  }
  check_same_categories(run->train_set->coco(), run->val_set->coco(), e.data.train.ann_file,
                        e.data.val.ann_file);
  for (int c = 0; c < run->train_set->categories().num_classes(); ++c) {
    run->class_names.push_back(run->train_set->categories().name(c));
  }
  run->model = e.model.build();
  run->model->to(run->device);
  run->model->train();
  run->solver = std::make_unique<Solver>(*run->model, e.solver);
  run->resolved = e.config;
  if (e.train.amp == Amp::kFloat16) {
    run->scaler = std::make_unique<GradScaler>(GradScalerOptions{}, run->device);
  }
  // A resumed run loads the average into this one; a new run makes its own below, once its
  // weights are final.
  if (e.train.ema && resume) run->ema = std::make_unique<ModelEma>(*run->model, e.train.ema_decay);
  if (resume) run->start_iter = resume_run(*run);
  if (run->start_iter == 0 && !e.model.init.files.empty()) {
    // A resumed run never re-applies them: its checkpoint holds the weights.
    const auto init = apply_init_weights(*run->model, e.model.init, run->class_names);
    spdlog::info("initial weights:\n{}", init.text);
    for (size_t i = 0; i < init.sha256.size(); ++i) {
      run->resolved.assign(fmt::format("model.init_weights.{}.sha256", i), init.sha256[i]);
    }
  }
  if (dist.world_size() > 1) {
    const int synced = model::set_sync_batch_norm_reducer(
        *run->model, [&dist](torch::Tensor& t) { dist.sum_(t); });
    if (synced > 0)
      spdlog::info("{} batch norms synchronised over {} ranks", synced, dist.world_size());
    std::vector<torch::Tensor> state;
    for (auto& p : run->model->parameters()) state.push_back(p.data());
    for (auto& b : run->model->buffers()) state.push_back(b);
    dist.broadcast(state);
  }
  if (e.train.ema && run->start_iter == 0) {
    // After the initial weights and rank 0's broadcast: the average starts where training does.
    run->ema = std::make_unique<ModelEma>(*run->model, e.train.ema_decay);
  }
  if (dist.is_main()) {
    write_run_config(*run);
    if (run->start_iter == 0) {
      // A new run in a directory that held one: leftovers would mix two runs in the log and
      // plots and let a later --resume pick up the old run's checkpoints.
      const int removed = remove_checkpoints(run->ckpt_dir);
      if (removed > 0 || fs::exists(run->metrics_path)) {
        spdlog::warn(
            "{} holds an earlier run: its metrics.jsonl and {} checkpoint(s) are replaced by this "
            "run's (--resume continues a run instead)",
            output_dir, removed);
      }
      util::write_file_atomic(run->metrics_path, "");
    }
  }
  return run;
}

std::string save_run_checkpoint(TrainRun& run, int64_t iteration) {
  CheckpointRun ranks;
  ranks.ema = run.ema.get();
  if (run.scaler) {
    ranks.grad_scale = run.scaler->current_scale();
    ranks.grad_growth_tracker = run.scaler->growth_tracker();
  }
  ranks.world_size = run.dist.world_size();
  ranks.global_batch = global_batch(run.e, run.dist);
  if (run.log_count > 0) {
    std::vector<double> sums;
    for (const auto& kv : run.log_sums) sums.push_back(kv.second);
    sums = run.dist.sum(sums);
    size_t i = 0;
    for (const auto& kv : run.log_sums) {
      ranks.log_sums[kv.first] = sums[i++] / run.dist.world_size();
    }
    ranks.log_count = run.log_count;
  }
  if (run.dist.world_size() > 1) {
    torch::Tensor state;
    {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      state = gen.get_state();
    }
    const auto all = run.dist.all_gather_rows(state.view({1, -1}));
    for (int r = 1; r < run.dist.world_size(); ++r) ranks.rng_cpu.push_back(all[r].clone());
  }
  const auto path = checkpoint_path(run.ckpt_dir, iteration);
  if (run.dist.is_main()) {
    save_checkpoint(path, *run.model, run.solver->optimizer(), iteration, run.resolved.dump(),
                    run.class_names, ranks);
    prune_checkpoints(run.ckpt_dir, run.e.train.keep_checkpoints);
  }
  return path;
}

}  // namespace aligndetr::engine::detail
