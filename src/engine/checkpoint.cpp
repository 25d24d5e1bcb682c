#include "aligndetr/engine/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <regex>
#include <utility>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "aligndetr/engine/ema.h"
#include "aligndetr/model/weights.h"
#include "aligndetr/util/error.h"
#include "optimizer_state.h"

namespace aligndetr::engine {

namespace fs = std::filesystem;

namespace {

using detail::param_key;

std::string cuda_rng_key(int64_t device) {
  return fmt::format("trainer.rng_cuda.{}", device);
}

int64_t cuda_devices() {
  return torch::cuda::is_available() ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
}

// Through the device-generic context, so the code builds against CPU-only LibTorch too.
at::Generator cuda_generator(int64_t index) {
  return at::globalContext().defaultGenerator(
      at::Device(at::kCUDA, static_cast<at::DeviceIndex>(index)));
}

// Every CUDA generator saved and present is restored. A run moved to a machine with fewer (or no)
// GPUs resumes, but its random draws there differ from the original run's: say so.
void restore_cuda_rng(const std::string& path, const model::TensorDict& dict) {
  int64_t saved = 0;
  while (dict.contains(cuda_rng_key(saved))) ++saved;
  const int64_t present = cuda_devices();
  for (int64_t i = 0; i < std::min(saved, present); ++i) {
    auto gen = cuda_generator(i);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(dict[cuda_rng_key(i)]);
  }
  if (saved != present) {
    spdlog::warn(
        "'{}' holds the random state of {} CUDA device(s), this machine has {}: random draws on "
        "the GPU will not repeat those of the original run",
        path, saved, present);
  }
}

}  // namespace

void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     const torch::optim::AdamW& optimizer, int64_t iteration,
                     const std::string& config_yaml, const std::vector<std::string>& category_names,
                     const CheckpointRun& ranks) {
  model::TensorDict dict;
  for (const auto& kv : model::module_state(model)) dict.insert("model." + kv.key(), kv.value());
  const auto& groups = optimizer.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto& params = groups[g].params();
    for (size_t i = 0; i < params.size(); ++i) {
      const auto it = optimizer.state().find(param_key(params[i]));
      if (it == optimizer.state().end()) continue;
      const auto& st = static_cast<const torch::optim::AdamWParamState&>(*it->second);
      const std::string prefix = fmt::format("optimizer.{}.{}.", g, i);
      dict.insert(prefix + "step", torch::tensor(st.step(), torch::kInt64));
      dict.insert(prefix + "exp_avg", st.exp_avg());
      dict.insert(prefix + "exp_avg_sq", st.exp_avg_sq());
    }
  }
  dict.insert("trainer.iteration", torch::tensor(iteration, torch::kInt64));
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    dict.insert("trainer.rng_cpu", gen.get_state());
  }
  for (int64_t i = 0; i < cuda_devices(); ++i) {
    auto gen = cuda_generator(i);
    std::lock_guard<std::mutex> lock(gen.mutex());
    dict.insert(cuda_rng_key(i), gen.get_state());
  }
  for (size_t r = 0; r < ranks.rng_cpu.size(); ++r) {
    dict.insert(fmt::format("trainer.rng_cpu.rank{}", r + 1), ranks.rng_cpu[r]);
  }
  dict.insert("trainer.world_size", torch::tensor(ranks.world_size, torch::kInt64));
  if (ranks.global_batch > 0) {
    dict.insert("trainer.global_batch", torch::tensor(ranks.global_batch, torch::kInt64));
  }
  if (ranks.ema) {
    for (const auto& [name, avg] : ranks.ema->state()) dict.insert("ema." + name, avg);
  }
  if (ranks.grad_scale > 0) {
    dict.insert("trainer.grad_scale", torch::tensor(ranks.grad_scale, torch::kDouble));
    dict.insert("trainer.grad_growth_tracker",
                torch::tensor(ranks.grad_growth_tracker, torch::kInt64));
  }
  if (ranks.log_count > 0) {
    dict.insert("trainer.log_window.count", torch::tensor(ranks.log_count, torch::kInt64));
    for (const auto& [term, sum] : ranks.log_sums) {
      dict.insert("trainer.log_window." + term, torch::tensor(sum, torch::kDouble));
    }
  }
  dict.insert("trainer.config", model::string_tensor(config_yaml));
  if (!category_names.empty()) model::set_category_names(dict, category_names);
  model::save_tensors(path, dict);
}

