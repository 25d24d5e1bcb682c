#include "aligndetr/model/detrex.h"

#include <string>
#include <string_view>

#include "aligndetr/util/error.h"

namespace aligndetr::model {
namespace {

constexpr std::string_view kDecoder = "transformer.decoder.";

bool is_decoder_head_copy(const std::string& name) {
  return name.rfind("transformer.decoder.class_embed.", 0) == 0 ||
         name.rfind("transformer.decoder.bbox_embed.", 0) == 0;
}

bool same_tensor_values(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && a.dtype() == b.dtype() && a.equal(b);
}

}  // namespace

DetrexConversion detrex_to_ours(const TensorDict& tensors) {
  DetrexConversion result;
  TensorDict kept;
  for (const auto& item : tensors) {
    const std::string& name = item.key();
    if (!is_decoder_head_copy(name)) {
      kept.insert(name, item.value());
      continue;
    }
    const std::string head = name.substr(kDecoder.size());
    const torch::Tensor* original = tensors.find(head);
    if (!original) {
      throw util::InputError("'" + name + "' is the decoder's copy of the detector head '" + head +
                             "', which the checkpoint lacks");
    }
    if (!same_tensor_values(*original, item.value())) {
      throw util::InputError(
          "'" + name + "' differs from '" + head +
          "': in a detrex DINO checkpoint the decoder's head is the detector's own, "
          "so the two must be equal");
    }
    ++result.aliases_dropped;
  }
  result.tensors = detectron2_resnet_to_torchvision(kept, &result.resnet_renamed);
  return result;
}

}  // namespace aligndetr::model
