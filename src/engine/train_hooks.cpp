#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "aligndetr/engine/evaluation.h"
#include "train_run.h"

namespace aligndetr::engine::detail {

LoggingHook::LoggingHook(TrainRun& run, MetricsWriter& metrics, TrainResult& result)
    : run_(run),
      metrics_(metrics),
      result_(result),
      progress_(run.e.solver.max_iter - run.start_iter, "train", "it"),
      last_(std::chrono::steady_clock::now()) {}

void LoggingHook::after_step(int64_t done, const StepOutcome& step) {
  auto& running = run_.log_sums;
  auto& count = run_.log_count;
  for (const auto& [k, v] : step.losses) running[k] += v;
  ++count;
  ++timed_;
  const auto mean = [&](const char* key) {
    const auto it = running.find(key);
    return it == running.end() ? 0.0 : it->second / double(count);
  };
  const double lr = run_.solver->lr(done - 1);
  progress_.advance(
      1, fmt::format("loss {:.3f} cls {:.3f} L1 {:.3f} giou {:.3f} lr {:.2g}", mean("loss"),
                     mean("loss_class"), mean("loss_bbox"), mean("loss_giou"), lr));
  if (done % run_.e.train.log_period != 0 && done != run_.e.solver.max_iter) return;
  // Every rank has the same terms (a step is skipped on all of them or on none).
  std::vector<double> sums;
  for (const auto& kv : running) sums.push_back(kv.second);
  sums = run_.dist.sum(sums);
  std::map<std::string, double> averages;
  size_t i = 0;
  const double n = double(count) * run_.dist.world_size();
  for (const auto& kv : running) averages[kv.first] = sums[i++] / n;
  const auto now = std::chrono::steady_clock::now();
  if (run_.dist.is_main()) {
    metrics_.write(train_json(done, lr, std::chrono::duration<double>(now - last_).count() / timed_,
                              averages));
  }
  result_.loss_history.emplace_back(done, averages["loss"]);
  running.clear();
  count = 0;
  timed_ = 0;
  last_ = now;
}

void CheckpointHook::after_step(int64_t done, const StepOutcome&) {
  if (done % run_.e.train.checkpoint_period == 0 && done != run_.e.solver.max_iter) {
    save_run_checkpoint(run_, done);
  }
}

void EvalHook::after_step(int64_t done, const StepOutcome&) {
  const auto& e = run_.e;
  if (e.train.eval_period <= 0 || done % e.train.eval_period != 0 || done == e.solver.max_iter) {
    return;
  }
  eval::CocoEvalResult r;
  {
    const ModelEma::Swap averaged(run_.ema.get(), *run_.model);
    r = evaluate_model(*run_.model, *run_.val_set, run_.device, e, false, &run_.dist);
  }
  if (!run_.dist.is_main()) return;
  metrics_.write(eval_json(done, r));
  spdlog::info("iteration {}: AP {:.4f} AP50 {:.4f}", done, r.stats[0], r.stats[1]);
  const auto& losses = result_.loss_history;
  if (first_ && r.stats[0] == 0.0 && losses.size() >= 2 &&
      losses.back().second < losses.front().second) {
    spdlog::warn(
        "AP is 0 after {} iterations while the loss falls ({:.3f} -> {:.3f}). The usual "
        "causes: the classes were remapped or re-initialised (see the initial-weights report "
        "above), boxes in the wrong format (COCO's are x, y, width, height in pixels), or a "
        "learning rate far from the preset's. Check what the model is fed with `aligndetr "
        "dataset show --ann {} --images {} --out DIR --augment`",
        done, losses.front().second, losses.back().second, e.data.train.ann_file,
        e.data.train.images_dir);
  }
  first_ = false;
}

}  // namespace aligndetr::engine::detail
