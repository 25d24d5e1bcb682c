#pragma once
// What keeps a run directory safe: one training at a time (a lock file naming its owner), and
// the temporaries of interrupted atomic writes cleaned away.

#include <string>

namespace aligndetr::engine {

// OUTPUT/.lock, held (flock) for the lifetime of the object and holding "pid host start-time".
// A directory another live process holds is an InputError naming that process; a lock file left
// by a process that died is taken over with a warning naming it. The lock is released (and the
// file emptied) on destruction, and by the kernel if the process dies.
class RunDirLock {
 public:
  explicit RunDirLock(const std::string& dir);
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// Deletes `<name>.tmp.<pid>.<hex>` files (util::AtomicFile's temporaries) in `dir` whose writer
// is no longer running on this host; returns how many.
int remove_stale_temporaries(const std::string& dir);

}  // namespace aligndetr::engine
