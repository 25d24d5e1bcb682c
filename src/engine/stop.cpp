#include "aligndetr/engine/stop.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>

namespace aligndetr::engine {
namespace {

std::atomic<int> g_signal{0};

extern "C" void on_stop_signal(int sig) {
  if (g_signal.exchange(sig) != 0) {
    // The second signal: the user means it.
    static const char message[] = "\nsecond signal: stopping now, without a checkpoint\n";
    [[maybe_unused]] const auto written = ::write(STDERR_FILENO, message, sizeof(message) - 1);
    ::_exit(128 + sig);
  }
  static const char message[] =
      "\nstopping after this step (writing a checkpoint); a second signal stops at once\n";
  [[maybe_unused]] const auto written = ::write(STDERR_FILENO, message, sizeof(message) - 1);
}

}  // namespace

void install_stop_handlers() {
  g_signal = 0;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

int stop_requested() {
  return g_signal.load();
}

void request_stop(int signal) {
  g_signal = signal;
}

}  // namespace aligndetr::engine
