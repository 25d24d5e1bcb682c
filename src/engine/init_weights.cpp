#include "aligndetr/engine/init_weights.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>
#include <torch/torch.h>

#include "aligndetr/coco/names.h"
#include "aligndetr/model/import.h"
#include "aligndetr/model/weights.h"
#include "aligndetr/util/error.h"
#include "aligndetr/util/sha256.h"

namespace aligndetr::engine {

namespace fs = std::filesystem;

namespace {

const char* layout_name(model::ImportLayout layout) {
  switch (layout) {
    case model::ImportLayout::kDetrex:
      return "detrex";
    case model::ImportLayout::kOfficialDino:
      return "official DINO";
    case model::ImportLayout::kDetectron2ResNet:
      return "detectron2 ResNet";
    case model::ImportLayout::kOurs:
      break;
  }
  return "ours";
}

// The model part of a file: a training checkpoint's "model." entries, or the whole file but
// its metadata.
model::TensorDict model_tensors(const model::TensorDict& file) {
  const bool checkpoint = file.contains("trainer.iteration");
  model::TensorDict out;
  for (const auto& kv : file) {
    if (checkpoint && kv.key().rfind("model.", 0) == 0) {
      out.insert(kv.key().substr(6), kv.value());
    } else if (!checkpoint && kv.key().rfind("meta.", 0) != 0) {
      out.insert(kv.key(), kv.value());
    }
  }
  return out;
}

// The class names a checkpoint's class-indexed rows stand for; empty when unknown.
std::vector<std::string> checkpoint_classes(const model::TensorDict& file, int64_t rows) {
  auto names = model::category_names(file);
  if (!names.empty()) return names;
  if (rows == 80) return coco::coco80_names();
  if (rows == 91) return coco::coco91_names();
  return {};
}

// "transformer.encoder.layers.0.ffns..." -> "transformer.encoder"; "label_enc.weight" ->
// "label_enc".
std::string module_of(const std::string& name) {
  const auto first = name.find('.');
  if (first == std::string::npos) return name;
  const auto second = name.find('.', first + 1);
  if (second == std::string::npos) return name.substr(0, first);
  return name.substr(0, second);
}

}  // namespace

ClassMap parse_class_map(const std::string& text) {
  if (text == "reinit") return ClassMap::kReinit;
  if (text == "by_name") return ClassMap::kByName;
  throw util::InputError(
      fmt::format("model.init_class_map '{}' is not one of reinit, by_name", text));
}

InitWeightsReport apply_init_weights(model::DetectorImpl& model, const InitWeightsOptions& options,
                                     const std::vector<std::string>& class_names) {
  InitWeightsReport report;
  const model::TensorDict state = model::module_state(model);
  const auto class_parameters = model.class_parameters();
  std::set<std::string> covered, reinitialised, kept;
  bool remapped = false;  // some class parameter's rows were not the checkpoint's as they are
  for (size_t i = 0; i < options.files.size(); ++i) {
    const auto& f = options.files[i];
    const std::string where = fmt::format("model.init_weights.{}", i);
    if (!fs::is_regular_file(f.file)) {
      throw util::InputError(
          fmt::format("{}: '{}' not found{}", where, f.file, f.hint.empty() ? "" : "; " + f.hint));
    }
    const std::string sha = util::sha256_file(f.file);
    if (!f.sha256.empty() && f.sha256 != sha) {
      throw util::InputError(fmt::format("{}: '{}' has sha256 {}, not the {} this run recorded",
                                         where, f.file, sha, f.sha256));
    }
    report.sha256.push_back(sha);
    const model::TensorDict file = model::load_tensors(f.file);
    const model::TensorDict own = model_tensors(file);
    const auto layout = model::detect_layout(own);
    model::ImportOptions import;
    import.layout = layout;
    // An official DINO file's rows become COCO's 80 for an 80-class model; for any other the
    // 91-by-id layout stays, for the class remapping below to read by name.
    import.num_classes = model.num_classes() == 80 ? 80 : 91;
    if (const auto* label_enc = state.find("label_enc.weight")) {
      import.label_rows = label_enc->size(0);
    }
    if (!f.prefix.empty()) import.prefix_map = {{ "", f.prefix }};
    model::TensorDict tensors = model::import_weights(own, import).tensors;

    for (const auto& name : class_parameters) {
      const torch::Tensor* src = tensors.find(name);
      if (!src) continue;
      const torch::Tensor& dst = state[name];
      const auto from = checkpoint_classes(file, src->dim() > 0 ? src->size(0) : 0);
      const bool same = src->sizes() == dst.sizes() && (from.empty() || from == class_names);
      if (same) {
        if (!from.empty()) kept.insert(class_names.begin(), class_names.end());
        continue;
      }
      remapped = true;
      torch::Tensor merged;
      if (options.class_map == ClassMap::kByName && src->dim() > 0 &&
          int64_t(from.size()) == src->size(0) && src->dim() == dst.dim() &&
          src->sizes().slice(1) == dst.sizes().slice(1)) {
        merged = dst.detach().clone();
        for (size_t j = 0; j < class_names.size() && int64_t(j) < dst.size(0); ++j) {
          const auto it = std::find(from.begin(), from.end(), class_names[j]);
          if (class_names[j].empty() || it == from.end()) continue;
          merged[int64_t(j)].copy_((*src)[it - from.begin()]);
          kept.insert(class_names[j]);
        }
      }
      model::TensorDict rest;
      for (const auto& kv : tensors) {
        if (kv.key() != name) rest.insert(kv.key(), kv.value());
      }
      tensors = std::move(rest);
      if (merged.defined()) {
        tensors.insert(name, merged);
      } else {
        reinitialised.insert(name);
      }
    }

    const model::LoadReport loaded = model::load_state_dict(model, tensors, /*strict=*/false);
    std::vector<std::string> missing_here;
    for (const auto& name : loaded.missing) {
      if (name.rfind(f.prefix, 0) == 0 && !reinitialised.count(name)) missing_here.push_back(name);
    }
    std::string text = fmt::format(
        "{} '{}' ({} names, sha256 {}) into '{}': loaded {}, missing {}, unexpected "
        "{}, shape mismatches {}",
        where, f.file, layout_name(layout), sha.substr(0, 12), f.prefix, loaded.loaded.size(),
        missing_here.size(), loaded.unexpected.size(), loaded.mismatched.size());
    const auto list = [&text](const char* title, const std::vector<std::string>& names) {
      if (names.empty()) return;
      text += fmt::format("\n  {}: {}", title, fmt::join(names, ", "));
    };
    list("missing", missing_here);
    list("unexpected", loaded.unexpected);
    list("shape mismatches", loaded.mismatched);
    if (f.strict &&
        (!missing_here.empty() || !loaded.unexpected.empty() || !loaded.mismatched.empty())) {
      throw util::InputError(fmt::format("{} is strict and does not fit: {}", where, text));
    }
    report.text += text + "\n";
    covered.insert(loaded.loaded.begin(), loaded.loaded.end());
  }

  std::map<std::string, int> random;
  for (const auto& kv : state) {
    if (!covered.count(kv.key())) ++random[module_of(kv.key())];
  }
  for (const auto& [module, count] : random) {
    report.random_modules.push_back(fmt::format("{} ({} tensors)", module, count));
  }
  report.reinitialised.assign(reinitialised.begin(), reinitialised.end());
  report.kept_classes.assign(kept.begin(), kept.end());
  if (!report.reinitialised.empty()) {
    report.text += fmt::format(
        "the checkpoint's classes differ from the dataset's: {} class parameters keep their "
        "initial values ({}){}\n",
        report.reinitialised.size(), fmt::join(report.reinitialised, ", "),
        options.class_map == ClassMap::kReinit ? "; model.init_class_map: by_name keeps the rows "
                                                 "of classes with the same name"
                                               : "");
  }
  if (options.class_map == ClassMap::kByName && remapped) {
    report.text +=
        fmt::format("classes kept by name: {} of {}{}{}\n", kept.size(), class_names.size(),
                    kept.empty() ? "" : ": ", fmt::join(report.kept_classes, ", "));
  }
  report.text += report.random_modules.empty()
                     ? "every tensor of the model was loaded\n"
                     : fmt::format("randomly initialised (no file covered them): {}\n",
                                   fmt::join(report.random_modules, ", "));
  return report;
}

}  // namespace aligndetr::engine
