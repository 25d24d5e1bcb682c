#include "aligndetr/util/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "aligndetr/util/error.h"

namespace aligndetr::util {

// Written without fmt: the core modules use this file and build with LibTorch alone.
namespace {
std::string temp_name_for(const std::string& path) {
  std::random_device rd;
  std::ostringstream name;
  name << path << ".tmp." << ::getpid() << '.' << std::hex << rd();
  return name.str();
}

std::string in_quotes(const std::string& path) {
  return "'" + path + "'";
}
}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_path_(temp_name_for(path_)) {
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!file_) {
    throw InputError("cannot create " + in_quotes(tmp_path_) + " (for " + in_quotes(path_) +
                     "): " + std::strerror(errno));
  }
}

AtomicFile::~AtomicFile() {
  if (file_) std::fclose(file_);
  if (!committed_) std::remove(tmp_path_.c_str());
}

void AtomicFile::write(std::string_view bytes) {
  if (bytes.empty()) return;
  if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
    throw InputError("cannot write " + in_quotes(tmp_path_) + ": " + std::strerror(errno));
  }
}

void AtomicFile::commit() {
  const bool flushed = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  const int saved_errno = errno;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!flushed || !closed) {
    throw InputError("cannot write " + in_quotes(path_) + ": " +
                     std::strerror(flushed ? errno : saved_errno));
  }
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    throw InputError("cannot rename " + in_quotes(tmp_path_) + " to " + in_quotes(path_) + ": " +
                     std::strerror(errno));
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
  if (!in) throw InputError("cannot open " + in_quotes(path) + ": " + std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw InputError("cannot read " + in_quotes(path));
  return buffer.str();
}

}  // namespace aligndetr::util
