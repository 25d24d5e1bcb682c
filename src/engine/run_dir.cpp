#include "aligndetr/engine/run_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <regex>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "aligndetr/util/error.h"

namespace aligndetr::engine {

namespace fs = std::filesystem;

namespace {

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

bool process_alive(long pid) {
  return pid > 0 && (::kill(pid_t(pid), 0) == 0 || errno == EPERM);
}

std::string read_all(int fd) {
  std::string text;
  char buf[512];
  ::lseek(fd, 0, SEEK_SET);
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) text.append(buf, size_t(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

// "pid 123 on host h since 2026-12-03 10:00:00" from the file's "123 h 2026-12-03T10:00:00".
std::string describe_owner(const std::string& text) {
  std::istringstream in(text);
  std::string pid, host, since;
  in >> pid >> host >> since;
  if (pid.empty()) return "an unknown process";
  return fmt::format("pid {} on host {}{}", pid, host.empty() ? "?" : host,
                     since.empty() ? "" : " since " + since);
}

}  // namespace

RunDirLock::RunDirLock(const std::string& dir) : path_((fs::path(dir) / ".lock").string()) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw util::InputError(fmt::format("cannot create '{}': {}", dir, ec.message()));
  if (!fs::is_directory(dir)) {
    throw util::InputError(fmt::format("'{}' is not a directory", dir));
  }
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw util::InputError(fmt::format("cannot create '{}': {}", path_, std::strerror(errno)));
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string owner = describe_owner(read_all(fd_));
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK) {
      throw util::InputError(fmt::format(
          "'{}' is in use by another training ({}): wait for it to finish, stop it, or choose "
          "another --output",
          dir, owner));
    }
    throw util::InputError(fmt::format("cannot lock '{}': {}", path_, std::strerror(err)));
  }
  const std::string previous = read_all(fd_);
  if (!previous.empty()) {
    spdlog::warn("'{}' was left by {}, which is no longer running: taken over", path_,
                 describe_owner(previous));
  }
  char since[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%S", std::localtime(&now));
  const std::string mine = fmt::format("{} {} {}\n", ::getpid(), host_name(), since);
  if (::ftruncate(fd_, 0) != 0 ||
      ::pwrite(fd_, mine.data(), mine.size(), 0) != ssize_t(mine.size())) {
    spdlog::warn("cannot write the owner into '{}': {}", path_, std::strerror(errno));
  }
}

RunDirLock::~RunDirLock() {
  if (fd_ < 0) return;
  // Emptied, not removed: a process that opened the file meanwhile still locks the same inode.
  if (::ftruncate(fd_, 0) != 0) spdlog::debug("cannot empty '{}'", path_);
  ::flock(fd_, LOCK_UN);
  ::close(fd_);
}

int remove_stale_temporaries(const std::string& dir) {
  static const std::regex pattern(R"(.+\.tmp\.(\d+)\.[0-9a-f]+)");
  int removed = 0;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, m, pattern)) continue;
    if (process_alive(std::stol(m[1].str()))) continue;
    std::error_code rm;
    if (fs::remove(entry.path(), rm)) ++removed;
  }
  return removed;
}

}  // namespace aligndetr::engine
