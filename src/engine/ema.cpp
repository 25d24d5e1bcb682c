#include "aligndetr/engine/ema.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "aligndetr/util/error.h"

namespace aligndetr::engine {
namespace {

// Parameters and buffers in one list, the order module_state() saves them in.
std::vector<torch::Tensor> model_tensors(const torch::nn::Module& model) {
  std::vector<torch::Tensor> out;
  for (const auto& p : model.named_parameters(true)) out.push_back(p.value());
  for (const auto& b : model.named_buffers(true)) out.push_back(b.value());
  return out;
}

std::vector<std::string> model_names(const torch::nn::Module& model) {
  std::vector<std::string> out;
  for (const auto& p : model.named_parameters(true)) out.push_back(p.key());
  for (const auto& b : model.named_buffers(true)) out.push_back(b.key());
  return out;
}

}  // namespace

ModelEma::ModelEma(const torch::nn::Module& model, double decay) : decay_(decay) {
  if (!(decay >= 0.0 && decay < 1.0)) {
    throw util::InputError(fmt::format("train.ema.decay must be in [0, 1), got {}", decay));
  }
  torch::NoGradGuard no_grad;
  const auto names = model_names(model);
  const auto tensors = model_tensors(model);
  for (size_t i = 0; i < names.size(); ++i) {
    state_.emplace_back(names[i], tensors[i].detach().clone());
  }
}

void ModelEma::update(const torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  const auto tensors = model_tensors(model);
  TORCH_CHECK(tensors.size() == state_.size(), "ModelEma: the model has ", tensors.size(),
              " tensors, the average ", state_.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    auto& avg = state_[i].second;
    if (avg.is_floating_point()) {
      avg.lerp_(tensors[i], 1.0 - decay_);
    } else {
      avg.copy_(tensors[i]);
    }
  }
}

void ModelEma::load(const std::vector<std::pair<std::string, torch::Tensor>>& saved,
                    const std::string& source) {
  std::map<std::string, torch::Tensor> by_name(saved.begin(), saved.end());
  for (auto& [name, avg] : state_) {
    const auto it = by_name.find(name);
    if (it == by_name.end()) {
      throw util::InputError(fmt::format("'{}': the weight average has no '{}'", source, name));
    }
    if (it->second.sizes() != avg.sizes()) {
      throw util::InputError(
          fmt::format("'{}': the weight average's '{}' has shape {}, the model {}", source, name,
                      fmt::join(it->second.sizes(), "x"), fmt::join(avg.sizes(), "x")));
    }
    avg = it->second.to(avg.device(), avg.scalar_type()).clone();
  }
}

void ModelEma::swap(torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  auto tensors = model_tensors(model);
  TORCH_CHECK(tensors.size() == state_.size(), "ModelEma: the model has ", tensors.size(),
              " tensors, the average ", state_.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    // set_data keeps the parameter object (and the optimizer's hold on it) and swaps its storage.
    const auto current = tensors[i].detach();
    tensors[i].set_data(state_[i].second);
    state_[i].second = current;
  }
}

}  // namespace aligndetr::engine
