#include "aligndetr/engine/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <unordered_set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "aligndetr/analysis/metrics_log.h"
#include "aligndetr/data/loader.h"
#include "aligndetr/engine/checkpoint.h"
#include "aligndetr/engine/inference.h"
#include "aligndetr/engine/init_weights.h"
#include "aligndetr/model/weights.h"
#include "aligndetr/util/atomic_file.h"
#include "aligndetr/util/error.h"
#include "aligndetr/util/progress.h"

namespace aligndetr::engine {

namespace fs = std::filesystem;

namespace {

// Four groups: backbone or not, times decay or not (no weight decay on normalization layers).
std::vector<torch::optim::OptimizerParamGroup> param_groups(torch::nn::Module& model,
                                                            const SolverOptions& s) {
  std::unordered_set<const void*> norm_params;
  for (const auto& m : model.modules()) {
    if (m->as<torch::nn::LayerNorm>() || m->as<torch::nn::GroupNorm>() ||
        m->as<torch::nn::BatchNorm2d>()) {
      for (const auto& p : m->parameters()) norm_params.insert(p.unsafeGetTensorImpl());
    }
  }
  std::vector<torch::Tensor> groups[4];
  for (const auto& kv : model.named_parameters()) {
    if (!kv.value().requires_grad()) continue;
    const bool backbone = kv.key().rfind("backbone.", 0) == 0;
    const bool norm = norm_params.count(kv.value().unsafeGetTensorImpl()) > 0;
    groups[(backbone ? 2 : 0) + (norm ? 1 : 0)].push_back(kv.value());
  }
  std::vector<torch::optim::OptimizerParamGroup> out;
  for (int g = 0; g < 4; ++g) {
    auto opts =
        std::make_unique<torch::optim::AdamWOptions>(s.lr * (g >= 2 ? s.backbone_lr_mult : 1.0));
    opts->betas({s.beta1, s.beta2}).weight_decay(g % 2 ? 0.0 : s.weight_decay);
    out.emplace_back(groups[g], std::move(opts));
  }
  return out;
}

double base_lr(int group, const SolverOptions& s) {
  return s.lr * (group >= 2 ? s.backbone_lr_mult : 1.0);
}

void set_lr(torch::optim::AdamW& opt, const SolverOptions& s, int64_t iteration) {
  const double f = lr_factor(s, iteration);
  auto& groups = opt.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    static_cast<torch::optim::AdamWOptions&>(groups[g].options()).lr(base_lr(int(g), s) * f);
  }
}

class MetricsLog {
 public:
  explicit MetricsLog(const std::string& path) : out_(path, std::ios::app) {
    if (!out_) throw util::InputError(fmt::format("cannot open '{}' for writing", path));
  }
  void write(const std::string& json_line) {
    out_ << json_line << '\n';
    out_.flush();
  }

 private:
  std::ofstream out_;
};

// On resume, lines logged after the checkpoint's iteration belong to the interrupted run's lost
// tail; drop them so the log reads as one run.
void truncate_metrics(const std::string& path, int64_t iteration) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  static const std::regex iter_re(R"re("iter": (\d+))re");
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_search(line, m, iter_re) && std::stoll(m[1]) > iteration) continue;
    kept += line + "\n";
  }
  in.close();
  util::write_file_atomic(path, kept);
}

std::string eval_json(int64_t iteration, const eval::CocoEvalResult& r) {
  std::string s = fmt::format("{{\"iter\": {}, \"type\": \"eval\"", iteration);
  for (int i = 0; i < eval::kCocoStats; ++i)
    s += fmt::format(", \"{}\": {:.6f}", eval::kCocoStatNames[size_t(i)], r.stats[size_t(i)]);
  return s + ", \"per_category\": " + r.per_category_json() + "}";
}

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

}  // namespace

