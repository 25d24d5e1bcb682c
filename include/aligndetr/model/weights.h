#pragma once
// Named tensors in and out of modules and files.
//
// Our checkpoint format is a pickled {name: tensor} dict in torch.save's zip format, so Python
// reads it with torch.load and we read PyTorch's own state_dict files with the same loader.
// Loading into a module copies by name and reports every missing name, unexpected name and shape
// mismatch; nothing is skipped silently.

#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>
#include <torch/ordered_dict.h>

namespace aligndetr::model {

using TensorDict = torch::OrderedDict<std::string, torch::Tensor>;

// The module's parameters, then its buffers, by their dotted names (the state_dict of PyTorch).
TensorDict module_state(const torch::nn::Module& module);

// Strings as uint8 tensors (UTF-8 bytes), so metadata travels inside the same files.
torch::Tensor string_tensor(const std::string& text);
std::string tensor_string(const torch::Tensor& tensor);

// File metadata lives under "meta."; loading into a module skips these entries. Our weight files
// and checkpoints record the dataset's category names, in label order, so that fine-tuning can
// match classes by name.
inline constexpr const char* kCategoryNamesKey = "meta.category_names";
void set_category_names(TensorDict& tensors, const std::vector<std::string>& names);
// Empty when the file records none.
std::vector<std::string> category_names(const TensorDict& tensors);

// Writes the tensors (moved to the CPU) atomically: a temporary file renamed over the target.
void save_tensors(const std::string& path, const TensorDict& tensors);

// Reads a file written by save_tensors or by Python's torch.save: a {name: tensor} dict, or a
// checkpoint dict holding one under "model" or "state_dict". Throws InputError for anything else
// or an unreadable file.
TensorDict load_tensors(const std::string& path);

// Renames tensors: a name starting with a rule's `from` gets that prefix replaced by `to` (the
// first matching rule wins); names no rule matches are kept. `renamed` receives the count.
TensorDict rename_prefixes(const TensorDict& tensors,
                           const std::vector<std::pair<std::string, std::string>>& rules,
                           int* renamed = nullptr);

// Renames detectron2 ResNet names (as in detrex / Align-DETR checkpoints, after any prefix such as
// "backbone.") to torchvision's, which our ResNet uses: stem.conv1 -> conv1, stem.conv1.norm ->
// bn1, res{s}.{b}.conv{k} -> layer{s-1}.{b}.conv{k}, its .norm -> bn{k}, shortcut ->
// downsample.0, shortcut.norm -> downsample.1. Other names are kept. `renamed` receives the count.
TensorDict detectron2_resnet_to_torchvision(const TensorDict& tensors, int* renamed = nullptr);

struct LoadReport {
  std::vector<std::string> loaded;      // copied
  std::vector<std::string> missing;     // in the module, not in the file
  std::vector<std::string> unexpected;  // in the file, not in the module
  std::vector<std::string> mismatched;  // same name, different shape: "name: file [..] vs [..]"
  // BatchNorm step counters (*.num_batches_tracked) with no counterpart in the module: frozen
  // batch norms have no use for them. Listed, never an error.
  std::vector<std::string> ignored;

  bool complete() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  // One line of counts, then every name in each non-empty list.
  std::string to_text() const;
};

// Copies tensors into the module's parameters and buffers by name, keeping each destination's
// device and dtype; "meta." entries are not tensors of the module and are skipped. strict: a
// missing, unexpected or mismatched name throws InputError listing all of them, and the module is
// left unchanged. Otherwise matching tensors are copied.
LoadReport load_state_dict(torch::nn::Module& module, const TensorDict& tensors, bool strict);

// module_state + save_tensors, and load_tensors + load_state_dict.
// With category_names, the file records them (kCategoryNamesKey).
void save_module(const std::string& path, const torch::nn::Module& module,
                 const std::vector<std::string>& category_names = {});
LoadReport load_module(const std::string& path, torch::nn::Module& module, bool strict);

}  // namespace aligndetr::model
