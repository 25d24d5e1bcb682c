#include "aligndetr/model/import.h"

#include <regex>

#include "aligndetr/model/detrex.h"
#include "aligndetr/model/official_dino.h"
#include "aligndetr/util/error.h"

namespace aligndetr::model {

ImportLayout detect_layout(const TensorDict& tensors) {
  static const std::regex detectron2(R"((^|\.)(stem\.conv1|res[2-5]\.\d+)\.)");
  if (is_official_dino(tensors)) return ImportLayout::kOfficialDino;
  bool resnet = false;
  for (const auto& item : tensors) {
    if (item.key().rfind("transformer.decoder.class_embed.", 0) == 0) return ImportLayout::kDetrex;
    resnet = resnet || std::regex_search(item.key(), detectron2);
  }
  return resnet ? ImportLayout::kDetectron2ResNet : ImportLayout::kOurs;
}

std::pair<std::string, std::string> parse_prefix_rule(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw util::InputError("a prefix rule is OLD=NEW with a non-empty OLD, got '" + text + "'");
  }
  return {text.substr(0, eq), text.substr(eq + 1)};
}

ImportResult import_weights(const TensorDict& source, const ImportOptions& options) {
  ImportResult result;
  result.read = static_cast<int>(source.size());
  TensorDict converted = source;
  if (options.layout == ImportLayout::kDetrex) {
    DetrexConversion detrex = detrex_to_ours(source);
    result.aliases_dropped = detrex.aliases_dropped;
    result.layout_renamed = detrex.resnet_renamed;
    converted = std::move(detrex.tensors);
  } else if (options.layout == ImportLayout::kOfficialDino) {
    OfficialDinoConversion official =
        official_dino_to_ours(source, options.num_classes, options.label_rows);
    result.aliases_dropped = official.aliases_dropped;
    converted = std::move(official.tensors);
  } else if (options.layout == ImportLayout::kDetectron2ResNet) {
    converted = detectron2_resnet_to_torchvision(source, &result.layout_renamed);
  }
  const TensorDict mapped = rename_prefixes(converted, options.prefix_map, &result.prefix_renamed);
  for (const auto& item : mapped) {
    bool drop = false;
    for (const auto& prefix : options.drop) drop = drop || item.key().rfind(prefix, 0) == 0;
    if (drop) {
      ++result.dropped;
    } else {
      result.tensors.insert(item.key(), item.value());
    }
  }
  return result;
}

}  // namespace aligndetr::model