namespace {

std::string shape_text(c10::IntArrayRef sizes) {
  return fmt::format("[{}]", fmt::join(sizes, ", "));
}

// A one-number entry of a checkpoint, named when it is absent or holds anything else.
const torch::Tensor& scalar_entry(const model::TensorDict& dict, const std::string& key,
                                  const std::string& path) {
  const torch::Tensor* t = dict.find(key);
  if (!t) throw util::InputError(fmt::format("'{}' has no '{}' entry", path, key));
  if (t->numel() != 1) {
    throw util::InputError(
        fmt::format("'{}': '{}' holds {} values, not one number", path, key, t->numel()));
  }
  return *t;
}

// An optimizer moment of a checkpoint: a tensor of its parameter's shape.
torch::Tensor moment_entry(const model::TensorDict& dict, const std::string& key,
                           const torch::Tensor& param, const std::string& path) {
  const torch::Tensor* t = dict.find(key);
  if (!t) throw util::InputError(fmt::format("'{}' has no '{}' entry", path, key));
  if (t->sizes() != param.sizes() || !t->is_floating_point()) {
    throw util::InputError(fmt::format("'{}': '{}' is a {} {} tensor, not the {} parameter's", path,
                                       key, c10::toString(t->scalar_type()), shape_text(t->sizes()),
                                       shape_text(param.sizes())));
  }
  return t->to(param.device(), param.scalar_type()).clone();
}

CheckpointInfo read_checkpoint(const model::TensorDict& dict, const std::string& path,
                               torch::nn::Module& model, torch::optim::AdamW* optimizer, int rank,
                               ModelEma* ema) {
  CheckpointInfo info;
  const bool training_checkpoint = dict.contains("trainer.iteration");
  model::TensorDict model_state;
  for (const auto& kv : dict) {
    if (!training_checkpoint) {
      model_state.insert(kv.key(), kv.value());
    } else if (kv.key().rfind("model.", 0) == 0) {
      model_state.insert(kv.key().substr(6), kv.value());
    }
  }
  try {
    model::load_state_dict(model, model_state, /*strict=*/true);
  } catch (const util::InputError& e) {
    throw util::InputError(fmt::format("'{}' does not fit this model: {}", path, e.what()));
  }
  info.category_names = model::category_names(dict);
  if (!training_checkpoint) return info;
  info.iteration = scalar_entry(dict, "trainer.iteration", path).item<int64_t>();
  if (!dict.contains("trainer.config")) {
    throw util::InputError(fmt::format("'{}' has no 'trainer.config' entry", path));
  }
  info.config_yaml = model::tensor_string(dict["trainer.config"]);
  if (dict.contains("trainer.world_size")) {
    info.world_size = scalar_entry(dict, "trainer.world_size", path).item<int64_t>();
  }
  if (dict.contains("trainer.global_batch")) {
    info.global_batch = scalar_entry(dict, "trainer.global_batch", path).item<int64_t>();
  }
  if (dict.contains("trainer.log_window.count")) {
    info.log_count = scalar_entry(dict, "trainer.log_window.count", path).item<int64_t>();
    const std::string prefix = "trainer.log_window.";
    for (const auto& kv : dict) {
      if (kv.key().rfind(prefix, 0) != 0 || kv.key() == prefix + "count") continue;
      info.log_sums[kv.key().substr(prefix.size())] =
          scalar_entry(dict, kv.key(), path).item<double>();
    }
  }
  if (dict.contains("trainer.grad_scale")) {
    info.grad_scale = scalar_entry(dict, "trainer.grad_scale", path).item<double>();
    info.grad_growth_tracker =
        scalar_entry(dict, "trainer.grad_growth_tracker", path).item<int64_t>();
  }
  if (ema) {
    std::vector<std::pair<std::string, torch::Tensor>> saved;
    for (const auto& kv : dict) {
      if (kv.key().rfind("ema.", 0) == 0) saved.emplace_back(kv.key().substr(4), kv.value());
    }
    if (!saved.empty()) {
      ema->load(saved, path);
      info.ema_restored = true;
    }
  }
  if (optimizer) {
    auto& groups = optimizer->param_groups();
    for (size_t g = 0; g < groups.size(); ++g) {
      auto& params = groups[g].params();
      for (size_t i = 0; i < params.size(); ++i) {
        const std::string prefix = fmt::format("optimizer.{}.{}.", g, i);
        if (!dict.contains(prefix + "step")) continue;
        auto st = std::make_unique<torch::optim::AdamWParamState>();
        st->step(scalar_entry(dict, prefix + "step", path).item<int64_t>());
        st->exp_avg(moment_entry(dict, prefix + "exp_avg", params[i], path));
        st->exp_avg_sq(moment_entry(dict, prefix + "exp_avg_sq", params[i], path));
        optimizer->state()[param_key(params[i])] = std::move(st);
      }
    }
    const std::string rng_key =
        rank == 0 ? "trainer.rng_cpu" : fmt::format("trainer.rng_cpu.rank{}", rank);
    if (dict.contains(rng_key)) {
      auto gen = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(dict[rng_key]);
      info.rng_restored = true;
    }
    restore_cuda_rng(path, dict);
  }
  return info;
}

}  // namespace

