#include "aligndetr/model/weights.h"

#include <cstring>
#include <regex>
#include <sstream>
#include <string_view>

#include <torch/serialize.h>

#include "aligndetr/util/atomic_file.h"
#include "aligndetr/util/error.h"
#include "torch_pickle.h"

namespace aligndetr::model {
namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_text(const torch::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

// The {name: tensor} dict inside an unpickled file: the top-level dict itself, or the one under
// "model" or "state_dict" in a training checkpoint.
TensorDict tensors_from_value(const detail::PickleValuePtr& value, const std::string& path) {
  using Kind = detail::PickleValue::Kind;
  if (value->kind != Kind::kDict) {
    throw util::InputError("'" + path + "' does not hold a dict of tensors");
  }
  for (const char* key : {"model", "state_dict"}) {
    for (const auto& [k, v] : value->entries) {
      if (k->kind == Kind::kString && k->text == key && v->kind == Kind::kDict) {
        return tensors_from_value(v, path);
      }
    }
  }
  TensorDict tensors;
  for (const auto& [k, v] : value->entries) {
    if (k->kind != Kind::kString) {
      throw util::InputError("'" + path + "': a key of its dict is not a string");
    }
    if (v->kind != Kind::kTensor) {
      const std::string what =
          v->kind == detail::PickleValue::Kind::kObject ? "a Python " + v->text : "not a tensor";
      throw util::InputError("'" + path + "': entry '" + k->text + "' is " + what +
                             ", and there is no 'model' or 'state_dict' entry holding the tensors");
    }
    if (tensors.contains(k->text)) {
      throw util::InputError("'" + path + "': tensor name '" + k->text + "' appears twice");
    }
    tensors.insert(k->text, v->tensor);
  }
  return tensors;
}

}  // namespace

TensorDict module_state(const torch::nn::Module& module) {
  TensorDict state;
  for (const auto& item : module.named_parameters(true)) state.insert(item.key(), item.value());
  for (const auto& item : module.named_buffers(true)) {
    if (item.value().defined()) state.insert(item.key(), item.value());
  }
  return state;
}

void save_tensors(const std::string& path, const TensorDict& tensors) {
  c10::Dict<std::string, torch::Tensor> dict;
  for (const auto& item : tensors) {
    dict.insert(item.key(), item.value().detach().to(torch::kCPU).contiguous());
  }
  const std::vector<char> bytes = torch::pickle_save(torch::IValue(dict));
  util::write_file_atomic(path, std::string_view(bytes.data(), bytes.size()));
}

TensorDict load_tensors(const std::string& path) {
  return tensors_from_value(detail::read_torch_file(path), path);
}

TensorDict rename_prefixes(const TensorDict& tensors,
                           const std::vector<std::pair<std::string, std::string>>& rules,
                           int* renamed) {
  TensorDict result;
  int count = 0;
  for (const auto& item : tensors) {
    std::string name = item.key();
    for (const auto& [from, to] : rules) {
      if (name.compare(0, from.size(), from) == 0) {
        name = to + name.substr(from.size());
        ++count;
        break;
      }
    }
    if (result.contains(name)) {
      throw util::InputError("renaming gives two tensors the name '" + name + "'");
    }
    result.insert(name, item.value());
  }
  if (renamed) *renamed = count;
  return result;
}

namespace {

// The torchvision name of one detectron2 ResNet name, or "" when it is not one.
std::string torchvision_resnet_name(const std::string& name) {
  static const std::regex stem(R"(^(.*?)stem\.conv1\.(norm\.)?(\w+)$)");
  static const std::regex block(
      R"(^(.*?)res([2-5])\.(\d+)\.(conv([1-3])|shortcut)\.(norm\.)?(\w+)$)");
  std::smatch m;
  if (std::regex_match(name, m, stem)) {
    return m[1].str() + (m[2].matched ? "bn1." : "conv1.") + m[3].str();
  }
  if (std::regex_match(name, m, block)) {
    const std::string layer =
        m[1].str() + "layer" + std::to_string(std::stoi(m[2].str()) - 1) + "." + m[3].str() + ".";
    const bool norm = m[6].matched;
    if (m[4].str() == "shortcut") {
      return layer + (norm ? "downsample.1." : "downsample.0.") + m[7].str();
    }
    return layer + (norm ? "bn" : "conv") + m[5].str() + "." + m[7].str();
  }
  return "";
}

}  // namespace

TensorDict detectron2_resnet_to_torchvision(const TensorDict& tensors, int* renamed) {
  TensorDict result;
  int count = 0;
  for (const auto& item : tensors) {
    std::string name = torchvision_resnet_name(item.key());
    if (name.empty()) {
      name = item.key();
    } else {
      ++count;
    }
    if (result.contains(name)) {
      throw util::InputError("renaming gives two tensors the name '" + name + "'");
    }
    result.insert(name, item.value());
  }
  if (renamed) *renamed = count;
  return result;
}

std::string LoadReport::to_text() const {
  std::ostringstream out;
  out << "loaded " << loaded.size() << ", missing " << missing.size() << ", unexpected "
      << unexpected.size() << ", shape mismatches " << mismatched.size()
      << ", ignored BatchNorm counters " << ignored.size();
  const auto list = [&out](const char* title, const std::vector<std::string>& names) {
    if (names.empty()) return;
    out << "\n" << title << ":";
    for (const auto& n : names) out << "\n  " << n;
  };
  list("missing (in the model, not in the file)", missing);
  list("unexpected (in the file, not in the model)", unexpected);
  list("shape mismatches (file vs model)", mismatched);
  return out.str();
}

torch::Tensor string_tensor(const std::string& text) {
  auto t = torch::empty({int64_t(text.size())}, torch::kUInt8);
  if (!text.empty()) std::memcpy(t.data_ptr<uint8_t>(), text.data(), text.size());
  return t;
}

std::string tensor_string(const torch::Tensor& tensor) {
  const auto c = tensor.to(torch::kCPU, torch::kUInt8).contiguous();
  return std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), size_t(c.numel()));
}

