#pragma once
// Process-wide set-up: compute threads, the log format, and glibc's allocator kept from
// returning large blocks to the system between steps (ALIGNDETR_SYSTEM_MALLOC=1: its defaults).

namespace aligndetr::engine {

// Sets LibTorch's intra-op threads (Debian's build starts with one) and OpenCV's.
// threads <= 0 means all cores. Returns the count in use.
int configure_runtime(int threads = 0);

}  // namespace aligndetr::engine
