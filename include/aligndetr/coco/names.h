#pragma once
// The 80 COCO detection categories, for checkpoints trained on COCO that do not record their
// class names (detrex, the Align-DETR release, the official DINO).

#include <string>
#include <vector>

namespace aligndetr::coco {

// In contiguous-label order (ascending category id), as detrex's 80-class heads.
const std::vector<std::string>& coco80_names();

// Indexed by COCO category id 0..90, as the official DINO's 91-class heads; ids COCO does not use
// (0, 12, 26, 29, 30, 45, 66, 68, 69, 71, 83) are empty strings.
const std::vector<std::string>& coco91_names();

}  // namespace aligndetr::coco
