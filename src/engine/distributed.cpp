#include "aligndetr/engine/distributed.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "aligndetr/util/error.h"

namespace aligndetr::engine {

namespace {

using namespace std::chrono_literals;
constexpr auto kHeartbeat = 1s;

int env_int(const char* name, int fallback) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < 0 || value > (1 << 20)) {
    throw util::InputError(
        fmt::format("environment variable {}='{}' is not a rank count", name, text));
  }
  return static_cast<int>(value);
}

std::string first_line(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

std::vector<uint8_t> bytes_of(const std::string& s) {
  return {s.begin(), s.end()};
}

}  // namespace

LaunchEnv launch_env_from_environment() {
  LaunchEnv env;
  env.world_size = env_int("WORLD_SIZE", 1);
  if (env.world_size <= 1) return LaunchEnv{};
  env.rank = env_int("RANK", -1);
  env.local_rank = env_int("LOCAL_RANK", 0);
  if (env.rank < 0 || env.rank >= env.world_size) {
    throw util::InputError(fmt::format(
        "WORLD_SIZE is {} but RANK is {}: a data-parallel launch sets RANK to 0..{} (torchrun "
        "--no-python, or scripts/dist-train.sh)",
        env.world_size, std::getenv("RANK") ? std::getenv("RANK") : "unset", env.world_size - 1));
  }
  const char* addr = std::getenv("MASTER_ADDR");
  if (!addr || !*addr || !std::getenv("MASTER_PORT")) {
    throw util::InputError(
        "WORLD_SIZE is set but MASTER_ADDR or MASTER_PORT is not: they name the host and port "
        "of rank 0's store");
  }
  env.master_addr = addr;
  env.master_port = env_int("MASTER_PORT", 0);
  if (env.master_port <= 0 || env.master_port > 65535) {
    throw util::InputError(fmt::format("MASTER_PORT {} is not a port", env.master_port));
  }
  return env;
}

struct Distributed::Impl {
  LaunchEnv env;
  std::string backend;
  double timeout_s = 300;
  torch::Device scalar_device = torch::kCPU;  // where small collectives run (CUDA for NCCL)
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#ifdef USE_C10D_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
  // The heartbeat uses its own store connection: a client is not shared between threads.
  std::thread heartbeat;
  std::mutex mutex;
  std::condition_variable stop_cv;
  bool stopping = false;

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopping = true;
    }
    stop_cv.notify_all();
    if (heartbeat.joinable()) heartbeat.join();
  }

  template <typename F>
  auto with_group(F&& f) const {
#ifdef USE_C10D_NCCL
    if (nccl) return f(*nccl);
#endif
    if (!gloo) throw DistributedFailure("the process group was shut down after a failure");
    return f(*gloo);
  }

  void start_heartbeat() {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(env.master_port);
    so.isServer = false;
    so.timeout = std::chrono::milliseconds(int64_t(timeout_s * 1000));
    auto client = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    const std::string key = fmt::format("alive/{}", env.rank);
    heartbeat = std::thread([this, client, key] {
      std::unique_lock<std::mutex> lock(mutex);
      while (!stopping) {
        try {
          client->add(key, 1);
        } catch (const std::exception&) {
          return;  // the store is gone: rank 0 exited; collectives will say so
        }
        stop_cv.wait_for(lock, kHeartbeat, [this] { return stopping; });
      }
    });
  }

  // Who failed, for a collective that threw: a rank that recorded its error, else the ranks
  // whose heartbeat stopped, else a timeout.
  std::string diagnose() const {
    try {
      for (int r = 0; r < env.world_size; ++r) {
        const std::string key = fmt::format("failed/{}", r);
        if (r != env.rank && store->check({key})) {
          const auto what = store->get(key);
          return fmt::format("rank {} failed: {}", r, std::string(what.begin(), what.end()));
        }
      }
      std::vector<int64_t> before;
      for (int r = 0; r < env.world_size; ++r) {
        before.push_back(store->add(fmt::format("alive/{}", r), 0));
      }
      std::this_thread::sleep_for(kHeartbeat * 5 / 2);
      std::vector<std::string> stopped;
      for (int r = 0; r < env.world_size; ++r) {
        if (r != env.rank && store->add(fmt::format("alive/{}", r), 0) == before[size_t(r)]) {
          stopped.push_back(std::to_string(r));
        }
      }
      if (!stopped.empty()) {
        return fmt::format("rank {} stopped (its process died or hangs)",
                           fmt::join(stopped, ", rank "));
      }
      return fmt::format(
          "no rank reported a failure; a collective waited more than {} s "
          "(train.dist_timeout_s)",
          timeout_s);
    } catch (const std::exception&) {
      return fmt::format(
          "rank 0 failed: its store at {}:{} is unreachable (the process died or "
          "exited)",
          env.master_addr, env.master_port);
    }
  }

  [[noreturn]] void fail(const char* op, const std::exception& e) const {
    throw DistributedFailure(
        fmt::format("rank {}: {} failed, {} [{}]", env.rank, op, diagnose(), first_line(e.what())));
  }

  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* op) const {
    try {
      work->wait();
    } catch (const DistributedFailure&) {
      throw;
    } catch (const std::exception& e) {
      fail(op, e);
    }
  }

  // Starts a collective on the group; a failure to start is diagnosed as a failed wait is.
  template <typename Launch>
  c10::intrusive_ptr<c10d::Work> start(const char* op, Launch&& launch) const {
    try {
      return with_group(launch);
    } catch (const DistributedFailure&) {
      throw;
    } catch (const std::exception& e) {
      fail(op, e);
    }
  }

  template <typename Launch>
  void run(const char* op, Launch&& launch) const {
    wait(start(op, std::forward<Launch>(launch)), op);
  }
};