eval::CocoEvalResult evaluate_model(model::DetectorImpl& model, const data::CocoDetection& val,
                                    const torch::Device& device, const Experiment& e,
                                    bool progress) {
  InferenceOptions io;
  io.batch_size = e.data.batch_size;
  io.workers = e.data.workers;
  io.postprocess = e.postprocess();
  io.progress = progress;
  const auto dets = run_inference(model, val, device, io);
  if (dets.empty()) {
    eval::CocoEvalResult empty;
    empty.stats.fill(0.0);
    return empty;
  }
  return eval::evaluate_coco(val.coco(), dets);
}

EvaluationResult evaluate_with_analysis(model::DetectorImpl& model, const data::CocoDetection& val,
                                        const torch::Device& device, const Experiment& e,
                                        bool with_analysis) {
  EvaluationResult result;
  if (!with_analysis) {
    result.coco = evaluate_model(model, val, device, e);
    return result;
  }
  analysis::AlignmentAccumulator alignment{analysis::AlignmentOptions{}};
  InferenceOptions io;
  io.batch_size = e.data.batch_size;
  io.workers = e.data.workers;
  io.postprocess = e.postprocess();
  const auto dets = run_inference(
      model, val, device, io, [&](const data::Batch& b, const model::DetectorOutputs& out) {
        alignment.add_batch(out.decoder.back().logits, out.decoder.back().boxes, b.targets);
      });
  if (dets.empty()) {
    result.coco.stats.fill(0.0);
  } else {
    result.coco = eval::evaluate_coco(val.coco(), dets);
  }
  result.alignment = alignment.report();
  return result;
}

std::vector<std::string> write_evaluation(const EvaluationResult& result, const std::string& dir) {
  fs::create_directories(dir);
  std::vector<std::string> written;
  const auto eval_path = (fs::path(dir) / "eval.json").string();
  util::write_file_atomic(eval_path, result.coco.stats_json() + "\n");
  written.push_back(eval_path);
  for (const auto& [name, text] :
       {std::pair{"per_category.txt", result.coco.per_category_table()},
        std::pair{"per_category.json", result.coco.per_category_json() + "\n"}}) {
    const auto path = (fs::path(dir) / name).string();
    util::write_file_atomic(path, text);
    written.push_back(path);
  }
  if (result.alignment) {
    const auto path = (fs::path(dir) / "alignment.json").string();
    util::write_file_atomic(path, result.alignment->to_json() + "\n");
    written.push_back(path);
    for (const auto& p : analysis::write_alignment_plots(*result.alignment, dir)) {
      written.push_back(p.string());
    }
  }
  return written;
}

