#include "aligndetr/model/denoising.h"

#include <torch/torch.h>

#include "aligndetr/boxes/boxes.h"
#include "aligndetr/model/layers.h"

namespace aligndetr::model {

torch::Tensor denoising_attention_mask(int64_t groups, int64_t max_gt, int64_t num_queries,
                                       const torch::Device& device) {
  const int64_t pad = 2 * max_gt * groups;
  auto mask = torch::zeros({pad + num_queries, pad + num_queries},
                           torch::TensorOptions().dtype(torch::kBool).device(device));
  mask.narrow(0, pad, num_queries).narrow(1, 0, pad).fill_(true);
  const int64_t span = 2 * max_gt;
  for (int64_t g = 0; g < groups; ++g) {
    auto rows = mask.narrow(0, g * span, span);
    if (g > 0) rows.narrow(1, 0, g * span).fill_(true);
    if (g + 1 < groups) rows.narrow(1, (g + 1) * span, pad - (g + 1) * span).fill_(true);
  }
  return mask;
}

std::optional<DenoisingQueries> prepare_denoising(const std::vector<boxes::Target>& targets,
                                                  int64_t num_queries, int64_t num_classes,
                                                  torch::nn::Embedding& label_enc,
                                                  const DenoisingOptions& o) {
  if (o.dn_number <= 0 || targets.empty()) return std::nullopt;
  int64_t max_gt = 0;
  for (const auto& t : targets) max_gt = std::max(max_gt, t.labels.size(0));
  if (max_gt == 0) return std::nullopt;

  DenoisingQueries dn;
  dn.max_gt = max_gt;
  dn.groups = std::max<int64_t>(1, o.dn_number / max_gt);
  const int64_t G = dn.groups, pad = dn.size();
  const auto weight = label_enc->weight;
  const auto device = weight.device();
  const auto fopts = weight.options().requires_grad(false);
  const auto iopts = torch::TensorOptions().dtype(torch::kInt64).device(device);

  std::vector<torch::Tensor> contents, boxes;
  for (const auto& t : targets) {
    const int64_t n = t.labels.size(0);
    auto content = torch::zeros({pad, weight.size(1)}, fopts);
    auto box = torch::zeros({pad, 4}, fopts);
    matching::ImageMatch pair;
    if (n == 0) {
      pair.query = torch::empty({0}, iopts);
      pair.gt = torch::empty({0}, iopts);
    } else {
      // 2G chunks of this image's boxes: chunk 2g is group g's positives, 2g+1 its negatives.
      auto labels = t.labels.to(device).repeat({2 * G});
      if (o.label_noise_ratio > 0) {
        const auto flip = torch::rand({2 * G * n}, fopts) < o.label_noise_ratio * 0.5;
        labels = torch::where(flip, torch::randint(num_classes, {2 * G * n}, iopts), labels);
      }
      auto cxcywh = t.boxes.to(fopts.dtype()).to(device).repeat({2 * G, 1});
      if (o.box_noise_scale > 0) {
        // Each corner moves by up to half the box size: u in [0,1) for positives, [1,2) for
        // negatives, random sign.
        auto xyxy = boxes::cxcywh_to_xyxy(cxcywh);
        const auto half = (cxcywh.narrow(1, 2, 2) / 2).repeat({1, 2});
        const auto sign = torch::randint(2, {2 * G * n, 4}, fopts) * 2.0 - 1.0;
        auto part = torch::rand({2 * G * n, 4}, fopts);
        const auto negative = torch::div(torch::arange(2 * G * n, iopts), n, "floor") % 2 == 1;
        part = part + negative.unsqueeze(1).to(part.dtype());
        xyxy = (xyxy + sign * part * half * o.box_noise_scale).clamp(0.0, 1.0);
        cxcywh = boxes::xyxy_to_cxcywh(xyxy);
      }
      const auto chunk = torch::div(torch::arange(2 * G * n, iopts), n, "floor");
      const auto slot = chunk * max_gt + torch::arange(2 * G * n, iopts) % n;
      content = content.index_put({slot}, label_enc(labels));
      box = box.index_put({slot}, inverse_sigmoid(cxcywh));
      // Positive slots g * 2 * max_gt + j, ordered by GT j then group g.
      const auto j = torch::arange(n, iopts).repeat_interleave(G);
      const auto g = torch::arange(G, iopts).repeat({n});
      pair.query = g * 2 * max_gt + j;
      pair.gt = j;
    }
    contents.push_back(content);
    boxes.push_back(box);
    dn.pairs.push_back(pair);
  }
  dn.queries.content = torch::stack(contents);
  dn.queries.boxes_unact = torch::stack(boxes);
  dn.queries.attn_mask = denoising_attention_mask(G, max_gt, num_queries, device);
  return dn;
}

}  // namespace aligndetr::model
