#!/usr/bin/env bash
# The test suite built with AddressSanitizer and UndefinedBehaviorSanitizer (-O1, line tables),
# run without the long training and multi-process tests (SANITIZE_EXCLUDE, a ctest regex). Any
# report fails the test it happens in. LibTorch is not instrumented; it keeps process-wide
# allocations until exit, so leak reports are off.
#   scripts/test-sanitizers.sh [BUILD_DIR]     (default build-sanitize; `make test-sanitize`)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-sanitize}
exclude=${SANITIZE_EXCLUDE:-'^(Trainer\.LossFallsAndApRises|DataParallel\..*)$'}
jobs=${JOBS:-$(nproc)}
bash scripts/install-deps.sh
# NDEBUG as LibTorch was built: its headers declare some members (RecordFunction's) only without
# it, and a class laid out otherwise than the library's is read as garbage.
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O1 -g1 -DNDEBUG" \
  -DALIGNDETR_SANITIZE=ON -DALIGNDETR_BUILD_BENCH=OFF
cmake --build "$build" -j "$jobs"
cd "$build"
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --output-on-failure -j "$jobs" -E "$exclude"
