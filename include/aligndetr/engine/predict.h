#pragma once
// Detection on image files: COCO results JSON plus pictures with the boxes drawn.

#include <string>
#include <vector>

#include <torch/types.h>

#include "aligndetr/coco/annotations.h"
#include "aligndetr/data/transforms.h"
#include "aligndetr/data/validate.h"
#include "aligndetr/model/dino.h"

namespace aligndetr::engine {

struct PredictOptions {
  std::string input;             // an image file or a directory of images
  std::string out_dir;           // results.json and one PNG per image
  double score_threshold = 0.3;  // for the pictures; results.json keeps the top_k
  int64_t top_k = 100;
  bool clip_boxes = true;  // the config's model.postprocess.clip_boxes
  data::ExifOrientation exif = data::ExifOrientation::kApply;  // the config's data.exif_orientation
};

struct PredictSummary {
  int images = 0;
  int skipped = 0;  // unreadable files in a directory (a single unreadable file is an error)
  int64_t detections = 0;
  std::string results_path;
};

// The categories predictions are named and numbered by: those of the annotations at `ann_file`
// (checked against the model as eval checks them: check_categories), or, when that file cannot be
// read, the class names the weights record (`names`; ids are the labels) with a warning, or none.
coco::CategoryMap predict_categories(const model::DetectorImpl& model,
                                     const std::vector<std::string>& names,
                                     const std::string& ann_file, bool ignore_names);

// Image ids in results.json number the input files in sorted order from 1; each result also
// carries its "file_name". Category ids come from `categories` (contiguous labels otherwise).
// Pictures are <stem>.png, or <file name>.png for inputs that share a stem. InputError, before
// anything is written, for an output directory inside the input directory (or one whose picture
// would replace the single input image), one that is a file, and a file name that is not UTF-8.
PredictSummary predict_images(model::DetectorImpl& model, const data::TransformOptions& transforms,
                              const coco::CategoryMap& categories, const torch::Device& device,
                              const PredictOptions& options);

}  // namespace aligndetr::engine
