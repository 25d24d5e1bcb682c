#include "aligndetr/util/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <fmt/format.h>

#include "aligndetr/util/error.h"

namespace aligndetr::util {

namespace {
std::string temp_name_for(const std::string& path) {
  std::random_device rd;
  return fmt::format("{}.tmp.{}.{:x}", path, ::getpid(), rd());
}
}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_path_(temp_name_for(path_)) {
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!file_) {
    throw InputError(
        fmt::format("cannot create '{}' (for '{}'): {}", tmp_path_, path_, std::strerror(errno)));
  }
}

AtomicFile::~AtomicFile() {
  if (file_) std::fclose(file_);
  if (!committed_) std::remove(tmp_path_.c_str());
}

void AtomicFile::write(std::string_view bytes) {
  if (bytes.empty()) return;
  if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
    throw InputError(fmt::format("cannot write '{}': {}", tmp_path_, std::strerror(errno)));
  }
}

void AtomicFile::commit() {
  const bool flushed = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  const int saved_errno = errno;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!flushed || !closed) {
    throw InputError(
        fmt::format("cannot write '{}': {}", path_, std::strerror(flushed ? errno : saved_errno)));
  }
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    throw InputError(
        fmt::format("cannot rename '{}' to '{}': {}", tmp_path_, path_, std::strerror(errno)));
  }
  committed_ = true;
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFile file(path);
  file.write(bytes);
  file.commit();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw InputError(fmt::format("cannot read '{}'", path));
  return buffer.str();
}

}  // namespace aligndetr::util
