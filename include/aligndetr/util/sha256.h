#pragma once
// SHA-256 of a file (OpenSSL), so a run records exactly which weights it started from.

#include <string>

namespace aligndetr::util {

// Lower-case hex digest. Throws InputError naming the file when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace aligndetr::util
