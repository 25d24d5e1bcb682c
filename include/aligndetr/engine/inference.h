#pragma once
// Running a detector over a dataset: COCO detections for the evaluator, and each batch's raw
// outputs for callers that analyse them.

#include <functional>
#include <vector>

#include <torch/types.h>

#include "aligndetr/data/batch.h"
#include "aligndetr/data/dataset.h"
#include "aligndetr/eval/coco_eval.h"
#include "aligndetr/loss/criterion.h"
#include "aligndetr/model/dino.h"

namespace aligndetr {

struct InferenceOptions {
  int batch_size = 1;
  int workers = 2;
  int64_t top_k = 300;  // detections per image (top-K over queries x classes)
  bool progress = true;
};

using BatchCallback = std::function<void(const Batch& batch, const loss::CriterionInputs& outputs)>;

// Evaluation mode, no gradient, every image of the dataset in order (eval transforms).
std::vector<Detection> run_inference(model::DetectorImpl& model, const CocoDetection& dataset,
                                     const torch::Device& device, const InferenceOptions& options,
                                     const BatchCallback& on_batch = {});

// Detections of one batch's final layer in COCO form (category ids, xywh pixels of the file).
std::vector<Detection> to_coco_detections(const loss::CriterionInputs& outputs,
                                          const std::vector<Target>& targets,
                                          const CategoryMap& categories, int64_t top_k);

}  // namespace aligndetr
