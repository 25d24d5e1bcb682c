#include "aligndetr/engine/runtime.h"

#include <thread>

#include <ATen/Parallel.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <opencv2/core/utility.hpp>

namespace aligndetr {

int configure_runtime(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  cv::setNumThreads(threads);
  // Logs go to stderr: stdout carries results (--json) that other programs read.
  static const bool logger_ready = [] {
    auto logger = spdlog::stderr_color_mt("aligndetr");
    spdlog::set_default_logger(logger);
    return true;
  }();
  (void)logger_ready;
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  return threads;
}

}  // namespace aligndetr
