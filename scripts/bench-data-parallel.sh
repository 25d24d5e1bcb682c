#!/usr/bin/env bash
# Training throughput of the tiny preset (configs/align_dino_tiny.yaml) on the built-in synthetic
# data, one process with 2 threads at batch 2 against 2 processes with 1 thread each at batch 1
# (the same global batch), both on this machine: images per second from metrics.jsonl's
# seconds per iteration, the median over the iterations after the first 5.
#   scripts/bench-data-parallel.sh [BIN] [OUT_DIR] [ITERATIONS]
set -euo pipefail
bin=${1:-build/aligndetr}
out=${2:-out/bench-dp}
iters=${3:-40}
data="$out/data"
if [[ ! -f "$data/annotations/instances_train.json" ]]; then
  "$bin" synth --out "$data" --train 64 --val 8 --seed 0 >/dev/null
fi
common=(--config configs/align_dino_tiny.yaml
        --set "data.train.ann=$data/annotations/instances_train.json"
        --set "data.train.images=$data/images/train"
        --set "data.val.ann=$data/annotations/instances_val.json"
        --set "data.val.images=$data/images/val"
        --set "solver.max_iter=$iters" --set solver.warmup_iters=0 --set train.log_period=1
        --set train.eval_period=0 --set "train.checkpoint_period=$iters" --set data.workers=1)

median_time() {
  python3 - "$1" <<'PY'
import json, statistics, sys
times = [json.loads(l)["time"] for l in open(sys.argv[1]) if '"type": "train"' in l][5:]
print(statistics.median(times))
PY
}

"$bin" --threads 2 train "${common[@]}" --set data.batch_size=2 --output "$out/one" >/dev/null 2>&1
bash scripts/dist-train.sh -n 2 -t 1 -b "$bin" -- "${common[@]}" --set data.batch_size=1 \
  --output "$out/two" >/dev/null 2>&1
t1=$(median_time "$out/one/metrics.jsonl")
t2=$(median_time "$out/two/metrics.jsonl")
python3 - "$t1" "$t2" <<'PY'
import sys
t1, t2 = map(float, sys.argv[1:])
print("| run (global batch 2) | s/iteration | images/s |")
print("|---|---|---|")
print(f"| 1 process x 2 threads, batch 2 | {t1:.3f} | {2 / t1:.2f} |")
print(f"| 2 processes x 1 thread, batch 1 each | {t2:.3f} | {2 / t2:.2f} |")
print(f"ratio (2 processes / 1 process): {t1 / t2:.2f}x")
PY
