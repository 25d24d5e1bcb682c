#include "aligndetr/model/official_dino.h"

#include <algorithm>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "aligndetr/util/error.h"

namespace aligndetr::model {

namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) {
    s.replace(at, from.size(), to);
  }
  return s;
}

// The 80 category ids COCO uses, ascending: contiguous label i is id kCocoIds[i].
torch::Tensor coco_ids() {
  std::vector<int64_t> ids;
  for (int64_t id = 1; id <= 90; ++id) {
    static const int64_t unused[] = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83};
    if (std::find(std::begin(unused), std::end(unused), id) == std::end(unused)) ids.push_back(id);
  }
  return torch::tensor(ids, torch::kLong);
}

// The index after `prefix` in "prefix<N>.rest", or -1.
int64_t index_after(const std::string& name, const std::string& prefix) {
  if (!starts_with(name, prefix)) return -1;
  const auto dot = name.find('.', prefix.size());
  try {
    return std::stoll(name.substr(prefix.size(), dot - prefix.size()));
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

bool is_official_dino(const TensorDict& tensors) {
  for (const auto& kv : tensors) {
    if (starts_with(kv.key(), "backbone.0.body.") ||
        starts_with(kv.key(), "transformer.enc_out_class_embed.")) {
      return true;
    }
  }
  return false;
}

OfficialDinoConversion official_dino_to_ours(const TensorDict& tensors, int64_t num_classes,
                                             int64_t label_rows) {
  if (num_classes != 80 && num_classes != 91) {
    throw util::InputError(
        "an official DINO checkpoint has COCO's classes: the model needs 80 "
        "(contiguous) or 91 (by category id), not " +
        std::to_string(num_classes));
  }
  // The decoder's layer count gives the encoder head's index; backbone levels are the 1x1
  // input projections, the rest are the neck's extra levels.
  int64_t layers = 0, backbone_levels = 0;
  for (const auto& kv : tensors) {
    layers = std::max(layers, index_after(kv.key(), "class_embed.") + 1);
    const auto level = index_after(kv.key(), "input_proj.");
    if (level >= 0 && kv.key() == "input_proj." + std::to_string(level) + ".0.weight" &&
        kv.value().dim() == 4 && kv.value().size(-1) == 1) {
      ++backbone_levels;
    }
  }
  const auto rows = num_classes == 80 ? coco_ids() : torch::arange(91, torch::kLong);
  const auto label_book =
      num_classes == 80 ? rows : torch::arange(label_rows == 92 ? 92 : 91, torch::kLong);
  OfficialDinoConversion out;
  for (const auto& kv : tensors) {
    const std::string& k = kv.key();
    std::string name = k;
    if (starts_with(k, "backbone.0.body.")) {
      name = "backbone." + k.substr(16);
    } else if (starts_with(k, "input_proj.")) {
      const auto level = index_after(k, "input_proj.");
      const auto rest = k.substr(k.find('.', 11) + 1);  // "<0|1>.<param>"
      const std::string part = rest[0] == '0' ? "conv" : "norm";
      name = level < backbone_levels
                 ? "neck.convs." + std::to_string(level) + "." + part + rest.substr(1)
                 : "neck.extra_convs." + std::to_string(level - backbone_levels) + "." + part +
                       rest.substr(1);
    } else if (k == "transformer.level_embed") {
      name = "transformer.level_embeds";
    } else if (starts_with(k, "transformer.encoder.layers.")) {
      for (const auto& [from, to] :
           {std::pair{".self_attn.", ".attentions.0."},
            std::pair{".linear1.", ".ffns.0.layers.0.0."},
            std::pair{".linear2.", ".ffns.0.layers.1."}, std::pair{".norm1.", ".norms.0."},
            std::pair{".norm2.", ".norms.1."}}) {
        name = replace_all(name, from, to);
      }
    } else if (starts_with(k, "transformer.decoder.layers.")) {
      // Official order: self-attention, norm2, cross-attention, norm1, FFN, norm3.
      for (const auto& [from, to] :
           {std::pair{".self_attn.", ".attentions.0.attn."},
            std::pair{".cross_attn.", ".attentions.1."},
            std::pair{".linear1.", ".ffns.0.layers.0.0."},
            std::pair{".linear2.", ".ffns.0.layers.1."}, std::pair{".norm2.", ".norms.0."},
            std::pair{".norm1.", ".norms.1."}, std::pair{".norm3.", ".norms.2."}}) {
        name = replace_all(name, from, to);
      }
    } else if (starts_with(k, "transformer.decoder.class_embed.") ||
               starts_with(k, "transformer.decoder.bbox_embed.")) {
      const std::string head = k.substr(20);
      const torch::Tensor* same = tensors.find(head);
      if (!same || same->sizes() != kv.value().sizes() ||
          same->scalar_type() != kv.value().scalar_type() || !torch::equal(*same, kv.value())) {
        throw util::InputError("official DINO checkpoint: " + k + " differs from " + head +
                               " (or " + head + " is missing)");
      }
      ++out.aliases_dropped;
      continue;
    } else if (starts_with(k, "transformer.enc_out_class_embed.")) {
      name = "class_embed." + std::to_string(layers) + "." + k.substr(32);
    } else if (starts_with(k, "transformer.enc_out_bbox_embed.")) {
      name = "bbox_embed." + std::to_string(layers) + "." + k.substr(31);
    }
    torch::Tensor value = kv.value();
    // Exactly the official layout's rows (91 classes, 92 in the label book); any other count is
    // left as it is, to show up as a shape mismatch.
    const int64_t official_rows = name == "label_enc.weight" ? 92 : 91;
    if ((starts_with(name, "class_embed.") || name == "label_enc.weight") && value.dim() >= 1 &&
        value.size(0) == official_rows) {
      value = value.index_select(0, name == "label_enc.weight" ? label_book : rows);
    }
    out.tensors.insert(name, value);
  }
  return out;
}

}  // namespace aligndetr::model
