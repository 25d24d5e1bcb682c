#include "aligndetr/engine/inference.h"

#include <torch/torch.h>

#include "aligndetr/data/loader.h"
#include "aligndetr/model/postprocess.h"
#include "aligndetr/util/progress.h"

namespace aligndetr::engine {

std::vector<coco::Detection> to_coco_detections(const model::DetectorOutputs& outputs,
                                                const std::vector<boxes::Target>& targets,
                                                const coco::CategoryMap& categories,
                                                const model::PostprocessOptions& postprocess,
                                                std::vector<int>* labels) {
  std::vector<std::array<int64_t, 2>> sizes;
  for (const auto& t : targets) sizes.push_back(t.orig_size);
  const auto& last = outputs.decoder.back();
  const auto dets = model::postprocess(last.logits, last.boxes, sizes, postprocess);
  std::vector<coco::Detection> out;
  for (size_t b = 0; b < dets.size(); ++b) {
    const auto boxes = dets[b].boxes.to(torch::kCPU, torch::kFloat64).contiguous();
    const auto scores = dets[b].scores.to(torch::kCPU, torch::kFloat64).contiguous();
    const auto classes = dets[b].labels.to(torch::kCPU, torch::kLong).contiguous();
    const double* bx = boxes.data_ptr<double>();
    for (int64_t i = 0; i < scores.size(0); ++i) {
      const int label = static_cast<int>(classes.data_ptr<int64_t>()[i]);
      coco::Detection d;
      d.image_id = targets[b].image_id;
      d.category_id = label < categories.num_classes() ? categories.category_id(label) : label;
      if (labels) labels->push_back(label);
      d.bbox = {bx[4 * i], bx[4 * i + 1], bx[4 * i + 2] - bx[4 * i], bx[4 * i + 3] - bx[4 * i + 1]};
      d.score = scores.data_ptr<double>()[i];
      out.push_back(d);
    }
  }
  return out;
}

std::vector<coco::Detection> run_inference(model::DetectorImpl& model,
                                           const data::CocoDetection& dataset,
                                           const torch::Device& device,
                                           const InferenceOptions& options,
                                           const BatchCallback& on_batch) {
  const bool was_training = model.is_training();
  model.eval();
  torch::NoGradGuard no_grad;
  data::LoaderOptions lo;
  lo.batch_size = options.batch_size;
  lo.workers = options.workers;
  lo.shuffle = false;
  lo.drop_last = false;
  lo.rank = options.shard;
  lo.world_size = options.shards;
  lo.shard_by_batch = true;
  data::DataLoader loader(
      std::shared_ptr<const data::CocoDetection>(&dataset, [](const data::CocoDetection*) {}), lo);
  loader.start_epoch(0);
  std::vector<coco::Detection> detections;
  util::ProgressBar progress(static_cast<int64_t>(loader.epoch_indices(0).size()), "inference",
                             "img");
  while (auto batch = loader.next()) {
    const data::Batch b = batch->to(device);
    const auto outputs = model.forward(b.images, b.mask, nullptr);
    const auto dets =
        to_coco_detections(outputs, b.targets, dataset.categories(), options.postprocess);
    detections.insert(detections.end(), dets.begin(), dets.end());
    if (on_batch) on_batch(b, outputs);
    if (options.progress) progress.advance(static_cast<int64_t>(b.targets.size()));
  }
  if (options.progress) progress.finish();
  model.train(was_training);
  return detections;
}

}  // namespace aligndetr::engine
