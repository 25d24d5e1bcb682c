#!/usr/bin/env bash
# libFuzzer targets for the readers of untrusted files (fuzz/): the COCO annotation reader and
# the COCO results reader, built with clang and AddressSanitizer + UndefinedBehaviorSanitizer,
# each run for FUZZ_SECONDS (default 60) from the seeds in fuzz/seeds (plus ../shared's real
# files when present). A crash, a sanitizer report or an exception other than InputError fails
# the run; the input that did it is left in BUILD_DIR/<target>-artifacts/.
#   scripts/fuzz.sh [BUILD_DIR]          (default build-fuzz; `make fuzz`)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
seconds=${FUZZ_SECONDS:-60}
cxx=${FUZZ_CXX:-clang++}
if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "fuzz: $cxx not found (apt install clang); fuzzing skipped" >&2
  exit 0
fi
mkdir -p "$build"
flags=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -Iinclude)
# The readers and what they use, without the AVX2 build flags (the fuzzer build asks for no
# particular CPU) and without LibTorch.
sources=(src/util/atomic_file.cpp src/util/json.cpp src/coco/annotations.cpp src/coco/dataset.cpp
         src/coco/names.cpp src/coco/results.cpp src/coco/results_writer.cpp)
libs=(-lsimdjson -lfmt -lpthread)
for target in coco_reader results_reader; do
  echo "fuzz: building $target"
  "$cxx" "${flags[@]}" "fuzz/fuzz_$target.cpp" "${sources[@]}" "${libs[@]}" -o "$build/fuzz_$target"
done

run() {
  local target=$1 seeds=$2
  local corpus="$build/$target-corpus" artifacts="$build/$target-artifacts/"
  mkdir -p "$corpus" "$artifacts"
  cp "$seeds"/* "$corpus"/
  shift 2
  for extra in "$@"; do [[ -f $extra ]] && cp "$extra" "$corpus"/; done
  echo "fuzz: $target for ${seconds}s"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$build/fuzz_$target" "$corpus" -max_total_time="$seconds" -max_len=65536 \
    -artifact_prefix="$artifacts" -print_final_stats=1 2>&1 | tail -4
  return "${PIPESTATUS[0]}"
}
run coco_reader fuzz/seeds/coco ../shared/data/cocoapi-fake100/instances_val2014_100.json
run results_reader fuzz/seeds/results ../shared/data/cocoapi-fake100/instances_val2014_fakebbox100_results.json
echo "fuzz: no failures"
