#include "aligndetr/engine/runtime.h"

#include <thread>

#include <ATen/Parallel.h>
#include <opencv2/core/utility.hpp>
#include <spdlog/spdlog.h>

namespace aligndetr {

int configure_runtime(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  cv::setNumThreads(threads);
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  return threads;
}

}  // namespace aligndetr
