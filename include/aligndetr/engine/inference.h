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
#include "aligndetr/model/postprocess.h"

namespace aligndetr::engine {

struct InferenceOptions {
  int batch_size = 1;
  int workers = 2;
  model::PostprocessOptions postprocess;  // top-K detections per image, clipping
  bool progress = true;
  // This process's share: every `shards`-th batch from batch `shard` on, the batches composed
  // as in one process (data::LoaderOptions::shard_by_batch).
  int shard = 0;
  int shards = 1;
};

using BatchCallback =
    std::function<void(const data::Batch& batch, const model::DetectorOutputs& outputs)>;

// Evaluation mode, no gradient, every image of the dataset in order (eval transforms).
std::vector<coco::Detection> run_inference(model::DetectorImpl& model,
                                           const data::CocoDetection& dataset,
                                           const torch::Device& device,
                                           const InferenceOptions& options,
                                           const BatchCallback& on_batch = {});

// Detections of one batch's final layer in COCO form (xywh pixels of the file), best first per
// image. Category ids come from `categories`; a label it does not cover keeps its number. With
// `labels`, each detection's contiguous label is appended there.
std::vector<coco::Detection> to_coco_detections(const model::DetectorOutputs& outputs,
                                                const std::vector<boxes::Target>& targets,
                                                const coco::CategoryMap& categories,
                                                const model::PostprocessOptions& postprocess,
                                                std::vector<int>* labels = nullptr);

}  // namespace aligndetr::engine
