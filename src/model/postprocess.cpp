#include "aligndetr/model/postprocess.h"

#include <torch/torch.h>

#include "aligndetr/boxes/boxes.h"

namespace aligndetr::model {

std::vector<Detections> postprocess(const torch::Tensor& logits, const torch::Tensor& boxes,
                                    const std::vector<std::array<int64_t, 2>>& orig_sizes,
                                    const PostprocessOptions& options) {
  TORCH_CHECK(logits.dim() == 3 && boxes.dim() == 3 && logits.size(0) == boxes.size(0) &&
                  logits.size(1) == boxes.size(1),
              "postprocess: logits [B, Q, C] and boxes [B, Q, 4] expected, got ", logits.sizes(),
              " and ", boxes.sizes());
  TORCH_CHECK(int64_t(orig_sizes.size()) == logits.size(0), "postprocess: ", orig_sizes.size(),
              " image sizes for a batch of ", logits.size(0));
  const int64_t B = logits.size(0), C = logits.size(2);
  const int64_t k = std::min(options.top_k, logits.size(1) * C);
  const auto [scores, index] = logits.sigmoid().view({B, -1}).topk(k, 1);
  const auto query = torch::div(index, C, "floor");
  const auto labels = index % C;
  std::vector<Detections> out;
  for (int64_t b = 0; b < B; ++b) {
    const double h = double(orig_sizes[size_t(b)][0]), w = double(orig_sizes[size_t(b)][1]);
    auto xyxy = boxes::scale(boxes::cxcywh_to_xyxy(boxes[b].index_select(0, query[b])), h, w);
    if (!options.clip_boxes) {
      out.push_back({xyxy, scores[b], labels[b]});
      continue;
    }
    xyxy = boxes::clip(xyxy, h, w);
    const auto keep =
        ((xyxy.select(1, 2) > xyxy.select(1, 0)) & (xyxy.select(1, 3) > xyxy.select(1, 1)))
            .nonzero()
            .squeeze(1);
    out.push_back({xyxy.index_select(0, keep), scores[b].index_select(0, keep),
                   labels[b].index_select(0, keep)});
  }
  return out;
}

}  // namespace aligndetr::model
