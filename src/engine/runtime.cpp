#include "aligndetr/engine/runtime.h"

#include <dlfcn.h>
#include <malloc.h>

#include <cstdlib>
#include <limits>
#include <string>
#include <thread>

#include <ATen/Parallel.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <opencv2/core/utility.hpp>

namespace aligndetr::engine {
namespace {

// OpenBLAS built on pthreads keeps its own pool next to LibTorch's OpenMP one; both spin on the
// same cores and a training step runs up to 2x slower. One BLAS thread lets OpenMP own the cores.
// Looked up at run time: the process may use another BLAS (MKL, the OpenMP OpenBLAS) or none.
bool tame_pthread_openblas(int threads) {
  using GetParallel = int (*)();
  using SetThreads = void (*)(int);
  const auto get_parallel =
      reinterpret_cast<GetParallel>(dlsym(RTLD_DEFAULT, "openblas_get_parallel"));
  const auto set_threads =
      reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  constexpr int kPthreads = 1;
  if (threads <= 1 || !get_parallel || !set_threads || get_parallel() != kPthreads) return false;
  set_threads(1);
  return true;
}

// glibc maps every block above its mmap threshold (at most 32 MiB) afresh and unmaps it on free,
// so each step's large activations come back as new pages: 1.3 million page faults, a quarter of
// the R50 inference time (`aligndetr bench`: 5.2 s -> 3.9 s at 800x1216 with the same peak
// memory). From the heap, freed blocks are reused instead; trimming is off for the same reason.
// ALIGNDETR_SYSTEM_MALLOC=1 keeps glibc's defaults. Under tcmalloc (the command links it where
// the build found it) these calls change nothing: it reuses freed spans without this.
bool keep_freed_memory() {
  const char* opt_out = std::getenv("ALIGNDETR_SYSTEM_MALLOC");
  if (opt_out && std::string(opt_out) == "1") return false;
  return mallopt(M_MMAP_MAX, 0) == 1 &&
         mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max()) == 1;
}

}  // namespace

int configure_runtime(int threads) {
  static const bool heap_reuse = keep_freed_memory();
  (void)heap_reuse;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  cv::setNumThreads(threads);
  const bool tamed = tame_pthread_openblas(threads);
  // Logs go to stderr: stdout carries results (--json) that other programs read.
  static const bool logger_ready = [] {
    auto logger = spdlog::stderr_color_mt("aligndetr");
    spdlog::set_default_logger(logger);
    return true;
  }();
  (void)logger_ready;
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  if (tamed) {
    spdlog::debug(
        "OpenBLAS uses pthreads: its GEMMs run on one thread so they do not compete with "
        "LibTorch's {} OpenMP threads (the OpenMP build of OpenBLAS avoids this)",
        threads);
  }
  return threads;
}

}  // namespace aligndetr::engine
