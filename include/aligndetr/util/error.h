#pragma once
// Error types shared by every module. The CLI maps them to exit codes (see README, "Exit codes").

#include <stdexcept>
#include <string>

namespace aligndetr::util {

// Bad input from the user: a missing or malformed file, an invalid record, a bad option value.
// The message names the file and the record it concerns.
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A file that is not what it claims to be any more: truncated, or its bytes changed after it was
// written (a zip record whose CRC-32 does not match). A resumed run falls back to an older
// checkpoint on this, not on a file that is whole but does not fit.
class CorruptInput : public InputError {
 public:
  using InputError::InputError;
};

// Exit codes of the `aligndetr` command.
enum ExitCode : int {
  kExitOk = 0,
  kExitInternal = 1,     // a bug or an unexpected failure
  kExitInput = 2,        // InputError: bad data or files
  kExitUsage = 3,        // bad command-line arguments
  kExitDiverged = 4,     // training stopped on a non-finite loss (last good state saved)
  kExitDistributed = 5,  // another rank of a data-parallel run failed or stopped answering
  // 128 + signal (130 SIGINT, 143 SIGTERM): training stopped on a signal, checkpoint written
};

}  // namespace aligndetr::util