Distributed::Distributed() = default;
Distributed::~Distributed() = default;

std::unique_ptr<Distributed> Distributed::connect(const LaunchEnv& env,
                                                  const DistributedOptions& options,
                                                  const torch::Device& device) {
  auto d = std::make_unique<Distributed>();
  d->rank_ = env.rank;
  d->world_size_ = env.world_size;
  d->local_rank_ = env.local_rank;
  if (env.world_size <= 1) return d;
  if (options.backend != "auto" && options.backend != "gloo" && options.backend != "nccl") {
    throw util::InputError(
        fmt::format("train.dist_backend '{}' is not one of auto, gloo, nccl", options.backend));
  }
  if (!(options.timeout_s > 0)) {
    throw util::InputError(
        fmt::format("train.dist_timeout_s {} must be positive", options.timeout_s));
  }
#ifdef USE_C10D_NCCL
  const bool have_nccl = true;
#else
  const bool have_nccl = false;
#endif
  std::string backend = options.backend;
  if (backend == "auto") backend = device.is_cuda() && have_nccl ? "nccl" : "gloo";
  if (backend == "nccl" && !have_nccl) {
    throw util::InputError(
        "train.dist_backend nccl: this build has no NCCL (build against a CUDA LibTorch)");
  }
  if (backend == "nccl" && !device.is_cuda()) {
    throw util::InputError("train.dist_backend nccl needs train.device cuda");
  }
  auto impl = std::make_unique<Impl>();
  impl->env = env;
  impl->backend = backend;
  impl->timeout_s = options.timeout_s;
  const auto timeout = std::chrono::milliseconds(int64_t(options.timeout_s * 1000));
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(env.master_port);
  so.isServer = env.rank == 0;
  so.numWorkers = env.world_size;
  so.waitWorkers = true;
  so.timeout = timeout;
  try {
    impl->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    if (backend == "gloo") {
      auto go = c10d::ProcessGroupGloo::Options::create();
      go->timeout = timeout;
      go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(env.master_addr));
      impl->gloo =
          c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, env.rank, env.world_size, go);
    }
#ifdef USE_C10D_NCCL
    if (backend == "nccl") {
      auto no = c10d::ProcessGroupNCCL::Options::create();
      no->timeout = timeout;
      impl->nccl =
          c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, env.rank, env.world_size, no);
      impl->scalar_device = device;
    }
#endif
  } catch (const std::exception& e) {
    throw DistributedFailure(fmt::format(
        "rank {}: cannot join the process group of {} ranks at {}:{} within {} s: {}", env.rank,
        env.world_size, env.master_addr, env.master_port, options.timeout_s, first_line(e.what())));
  }
  impl->start_heartbeat();
  d->impl_ = std::move(impl);
  return d;
}

std::string Distributed::backend() const {
  return impl_ ? impl_->backend : "none";
}

std::vector<double> Distributed::sum(const std::vector<double>& values) const {
  if (!impl_ || values.empty()) return values;
  std::vector<at::Tensor> t{torch::tensor(values, torch::kDouble).to(impl_->scalar_device)};
  impl_->run("all-reduce", [&](auto& g) { return g.allreduce(t); });
  const auto cpu = t[0].cpu();
  return {cpu.data_ptr<double>(), cpu.data_ptr<double>() + cpu.numel()};
}

double Distributed::sum(double value) const {
  return sum(std::vector<double>{value})[0];
}

void Distributed::sum_(torch::Tensor& tensor) const {
  if (!impl_) return;
  std::vector<at::Tensor> t{tensor.is_contiguous() ? tensor : tensor.contiguous()};
  impl_->run("all-reduce", [&](auto& g) { return g.allreduce(t); });
  if (!t[0].is_same(tensor)) tensor.copy_(t[0]);
}

bool Distributed::any(bool value) const {
  return sum(value ? 1.0 : 0.0) > 0;
}

