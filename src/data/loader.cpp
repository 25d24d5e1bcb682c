#include "aligndetr/data/loader.h"

#include <algorithm>
#include <numeric>
#include <random>

#include <ATen/Parallel.h>
#include <torch/torch.h>
#ifdef _OPENMP
#include <omp.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#endif

#include "aligndetr/data/dataset.h"
#include "aligndetr/util/error.h"

namespace aligndetr::data {

namespace {

// Each thread that runs LibTorch operators gets its own OpenMP team, as large as the main one, so
// workers would add threads that spin against the training step's on the same cores. A worker's
// share of the work is small: its operators run on the worker alone. The lazy initialisation
// comes first because it would otherwise reset the thread count at the first operator.
void keep_torch_operators_on_this_thread() {
  at::internal::lazy_init_num_threads();
#ifdef _OPENMP
  omp_set_num_threads(1);
#endif
}

}  // namespace

DataLoader::DataLoader(std::shared_ptr<const CocoDetection> dataset, LoaderOptions options)
    : dataset_(std::move(dataset)), options_(options) {
  TORCH_CHECK(options_.batch_size >= 1, "batch size must be at least 1");
  TORCH_CHECK(options_.world_size >= 1 && options_.rank >= 0 && options_.rank < options_.world_size,
              "rank ", options_.rank, " is not in [0, ", options_.world_size, ")");
  options_.workers = std::max(0, options_.workers);
  options_.prefetch = std::max(1, options_.prefetch);
}

DataLoader::~DataLoader() {
  stop_workers();
}

std::vector<size_t> DataLoader::epoch_indices(int64_t epoch) const {
  std::vector<size_t> order(dataset_->size());
  std::iota(order.begin(), order.end(), size_t{0});
  if (options_.shuffle) {
    std::mt19937_64 rng(sample_seed(options_.seed, epoch, ~uint64_t{0}));
    std::shuffle(order.begin(), order.end(), rng);
  }
  const size_t world = static_cast<size_t>(options_.world_size);
  if (options_.shard_by_batch) {
    const size_t bs = static_cast<size_t>(options_.batch_size);
    std::vector<size_t> mine;
    for (size_t b = static_cast<size_t>(options_.rank); b * bs < order.size(); b += world) {
      const size_t end = std::min(order.size(), (b + 1) * bs);
      if (end - b * bs < bs && options_.drop_last) break;
      mine.insert(mine.end(), order.begin() + std::ptrdiff_t(b * bs),
                  order.begin() + std::ptrdiff_t(end));
    }
    return mine;
  }
  const size_t per_rank = (order.size() + world - 1) / world;
  std::vector<size_t> mine;
  mine.reserve(per_rank);
  for (size_t j = 0; j < per_rank; ++j) {
    mine.push_back(order[(j * world + static_cast<size_t>(options_.rank)) % order.size()]);
  }
  return mine;
}

size_t DataLoader::batches_per_epoch() const {
  const size_t world = static_cast<size_t>(options_.world_size);
  if (options_.shard_by_batch) {
    const size_t bs = static_cast<size_t>(options_.batch_size);
    const size_t all =
        options_.drop_last ? dataset_->size() / bs : (dataset_->size() + bs - 1) / bs;
    const size_t r = static_cast<size_t>(options_.rank);
    return all > r ? (all - r + world - 1) / world : 0;
  }
  const size_t per_rank = (dataset_->size() + world - 1) / world;
  const size_t bs = static_cast<size_t>(options_.batch_size);
  return options_.drop_last ? per_rank / bs : (per_rank + bs - 1) / bs;
}

void DataLoader::start_epoch(int64_t epoch, size_t first_batch) {
  stop_workers();
  epoch_ = epoch;
  const auto indices = epoch_indices(epoch);
  const size_t bs = static_cast<size_t>(options_.batch_size);
  batches_.clear();
  for (size_t start = 0; start < indices.size(); start += bs) {
    const size_t end = std::min(indices.size(), start + bs);
    if (end - start < bs && options_.drop_last) break;
    batches_.emplace_back(indices.begin() + static_cast<std::ptrdiff_t>(start),
                          indices.begin() + static_cast<std::ptrdiff_t>(end));
  }
  consumed_ = std::min(first_batch, batches_.size());
  next_to_load_ = consumed_;
  ready_.assign(batches_.size(), std::nullopt);
  errors_.assign(batches_.size(), nullptr);
  stopping_ = false;
  for (int w = 0; w < options_.workers; ++w) workers_.emplace_back([this] { worker_loop(); });
}

Batch DataLoader::load_batch(size_t b) const {
  std::vector<Sample> samples;
  samples.reserve(batches_[b].size());
  for (size_t index : batches_[b]) samples.push_back(load_sample(index));
  return collate(std::move(samples));
}

Sample DataLoader::load_sample(size_t index) const {
  const auto& o = dataset_->options();
  const bool replace = o.train && o.on_invalid == OnInvalid::kSkip;
  const size_t n = dataset_->size();
  for (size_t tried = 0; tried < n; ++tried) {
    const size_t i = (index + tried) % n;
    try {
      return dataset_->get(i, options_.seed, epoch_);
    } catch (const util::CorruptInput& e) {
      {
        std::lock_guard<std::mutex> lock(undecodable_mutex_);
        if (undecodable_.insert(i).second && replace) {
          spdlog::warn("{}: skipped (data.on_invalid: skip); the next image takes its place",
                       e.what());
        }
      }
      if (!replace) throw;
    }
  }
  throw util::InputError(fmt::format("{}: none of its {} images can be decoded", o.ann_file, n));
}

size_t DataLoader::undecodable() const {
  std::lock_guard<std::mutex> lock(undecodable_mutex_);
  return undecodable_.size();
}

void DataLoader::worker_loop() {
  keep_torch_operators_on_this_thread();
  const size_t window = static_cast<size_t>(options_.prefetch * std::max(1, options_.workers));
  for (;;) {
    size_t b = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_cv_.wait(lock, [&] {
        return stopping_ || next_to_load_ >= batches_.size() || next_to_load_ < consumed_ + window;
      });
      if (stopping_ || next_to_load_ >= batches_.size()) return;
      b = next_to_load_++;
    }
    std::optional<Batch> batch;
    std::exception_ptr error;
    try {
      batch = load_batch(b);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_[b] = std::move(batch);
      errors_[b] = error;
    }
    ready_cv_.notify_all();
  }
}

std::optional<Batch> DataLoader::next() {
  if (consumed_ >= batches_.size()) return std::nullopt;
  const size_t b = consumed_;
  if (options_.workers == 0) {
    ++consumed_;
    return load_batch(b);
  }
  std::optional<Batch> batch;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_cv_.wait(lock, [&] { return ready_[b].has_value() || errors_[b]; });
    if (errors_[b]) std::rethrow_exception(errors_[b]);
    batch = std::move(ready_[b]);
    ready_[b].reset();
    ++consumed_;
  }
  work_cv_.notify_all();
  return batch;
}

void DataLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

}  // namespace aligndetr::data
