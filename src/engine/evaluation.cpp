#include "aligndetr/engine/evaluation.h"

#include <algorithm>
#include <filesystem>
#include <unordered_map>

#include <fmt/format.h>
#include <torch/torch.h>

#include "aligndetr/engine/distributed.h"
#include "aligndetr/engine/inference.h"
#include "aligndetr/util/atomic_file.h"
#include "aligndetr/util/error.h"

namespace aligndetr::engine {

namespace fs = std::filesystem;

namespace {

eval::CocoEvalResult empty_result() {
  eval::CocoEvalResult empty;
  empty.stats.fill(0.0);
  return empty;
}

// The evaluator's numbers; all zeros for a model that detected nothing.
eval::CocoEvalResult score(const data::CocoDetection& val,
                           const std::vector<coco::Detection>& dets) {
  return dets.empty() ? empty_result() : eval::evaluate_coco(val.coco(), dets);
}

// Inference as evaluation runs it: the experiment's batch size, workers and post-processing.
InferenceOptions evaluation_inference(const Experiment& e) {
  InferenceOptions io;
  io.batch_size = e.data.batch_size;
  io.workers = e.data.workers;
  io.postprocess = e.postprocess();
  return io;
}

// Every rank's detections on every rank, in the order one process makes them: images in the
// dataset's order (each rank predicted whole batches of it), each image's best first.
std::vector<coco::Detection> gather_detections(const std::vector<coco::Detection>& mine,
                                               const data::CocoDetection& val,
                                               const Distributed& dist) {
  // float64 rows: image id, category id, box, score (ids below 2^53 are exact).
  auto rows = torch::empty({int64_t(mine.size()), 7}, torch::kDouble);
  auto* r = rows.data_ptr<double>();
  for (const auto& d : mine) {
    *r++ = double(d.image_id);
    *r++ = double(d.category_id);
    for (double v : d.bbox) *r++ = v;
    *r++ = d.score;
  }
  const auto all = dist.all_gather_rows(rows).contiguous();
  std::unordered_map<int64_t, size_t> position;
  const auto& images = val.coco().images;
  for (size_t i = 0; i < images.size(); ++i) position.emplace(images[i].id, i);
  std::vector<coco::Detection> out(size_t(all.size(0)));
  const double* a = all.data_ptr<double>();
  for (auto& d : out) {
    d.image_id = int64_t(a[0]);
    d.category_id = int64_t(a[1]);
    d.bbox = {a[2], a[3], a[4], a[5]};
    d.score = a[6];
    a += 7;
  }
  std::stable_sort(out.begin(), out.end(), [&](const auto& x, const auto& y) {
    return position[x.image_id] < position[y.image_id];
  });
  return out;
}

void check_dataset_fits(const model::DetectorImpl& model, const data::CocoDetection& val) {
  check_categories(model.num_classes(), {}, val.categories(), val.coco().source, true);
}

}  // namespace

void check_categories(int64_t model_classes, const std::vector<std::string>& model_names,
                      const coco::CategoryMap& dataset, const std::string& source,
                      bool ignore_names) {
  const int64_t have = dataset.num_classes();
  if (have != model_classes) {
    throw util::InputError(fmt::format(
        "{} has {} categories but the model predicts {} classes (model.num_classes): its labels "
        "would stand for the wrong categories; use the annotations of the classes the model was "
        "trained on",
        source, have, model_classes));
  }
  if (ignore_names || model_names.empty()) return;
  std::vector<std::string> differences;
  size_t count = 0;
  for (int k = 0; k < have; ++k) {
    const std::string& theirs = dataset.name(k);
    const std::string ours = size_t(k) < model_names.size() ? model_names[size_t(k)] : "";
    if (ours == theirs) continue;
    if (++count <= 3) {
      differences.push_back(
          fmt::format("label {}: '{}' in the weights, '{}' in the dataset", k, ours, theirs));
    }
  }
  if (count == 0 && model_names.size() == size_t(have)) return;
  throw util::InputError(fmt::format(
      "the weights' class names differ from the categories of {} ({} of {}{}{}): the model "
      "was trained on other classes or in another order; pass --ignore-category-names if the "
      "dataset only names the same classes differently",
      source, count, have, differences.empty() ? "" : ": ", fmt::join(differences, "; ")));
}

void check_output_directory(const std::string& dir) {
  std::error_code ec;
  if (!dir.empty() && fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
    throw util::InputError(fmt::format("--out '{}' is a file, not a directory", dir));
  }
}

std::string eval_json(int64_t iteration, const eval::CocoEvalResult& r) {
  std::string s = fmt::format("{{\"iter\": {}, \"type\": \"eval\"", iteration);
  for (int i = 0; i < eval::kCocoStats; ++i)
    s += fmt::format(", \"{}\": {:.6f}", eval::kCocoStatNames[size_t(i)], r.stats[size_t(i)]);
  return s + ", \"per_category\": " + r.per_category_json() + "}";
}

eval::CocoEvalResult evaluate_model(model::DetectorImpl& model, const data::CocoDetection& val,
                                    const torch::Device& device, const Experiment& e, bool progress,
                                    const Distributed* dist) {
  check_dataset_fits(model, val);
  InferenceOptions io = evaluation_inference(e);
  io.progress = progress && (!dist || dist->is_main());
  if (dist) {
    io.shard = dist->rank();
    io.shards = dist->world_size();
  }
  auto dets = run_inference(model, val, device, io);
  if (dist && dist->world_size() > 1) {
    dets = gather_detections(dets, val, *dist);
    if (!dist->is_main()) return empty_result();
  }
  return score(val, dets);
}

EvaluationResult evaluate_with_analysis(model::DetectorImpl& model, const data::CocoDetection& val,
                                        const torch::Device& device, const Experiment& e,
                                        bool with_analysis) {
  check_dataset_fits(model, val);
  EvaluationResult result;
  if (!with_analysis) {
    result.coco = evaluate_model(model, val, device, e);
    return result;
  }
  analysis::AlignmentAccumulator alignment{analysis::AlignmentOptions{}};
  const auto dets = run_inference(model, val, device, evaluation_inference(e),
                                  [&](const data::Batch& b, const model::DetectorOutputs& out) {
                                    alignment.add_batch(out.decoder.back().logits,
                                                        out.decoder.back().boxes, b.targets);
                                  });
  result.coco = score(val, dets);
  result.alignment = alignment.report();
  return result;
}

std::vector<std::string> write_evaluation(const EvaluationResult& result, const std::string& dir) {
  check_output_directory(dir);
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

}  // namespace aligndetr::engine