void set_category_names(TensorDict& tensors, const std::vector<std::string>& names) {
  std::string joined;
  for (size_t i = 0; i < names.size(); ++i) joined += (i ? "\n" : "") + names[i];
  if (tensors.contains(kCategoryNamesKey)) {
    tensors[kCategoryNamesKey] = string_tensor(joined);
  } else {
    tensors.insert(kCategoryNamesKey, string_tensor(joined));
  }
}

std::vector<std::string> category_names(const TensorDict& tensors) {
  const torch::Tensor* t = tensors.find(kCategoryNamesKey);
  if (!t) return {};
  std::vector<std::string> names;
  std::string text = tensor_string(*t), name;
  std::stringstream in(text);
  while (std::getline(in, name)) names.push_back(name);
  return names;
}

LoadReport load_state_dict(torch::nn::Module& module, const TensorDict& tensors, bool strict) {
  LoadReport report;
  const TensorDict destinations = module_state(module);
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  for (const auto& dst : destinations) {
    const torch::Tensor* src = tensors.find(dst.key());
    if (!src) {
      report.missing.push_back(dst.key());
    } else if (src->sizes() != dst.value().sizes()) {
      report.mismatched.push_back(dst.key() + ": " + shape_text(*src) + " vs " +
                                  shape_text(dst.value()));
    } else {
      report.loaded.push_back(dst.key());
      copies.emplace_back(dst.value(), *src);
    }
  }
  for (const auto& src : tensors) {
    if (destinations.contains(src.key()) || src.key().rfind("meta.", 0) == 0) continue;
    (ends_with(src.key(), ".num_batches_tracked") ? report.ignored : report.unexpected)
        .push_back(src.key());
  }
  if (strict && !report.complete()) {
    throw util::InputError("weights do not match the model: " + report.to_text());
  }
  torch::NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
  return report;
}

void save_module(const std::string& path, const torch::nn::Module& module,
                 const std::vector<std::string>& category_names) {
  TensorDict tensors = module_state(module);
  if (!category_names.empty()) set_category_names(tensors, category_names);
  save_tensors(path, tensors);
}

LoadReport load_module(const std::string& path, torch::nn::Module& module, bool strict) {
  return load_state_dict(module, load_tensors(path), strict);
}

}  // namespace aligndetr::model
