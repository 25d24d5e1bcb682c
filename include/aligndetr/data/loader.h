#pragma once
// Batches from a dataset with worker threads and prefetch. The order of an epoch depends on
// (seed, epoch) and each sample's augmentation on (seed, epoch, index), so the batches are the
// same whatever the number of workers. For data-parallel training each rank takes every
// world_size-th index of the shuffled order (padded by wrapping so all ranks see equal counts).

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "aligndetr/data/batch.h"

namespace aligndetr::data {

class CocoDetection;

struct LoaderOptions {
  int batch_size = 2;
  int workers = 2;   // 0: load in the calling thread
  int prefetch = 2;  // batches prepared ahead, per worker
  bool shuffle = true;
  bool drop_last = true;
  uint64_t seed = 0;
  int rank = 0;
  int world_size = 1;
  // Evaluation: the batches one process would make, every world_size-th of them to this rank
  // (no wrapping), so that each image is padded with the same neighbours whatever the world size.
  bool shard_by_batch = false;
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const CocoDetection> dataset, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Starts (or restarts) an epoch; the first call to next() afterwards returns batch
  // `first_batch` of it (non-zero when resuming in the middle of an epoch).
  void start_epoch(int64_t epoch, size_t first_batch = 0);
  // The next batch of the epoch, or nothing at its end. Rethrows a worker's error.
  std::optional<Batch> next();

  // Batches of this rank in every epoch (known before any epoch starts).
  size_t batches_per_epoch() const;
  // This rank's dataset indices for an epoch, in order (exposed for tests and resuming).
  std::vector<size_t> epoch_indices(int64_t epoch) const;
  // Images that passed validation but could not be decoded. A training set under on_invalid
  // skip gives each one's place in its batch to the next image that decodes (the batch keeps its
  // size and every rank its step), warning once per image; otherwise next() rethrows the error.
  size_t undecodable() const;

 private:
  void stop_workers();
  void worker_loop();
  Batch load_batch(size_t b) const;
  Sample load_sample(size_t index) const;

  std::shared_ptr<const CocoDetection> dataset_;
  LoaderOptions options_;
  int64_t epoch_ = 0;
  std::vector<std::vector<size_t>> batches_;
  size_t consumed_ = 0;

  std::mutex mutex_;
  std::condition_variable work_cv_, ready_cv_;
  size_t next_to_load_ = 0;
  std::vector<std::optional<Batch>> ready_;
  std::vector<std::exception_ptr> errors_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
  mutable std::mutex undecodable_mutex_;
  mutable std::set<size_t> undecodable_;
};

}  // namespace aligndetr::data
