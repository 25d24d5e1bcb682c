#include "aligndetr/engine/trainer.h"

#include <csignal>
#include <filesystem>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "aligndetr/analysis/metrics_log.h"
#include "aligndetr/engine/evaluation.h"
#include "aligndetr/engine/run_dir.h"
#include "aligndetr/engine/stop.h"
#include "aligndetr/model/weights.h"
#include "aligndetr/util/atomic_file.h"
#include "aligndetr/util/error.h"
#include "train_run.h"

namespace aligndetr::engine {

namespace fs = std::filesystem;

namespace {

TrainResult train_run(const Experiment& e, const std::string& output_dir, bool resume,
                      const Distributed& dist) {
  using namespace detail;
  // Rank 0 holds the run directory for the whole run; what interrupted writes left is removed.
  std::optional<RunDirLock> lock;
  if (dist.is_main()) {
    lock.emplace(output_dir);
    const int stale = remove_stale_temporaries(output_dir) +
                      remove_stale_temporaries((fs::path(output_dir) / "checkpoints").string());
    if (stale > 0) {
      spdlog::info("removed {} temporary file(s) that interrupted writes left in {}", stale,
                   output_dir);
    }
  }
  auto run = open_run(e, output_dir, resume, dist);
  data::LoaderOptions lo;
  lo.batch_size = e.data.batch_size;
  lo.workers = e.data.workers;
  lo.seed = e.train.seed;
  lo.rank = dist.rank();
  lo.world_size = dist.world_size();
  data::DataLoader loader(run->train_set, lo);
  const int64_t per_epoch = int64_t(loader.batches_per_epoch());
  if (per_epoch == 0) {
    throw util::InputError(fmt::format(
        "the training set has {} images, fewer than one batch of {} for each of {} rank(s)",
        run->train_set->size(), lo.batch_size, dist.world_size()));
  }
  int64_t micro = run->start_iter * e.solver.accumulate;
  loader.start_epoch(micro / per_epoch, size_t(micro % per_epoch));

  auto criterion = e.criterion;
  if (dist.world_size() > 1) {
    criterion.reduce_num_boxes = [&dist](double local) {
      return dist.sum(local) / dist.world_size();
    };
  }
  MetricsWriter metrics(run->metrics_path);
  TrainResult result;
  LoggingHook logging(*run, metrics, result);
  CheckpointHook checkpoints(*run);
  EvalHook evaluation(*run, metrics, result);
  const std::vector<TrainHook*> hooks = {&logging, &checkpoints, &evaluation};

  for (int64_t iter = run->start_iter; iter < e.solver.max_iter; ++iter) {
    run->solver->begin_step(iter);
    const StepOutcome step = run_step(*run, loader, criterion, micro, per_epoch);
    // Every rank takes the same decisions, or the next collective would pair different steps.
    const auto flags =
        dist.sum(std::vector<double>{step.finite ? 0.0 : 1.0, stop_requested() != 0 ? 1.0 : 0.0});
    if (flags[0] > 0) {
      const std::string what =
          step.finite ? fmt::format("a non-finite loss on another rank at iteration {}", iter + 1)
                      : fmt::format("{} at iteration {}", step.bad, iter + 1);
      if (e.train.skip_nonfinite) {
        spdlog::warn("{}: step skipped", what);
        ++result.skipped_steps;
        run->solver->clear_gradients();
        continue;
      }
      // The parameters are still those of the last good step.
      const auto path = save_run_checkpoint(*run, iter);
      throw TrainingDiverged(what + fmt::format("; the last good state is saved in {}", path),
                             path);
    }
    if (run->solver->step(dist, run->scaler.get())) {
      if (run->ema) run->ema->update(*run->model);
    } else {
      // Not a divergence: the scaler's way of finding float16's range.
      ++result.overflow_steps;
      spdlog::debug("iteration {}: float16 gradients overflowed; step skipped, scale now {}",
                    iter + 1, run->scaler->current_scale());
    }
    for (auto* hook : hooks) hook->after_step(iter + 1, step);
    if (flags[1] > 0) {
      logging.finish();
      const int sig = stop_requested() != 0 ? stop_requested() : SIGTERM;
      const auto path = save_run_checkpoint(*run, iter + 1);
      throw TrainingInterrupted(
          fmt::format("stopped by {} after iteration {} of {}; `--resume` continues from {}",
                      sig == SIGINT    ? "SIGINT (Ctrl-C)"
                      : sig == SIGTERM ? "SIGTERM"
                                       : "signal " + std::to_string(sig),
                      iter + 1, e.solver.max_iter, path),
          sig, path);
    }
  }
  logging.finish();
  if (loader.undecodable() > 0) {
    spdlog::warn(
        "{} training image(s) could not be decoded or were not of their annotated size and were "
        "skipped (see the warnings above; `aligndetr dataset stats --images DIR --decode` finds "
        "them all)",
        loader.undecodable());
  }
  result.iterations = e.solver.max_iter;
  save_run_checkpoint(*run, e.solver.max_iter);
  result.final_weights = (fs::path(output_dir) / "model_final.pt").string();
  // With train.ema the average is the run's result: what is saved and evaluated.
  const ModelEma::Swap averaged(run->ema.get(), *run->model);
  if (dist.is_main()) model::save_module(result.final_weights, *run->model, run->class_names);
  const auto r = evaluate_model(*run->model, *run->val_set, run->device, e, true, &dist);
  if (dist.is_main()) {
    metrics.write(eval_json(e.solver.max_iter, r));
    util::write_file_atomic((fs::path(output_dir) / "eval_final.json").string(),
                            r.stats_json() + "\n");
    analysis::write_training_plots(analysis::read_metrics_log(run->metrics_path), output_dir);
    result.final_eval = r;
  }
  return result;
}

}  // namespace

TrainResult train(const Experiment& e, const std::string& output_dir, bool resume,
                  const Distributed& dist) {
  try {
    return train_run(e, output_dir, resume, dist);
  } catch (const DistributedFailure&) {
    throw;
  } catch (const TrainingDiverged&) {
    throw;  // every rank stops alike
  } catch (const TrainingInterrupted&) {
    throw;
  } catch (const std::exception& err) {
    dist.report_failure(err.what());
    throw;
  }
}

TrainResult train(const Experiment& e, const std::string& output_dir, bool resume) {
  const Distributed single;
  return train(e, output_dir, resume, single);
}

}  // namespace aligndetr::engine
