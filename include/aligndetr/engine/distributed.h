#pragma once
// Data-parallel training on LibTorch's c10d. Processes are launched as PyTorch's are (torchrun,
// SLURM with its variables mapped, scripts/dist-train.sh): RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR and MASTER_PORT. Rank 0 hosts a c10d TCPStore at MASTER_ADDR:MASTER_PORT; the
// process group is Gloo (CPU tensors) or NCCL (a CUDA LibTorch training on CUDA). Without the
// variables a run is a single process and every collective returns its input.
//
// A collective that fails (a peer died, raised, or did not answer within the timeout) throws
// DistributedFailure naming the failed rank: a rank that raises records its error in the store
// first; a rank that died is found by its heartbeat, which stops.

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/types.h>

namespace aligndetr::engine {

struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};

// The launcher's variables; a single process when WORLD_SIZE is unset or 1. InputError for a
// value that is not a number, a rank outside [0, WORLD_SIZE) or a missing MASTER_* variable.
LaunchEnv launch_env_from_environment();

struct DistributedOptions {
  std::string backend = "auto";  // auto (NCCL for CUDA when built with it, else Gloo), gloo, nccl
  double timeout_s = 300;        // a collective waiting longer fails
};

// A peer failed or a collective timed out; what() names the rank and the cause.
class DistributedFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Distributed {
 public:
  // A single process.
  Distributed();
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  // Joins the process group of `env` (a single process for world_size 1). Blocks until every
  // rank has joined or the timeout passes.
  static std::unique_ptr<Distributed> connect(const LaunchEnv& env,
                                              const DistributedOptions& options,
                                              const torch::Device& device);

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  int local_rank() const { return local_rank_; }
  bool is_main() const { return rank_ == 0; }
  std::string backend() const;

  // Sums over ranks (elementwise for the vector), as float64.
  double sum(double value) const;
  std::vector<double> sum(const std::vector<double>& values) const;
  // Whether any rank passed true.
  bool any(bool value) const;
  // Sums a tensor in place over the ranks (model::SumReducer for synchronised batch norm).
  void sum_(torch::Tensor& tensor) const;
  // Every rank's gradients averaged in place: flattened into buckets of about bucket_bytes,
  // every bucket's all-reduce started before the first is awaited.
  void average(std::vector<torch::Tensor>& tensors, int64_t bucket_bytes = 25 << 20) const;
  // Rank 0's values copied into every rank's tensors (in place).
  void broadcast(std::vector<torch::Tensor>& tensors) const;
  // Every rank's rows of a 2-D tensor (any row count per rank, same columns and dtype),
  // concatenated in rank order, on every rank.
  torch::Tensor all_gather_rows(const torch::Tensor& rows) const;
  void barrier() const;

  // Records this rank's error in the store so that the others can name it.
  void report_failure(const std::string& what) const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0;
  int world_size_ = 1;
  int local_rank_ = 0;
};

}  // namespace aligndetr::engine
