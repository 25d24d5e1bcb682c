#pragma once
// Files that are either completely written or not there at all: content goes to a temporary file
// beside the target, is flushed, and is renamed over the target only when everything succeeded.
// A killed process or a full disk therefore never leaves a half-written result.

#include <cstdio>
#include <string>
#include <string_view>

namespace aligndetr::util {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();  // removes the temporary file unless commit() succeeded
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(std::string_view bytes);
  // Flushes, syncs and renames the temporary file over the target. Throws InputError on failure.
  void commit();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string tmp_path_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

void write_file_atomic(const std::string& path, std::string_view bytes);
std::string read_file(const std::string& path);

}  // namespace aligndetr::util