TrainResult train(const Experiment& e, const std::string& output_dir, bool resume,
                  const DistributedHooks& hooks) {
  const auto device = parse_device(e.train.device);
  const std::string ckpt_dir = (fs::path(output_dir) / "checkpoints").string();
  fs::create_directories(ckpt_dir);
  torch::manual_seed(e.train.seed);
  auto train_set = std::make_shared<const data::CocoDetection>(e.data.train);
  const data::CocoDetection val_set(e.data.val);
  if (train_set->categories().num_classes() != e.model.num_classes()) {
    throw util::InputError(
        fmt::format("the training set has {} categories but model.num_classes is {}",
                    train_set->categories().num_classes(), e.model.num_classes()));
  }
  check_same_categories(train_set->coco(), val_set.coco(), e.data.train.ann_file,
                        e.data.val.ann_file);
  std::vector<std::string> class_names;
  for (int c = 0; c < train_set->categories().num_classes(); ++c) {
    class_names.push_back(train_set->categories().name(c));
  }
  const auto model = e.model.build();
  model->to(device);
  model->train();
  torch::optim::AdamW optimizer(param_groups(*model, e.solver));

  const std::string metrics_path = (fs::path(output_dir) / "metrics.jsonl").string();
  int64_t start_iter = 0;
  if (resume) {
    const auto last = latest_checkpoint(ckpt_dir);
    if (last.empty()) {
      spdlog::warn("--resume: no checkpoint in {}; starting from scratch", ckpt_dir);
    } else {
      start_iter = load_checkpoint(last, *model, &optimizer).iteration;
      truncate_metrics(metrics_path, start_iter);
      spdlog::info("resumed from {} at iteration {}", last, start_iter);
    }
  }
  Config resolved = e.config;
  if (start_iter == 0 && !e.model.init.files.empty()) {
    // A resumed run never re-applies them: its checkpoint holds the weights.
    const auto init = apply_init_weights(*model, e.model.init, class_names);
    spdlog::info("initial weights:\n{}", init.text);
    for (size_t i = 0; i < init.sha256.size(); ++i) {
      resolved.assign(fmt::format("model.init_weights.{}.sha256", i), init.sha256[i]);
    }
  }
  const auto config_path = (fs::path(output_dir) / "config.yaml").string();
  if (start_iter > 0 && fs::exists(config_path)) {
    // The digests the first run recorded stay in the resumed run's config.
    const Config before = Config::load(config_path);
    for (size_t i = 0; i < resolved.list_size("model.init_weights"); ++i) {
      const std::string key = fmt::format("model.init_weights.{}.", i);
      if (before.has(key + "sha256") && !resolved.has(key + "sha256") &&
          before.get_string(key + "file", "") == resolved.get_string(key + "file")) {
        resolved.assign(key + "sha256", before.get_string(key + "sha256"));
      }
    }
  }
  util::write_file_atomic(config_path, resolved.dump());
  if (start_iter == 0) {
    // A new run in a directory that held one: leftovers would mix two runs in the log and plots
    // and let a later --resume pick up the old run's checkpoints.
    const int removed = remove_checkpoints(ckpt_dir);
    if (removed > 0 || fs::exists(metrics_path)) {
      spdlog::warn(
          "{} holds an earlier run: its metrics.jsonl and {} checkpoint(s) are replaced by this "
          "run's (--resume continues a run instead)",
          output_dir, removed);
    }
    util::write_file_atomic(metrics_path, "");
  }

  data::LoaderOptions lo;
  lo.batch_size = e.data.batch_size;
  lo.workers = e.data.workers;
  lo.seed = e.train.seed;
  lo.rank = hooks.rank;
  lo.world_size = hooks.world_size;
  data::DataLoader loader(train_set, lo);
  const int64_t per_epoch = int64_t(loader.batches_per_epoch());
  if (per_epoch == 0) {
    throw util::InputError(fmt::format("the training set has {} images, fewer than one batch of {}",
                                       train_set->size(), lo.batch_size));
  }
  const int64_t accum = e.solver.accumulate;
  int64_t micro = start_iter * accum;
  loader.start_epoch(micro / per_epoch, size_t(micro % per_epoch));

  auto criterion = e.criterion;
  if (hooks.reduce_num_boxes) criterion.reduce_num_boxes = hooks.reduce_num_boxes;
  MetricsLog metrics(metrics_path);
  TrainResult result;
  util::ProgressBar progress(e.solver.max_iter - start_iter, "train", "it");
  std::map<std::string, double> running;
  int64_t running_count = 0;
  auto last_log = std::chrono::steady_clock::now();
  bool first_eval = true;

  const auto save = [&](int64_t iteration) {
    save_checkpoint(checkpoint_path(ckpt_dir, iteration), *model, optimizer, iteration,
                    resolved.dump(), class_names);
    prune_checkpoints(ckpt_dir, e.train.keep_checkpoints);
  };

  for (int64_t iter = start_iter; iter < e.solver.max_iter; ++iter) {
    set_lr(optimizer, e.solver, iter);
    optimizer.zero_grad();
    bool finite = true;
    std::string bad;  // what was not finite
    for (int64_t a = 0; a < accum; ++a, ++micro) {
      auto batch = loader.next();
      if (!batch) {
        loader.start_epoch(micro / per_epoch);
        batch = loader.next();
      }
      const data::Batch b = batch->to(device);
      const auto targets = b.targets;
      const auto outputs = model->forward(b.images, b.mask, &targets);
      loss::LossTerms losses;
      try {
        losses = loss::compute_criterion(outputs, targets, criterion);
      } catch (const loss::NonFiniteOutputs& err) {
        finite = false;
        bad = err.what();
        continue;
      }
      if (!torch::isfinite(losses.total).item<bool>()) {
        finite = false;
        bad = "non-finite loss (term total)";
        for (const auto& kv : losses.weighted) {
          if (!torch::isfinite(kv.second).item<bool>()) {
            bad = "non-finite loss (term " + kv.first + ")";
            break;
          }
        }
        continue;
      }
      (losses.total / double(accum)).backward();
      for (const auto& kv : losses.weighted) running[kv.first] += kv.second.item<double>() / accum;
      running["loss"] += losses.total.item<double>() / accum;
    }
    if (!finite) {
      const std::string what = fmt::format("{} at iteration {}", bad, iter + 1);
      if (e.train.skip_nonfinite) {
        spdlog::warn("{}: step skipped", what);
        ++result.skipped_steps;
        optimizer.zero_grad();
        continue;
      }
      // The parameters are still those of the last good step.
      const auto path = checkpoint_path(ckpt_dir, iter);
      save(iter);
      throw TrainingDiverged(what + fmt::format("; the last good state is saved in {}", path),
                             path);
    }
    std::vector<torch::Tensor> params;
    for (auto& g : optimizer.param_groups()) {
      for (auto& p : g.params()) {
        if (p.grad().defined()) params.push_back(p);
      }
    }
    if (hooks.reduce_gradients) {
      std::vector<torch::Tensor> grads;
      for (auto& p : params) grads.push_back(p.grad());
      hooks.reduce_gradients(grads);
    }
    if (e.solver.clip_norm > 0) torch::nn::utils::clip_grad_norm_(params, e.solver.clip_norm);
    optimizer.step();
    ++running_count;

    const int64_t done = iter + 1;
    const double lr = lr_factor(e.solver, iter) * e.solver.lr;
    progress.advance(
        1, fmt::format("loss {:.3f} cls {:.3f} L1 {:.3f} giou {:.3f} lr {:.2g}",
                       running["loss"] / running_count, running["loss_class"] / running_count,
                       running["loss_bbox"] / running_count, running["loss_giou"] / running_count,
                       lr));
    if (done % e.train.log_period == 0 || done == e.solver.max_iter) {
      const auto now = std::chrono::steady_clock::now();
      std::string line =
          fmt::format("{{\"iter\": {}, \"type\": \"train\", \"lr\": {:.6g}, \"time\": {:.4f}", done,
                      lr, std::chrono::duration<double>(now - last_log).count() / running_count);
      for (const auto& [k, v] : running)
        line += fmt::format(", \"{}\": {:.6f}", k, v / running_count);
      metrics.write(line + "}");
      result.loss_history.emplace_back(done, running["loss"] / running_count);
      running.clear();
      running_count = 0;
      last_log = now;
    }
    if (done % e.train.checkpoint_period == 0 && done != e.solver.max_iter) save(done);
    if (e.train.eval_period > 0 && done % e.train.eval_period == 0 && done != e.solver.max_iter) {
      const auto r = evaluate_model(*model, val_set, device, e, false);
      metrics.write(eval_json(done, r));
      spdlog::info("iteration {}: AP {:.4f} AP50 {:.4f}", done, r.stats[0], r.stats[1]);
      const auto& losses = result.loss_history;
      if (first_eval && r.stats[0] == 0.0 && losses.size() >= 2 &&
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
      first_eval = false;
    }
  }
  progress.finish();
  result.iterations = e.solver.max_iter;
  save(e.solver.max_iter);
  result.final_weights = (fs::path(output_dir) / "model_final.pt").string();
  model::save_module(result.final_weights, *model, class_names);
  const auto r = evaluate_model(*model, val_set, device, e);
  metrics.write(eval_json(e.solver.max_iter, r));
  util::write_file_atomic((fs::path(output_dir) / "eval_final.json").string(),
                          r.stats_json() + "\n");
  analysis::write_training_plots(analysis::read_metrics_log(metrics_path), output_dir);
  result.final_eval = r;
  return result;
}

}  // namespace aligndetr::engine
