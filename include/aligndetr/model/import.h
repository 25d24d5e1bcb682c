#pragma once
// Converting another project's checkpoint to our parameter names: detectron2 ResNet names to
// torchvision's, detrex DINO / Align-DETR checkpoints (their duplicated head tensors checked and
// left out), prefix renames and drops. `weights import` and the loading of initial weights share
// this one pipeline.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "aligndetr/model/weights.h"

namespace aligndetr::model {

enum class ImportLayout {
  kOurs,              // our names (also torchvision's ResNet): nothing to convert
  kDetectron2ResNet,  // detectron2 ResNet names (stem, res2..res5, shortcut, .norm)
  kDetrex,            // a detrex DINO or Align-DETR checkpoint
  kOfficialDino,      // an IDEA-Research DINO checkpoint (official_dino.h)
};

struct ImportOptions {
  ImportLayout layout = ImportLayout::kOurs;
  // Applied after the layout's conversion: a name starting with `first` gets `second` instead
  // (the first matching rule wins).
  std::vector<std::pair<std::string, std::string>> prefix_map;
  std::vector<std::string> drop;  // then names starting with any of these are left out
  int64_t num_classes = 80;       // kOfficialDino: the class rows to keep (80 or 91)
  int64_t label_rows = 0;         // kOfficialDino: label embedding rows (0: num_classes)
};

struct ImportResult {
  TensorDict tensors;
  int read = 0;
  int layout_renamed = 0;   // detectron2 ResNet names given torchvision's
  int aliases_dropped = 0;  // detrex, official DINO: decoder copies of the heads left out
  int prefix_renamed = 0;
  int dropped = 0;
};

// The layout a checkpoint's names follow: the official DINO's, detrex's (its decoder lists the
// heads again), a detectron2 ResNet (stem, res2..res5), or ours (torchvision's ResNet names
// included).
ImportLayout detect_layout(const TensorDict& tensors);

// "OLD=NEW" (NEW may be empty) as a prefix rule; InputError naming the text otherwise.
std::pair<std::string, std::string> parse_prefix_rule(const std::string& text);

// The layout's conversion, then the prefix map, then the drops. InputError from detrex_to_ours
// when a detrex head copy differs from its head.
ImportResult import_weights(const TensorDict& source, const ImportOptions& options);

}  // namespace aligndetr::model
