#!/usr/bin/env bash
# Data-parallel training on this machine without torchrun: N processes of `aligndetr train`, each
# given the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and
# T compute threads. The same run with PyPI's torchrun:
#   torchrun --no-python --nproc-per-node=N build/aligndetr --threads T train ARGS...
#
# Usage: scripts/dist-train.sh [-n N] [-t T] [-p PORT] [-b BIN] -- ARGS...
#   -n N     processes (default 2)        -t T     threads per process (default: cores / N)
#   -p PORT  rank 0's store port (29500)  -b BIN   the aligndetr binary (build/aligndetr)
#   ARGS     train's arguments, e.g. --config configs/align_dino_tiny.yaml --output out/dp
# Exits with the first failing rank's code (0 when all succeed). Ctrl-C stops every rank.
set -euo pipefail

n=2 threads="" port=29500 bin=build/aligndetr
while getopts "n:t:p:b:h" opt; do
  case "$opt" in
    n) n="$OPTARG" ;;
    t) threads="$OPTARG" ;;
    p) port="$OPTARG" ;;
    b) bin="$OPTARG" ;;
    *) sed -n '2,12p' "$0"; exit 3 ;;
  esac
done
shift $((OPTIND - 1))
if ! [[ "$n" =~ ^[1-9][0-9]*$ ]]; then echo "dist-train: -n must be a positive count" >&2; exit 3; fi
if [[ ! -x "$bin" ]]; then echo "dist-train: no binary at $bin (make build, or -b)" >&2; exit 3; fi
if [[ -z "$threads" ]]; then threads=$(( $(nproc) / n )); (( threads >= 1 )) || threads=1; fi

pids=()
# Background processes of a script ignore SIGINT, so Ctrl-C reaches the ranks as SIGTERM.
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
}
trap stop INT TERM
for ((r = 0; r < n; r++)); do
  RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$bin" --threads "$threads" train "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  rc=0
  wait "$pid" || rc=$?
  if (( rc != 0 && status == 0 )); then status=$rc; fi
done
exit "$status"
