#pragma once
// Stopping a training on SIGINT or SIGTERM without losing work: the first signal asks the loop to
// finish its step, write a checkpoint and stop (TrainingInterrupted, exit 128 + signal: 130 for
// Ctrl-C, 143 for SIGTERM); a second one ends the process at once (a checkpoint being written is
// left as a temporary, which the next start cleans away).

#include <stdexcept>
#include <string>

namespace aligndetr::engine {

// Installs the handlers (idempotent) and clears any earlier request.
void install_stop_handlers();
// The signal that asked to stop, or 0.
int stop_requested();
// As if `signal` had arrived (tests; a rank told by another that the run is stopping).
void request_stop(int signal);

class TrainingInterrupted : public std::runtime_error {
 public:
  TrainingInterrupted(const std::string& message, int signal, std::string checkpoint)
      : std::runtime_error(message), signal_(signal), checkpoint_(std::move(checkpoint)) {}
  int signal() const { return signal_; }
  const std::string& checkpoint() const { return checkpoint_; }
  // 128 + signal, as shells report a process a signal ended.
  int exit_code() const { return 128 + signal_; }

 private:
  int signal_;
  std::string checkpoint_;
};

}  // namespace aligndetr::engine