namespace {

// Consecutive tensors of one dtype and device, about `bytes` per bucket.
std::vector<std::vector<size_t>> buckets_of(const std::vector<torch::Tensor>& tensors,
                                            int64_t bytes) {
  std::vector<std::vector<size_t>> out;
  int64_t filled = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    const bool fits = !out.empty() && filled < bytes &&
                      tensors[out.back().front()].scalar_type() == t.scalar_type() &&
                      tensors[out.back().front()].device() == t.device();
    if (!fits) {
      out.emplace_back();
      filled = 0;
    }
    out.back().push_back(i);
    filled += t.numel() * int64_t(t.element_size());
  }
  return out;
}

// One bucket's tensors as one flat tensor, and back.
at::Tensor flatten(const std::vector<torch::Tensor>& tensors, const std::vector<size_t>& bucket) {
  std::vector<torch::Tensor> parts;
  for (size_t i : bucket) parts.push_back(tensors[i].reshape(-1));
  return torch::cat(parts);
}

void unflatten(const at::Tensor& flat, std::vector<torch::Tensor>& tensors,
               const std::vector<size_t>& bucket) {
  int64_t offset = 0;
  for (size_t i : bucket) {
    auto& t = tensors[i];
    t.copy_(flat.slice(0, offset, offset + t.numel()).view_as(t));
    offset += t.numel();
  }
}

}  // namespace

void Distributed::average(std::vector<torch::Tensor>& tensors, int64_t bucket_bytes) const {
  if (!impl_ || tensors.empty()) return;
  torch::NoGradGuard no_grad;
  const auto buckets = buckets_of(tensors, bucket_bytes);
  std::vector<std::vector<at::Tensor>> flats(buckets.size());
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  for (size_t b = 0; b < buckets.size(); ++b) {
    flats[b] = {flatten(tensors, buckets[b])};
    works.push_back(
        impl_->start("gradient all-reduce", [&](auto& g) { return g.allreduce(flats[b]); }));
  }
  for (size_t b = 0; b < buckets.size(); ++b) {
    impl_->wait(works[b], "gradient all-reduce");
    flats[b][0].div_(world_size_);
    unflatten(flats[b][0], tensors, buckets[b]);
  }
}

void Distributed::broadcast(std::vector<torch::Tensor>& tensors) const {
  if (!impl_ || tensors.empty()) return;
  torch::NoGradGuard no_grad;
  for (const auto& bucket : buckets_of(tensors, 25 << 20)) {
    std::vector<at::Tensor> flat{flatten(tensors, bucket)};
    impl_->run("broadcast", [&](auto& g) { return g.broadcast(flat); });
    unflatten(flat[0], tensors, bucket);
  }
}

torch::Tensor Distributed::all_gather_rows(const torch::Tensor& rows) const {
  TORCH_CHECK(rows.dim() == 2, "all_gather_rows: a 2-D tensor expected, got ", rows.sizes());
  if (!impl_) return rows;
  const auto device = impl_->scalar_device;
  const auto local = rows.to(device).contiguous();
  std::vector<at::Tensor> count{torch::tensor({local.size(0)}, torch::kLong).to(device)};
  std::vector<std::vector<at::Tensor>> counts(1);
  for (int r = 0; r < world_size_; ++r) counts[0].push_back(torch::empty_like(count[0]));
  impl_->run("all-gather", [&](auto& g) { return g.allgather(counts, count); });
  int64_t most = 0;
  std::vector<int64_t> n;
  for (const auto& c : counts[0]) {
    n.push_back(c.cpu().item<int64_t>());
    most = std::max(most, n.back());
  }
  std::vector<at::Tensor> padded{torch::zeros({most, local.size(1)}, local.options())};
  padded[0].slice(0, 0, local.size(0)).copy_(local);
  std::vector<std::vector<at::Tensor>> all(1);
  for (int r = 0; r < world_size_; ++r) all[0].push_back(torch::empty_like(padded[0]));
  impl_->run("all-gather", [&](auto& g) { return g.allgather(all, padded); });
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < world_size_; ++r)
    parts.push_back(all[0][size_t(r)].slice(0, 0, n[size_t(r)]));
  return torch::cat(parts).to(rows.device());
}

void Distributed::barrier() const {
  if (!impl_) return;
  impl_->run("barrier", [&](auto& g) { return g.barrier(); });
}

void Distributed::report_failure(const std::string& what) const noexcept {
  if (!impl_) return;
  try {
    impl_->store->set(fmt::format("failed/{}", rank_), bytes_of(first_line(what)));
    // Closing the group's connections wakes the peers blocked in a collective with this rank;
    // rank 0 then keeps its store up a little, for them to read why.
    impl_->gloo.reset();
#ifdef USE_C10D_NCCL
    impl_->nccl.reset();
#endif
    if (rank_ == 0) std::this_thread::sleep_for(kHeartbeat * 4);
  } catch (const std::exception& e) {
    spdlog::warn("rank {}: could not record the failure for the other ranks: {}", rank_,
                 first_line(e.what()));
  }
}

}  // namespace aligndetr::engine
