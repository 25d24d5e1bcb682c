#pragma once
// Initial weights of a new training run (model.init_weights): files loaded in order into the
// freshly built model before step 0, e.g. an ImageNet ResNet into `backbone.`, or a whole COCO
// detector (detrex, the Align-DETR release, our own checkpoints and weight files; detectron2 and
// detrex names are converted as `weights import` does). Each load is reported; whatever no file
// covered stays randomly initialised and is listed by module.
//
// When a checkpoint's classes differ from the dataset's (another count, or other names), the
// class-indexed parameters (DetectorImpl::class_parameters: every classification head and DINO's
// denoising label embedding) keep their fresh values, the reference's prior (bias
// -log((1 - 0.01) / 0.01)); with ClassMap::kByName the rows of the classes both name are loaded.
// A checkpoint's class names are those it records (model::kCategoryNamesKey), else COCO's when it
// has 80 or 91 (official DINO, by category id) rows.

#include <string>
#include <vector>

#include "aligndetr/model/detector.h"

namespace aligndetr::engine {

struct InitWeightsFile {
  std::string file;
  std::string prefix;   // prepended to every name in the file, e.g. "backbone."
  bool strict = false;  // every model tensor under `prefix` must load, and every file tensor
  std::string sha256;   // when set, the file must have this digest (as a run's config records)
  std::string hint;     // added to the error when the file is missing (where to get it)
};

enum class ClassMap { kReinit, kByName };
ClassMap parse_class_map(const std::string& text);  // "reinit" | "by_name"

struct InitWeightsOptions {
  std::vector<InitWeightsFile> files;
  ClassMap class_map = ClassMap::kReinit;
};

struct InitWeightsReport {
  std::vector<std::string> sha256;          // of each file, in order
  std::vector<std::string> random_modules;  // "transformer.encoder (12 tensors)", ...
  std::vector<std::string> reinitialised;   // class parameters left at their fresh values
  std::vector<std::string> kept_classes;    // by_name: dataset classes given trained rows
  std::string text;                         // everything above, for the log
};

// Loads the files into `model` (its fresh state). `class_names`: the dataset's categories in
// label order. Throws InputError naming the file for a missing or unreadable file, a digest that
// differs from the recorded one, or a strict load that does not fit.
InitWeightsReport apply_init_weights(model::DetectorImpl& model, const InitWeightsOptions& options,
                                     const std::vector<std::string>& class_names);

}  // namespace aligndetr::engine
