#pragma once
// Evaluating a detector on a validation set: the COCO bbox metrics of the in-memory evaluator,
// optionally the classification-regression alignment of the final layer. In a data-parallel run
// each rank predicts its share of the batches and rank 0 evaluates all the detections; the
// numbers equal a single process's.

#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "aligndetr/analysis/alignment.h"
#include "aligndetr/data/dataset.h"
#include "aligndetr/engine/experiment.h"
#include "aligndetr/eval/coco_eval.h"
#include "aligndetr/model/detector.h"

namespace aligndetr::engine {

class Distributed;

struct EvaluationResult {
  eval::CocoEvalResult coco;
  std::optional<analysis::AlignmentReport> alignment;
};

// Throws InputError when `dir` exists and is not a directory (checked before any work).
void check_output_directory(const std::string& dir);

// A model's label k stands for the k-th category of the dataset it is scored or named against:
// throws InputError, before any work, when the dataset (read from `source`) has another number
// of categories than the model's classes, or, unless `ignore_names`, when the weights file
// recorded its class names (`model_names`, empty when it did not) and they differ from the
// dataset's, listing the first differences.
void check_categories(int64_t model_classes, const std::vector<std::string>& model_names,
                      const coco::CategoryMap& dataset, const std::string& source,
                      bool ignore_names);

// COCO evaluation of a model on the experiment's validation set (eval_top_k detections per
// image, post-processed as the model section says). With `dist`, sharded: the result is complete
// on rank 0 (other ranks get empty stats).
eval::CocoEvalResult evaluate_model(model::DetectorImpl& model, const data::CocoDetection& val,
                                    const torch::Device& device, const Experiment& experiment,
                                    bool progress = true, const Distributed* dist = nullptr);

// evaluate_model, and with `analysis` the alignment analysis of the final layer's raw outputs.
EvaluationResult evaluate_with_analysis(model::DetectorImpl& model, const data::CocoDetection& val,
                                        const torch::Device& device, const Experiment& experiment,
                                        bool analysis);

// eval.json, per_category.txt/.json, and with an analysis alignment.json, iou_histogram.png and
// confidence_iou_density.png. Returns the paths written.
std::vector<std::string> write_evaluation(const EvaluationResult& result, const std::string& dir);

// The metrics.jsonl line of an evaluation at an iteration.
std::string eval_json(int64_t iteration, const eval::CocoEvalResult& result);

}  // namespace aligndetr::engine