CheckpointInfo load_checkpoint(const std::string& path, torch::nn::Module& model,
                               torch::optim::AdamW* optimizer, int rank, ModelEma* ema) {
  const model::TensorDict dict = model::load_tensors(path);
  try {
    return read_checkpoint(dict, path, model, optimizer, rank, ema);
  } catch (const c10::Error& e) {
    // Whole, but an entry is not what a checkpoint of ours holds (a generator state LibTorch
    // refuses, a config that is not text...).
    throw util::InputError(fmt::format("'{}' has an entry this build cannot use: {}", path,
                                       e.what_without_backtrace()));
  }
}

std::string checkpoint_path(const std::string& dir, int64_t iteration) {
  return (fs::path(dir) / fmt::format("ckpt_{:07d}.pt", iteration)).string();
}

namespace {
std::vector<fs::path> list_checkpoints(const std::string& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  static const std::regex pattern(R"(ckpt_\d{7}\.pt)");
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (std::regex_match(entry.path().filename().string(), pattern)) out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

std::vector<std::string> checkpoints_newest_first(const std::string& dir) {
  std::vector<std::string> out;
  const auto all = list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) out.push_back(it->string());
  return out;
}

std::string latest_checkpoint(const std::string& dir) {
  const auto all = list_checkpoints(dir);
  return all.empty() ? std::string() : all.back().string();
}

void prune_checkpoints(const std::string& dir, int64_t keep) {
  const auto all = list_checkpoints(dir);
  for (size_t i = 0; i + size_t(std::max<int64_t>(keep, 1)) < all.size(); ++i) {
    std::error_code ec;
    fs::remove(all[i], ec);
  }
}

int remove_checkpoints(const std::string& dir) {
  int removed = 0;
  for (const auto& path : list_checkpoints(dir)) {
    std::error_code ec;
    removed += fs::remove(path, ec) ? 1 : 0;
  }
  return removed;
}

}  // namespace aligndetr::engine
