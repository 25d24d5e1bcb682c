#!/usr/bin/env bash
# The demo: generate the built-in synthetic dataset, check it, and render its ground truth
# with and without the training augmentation.
#   scripts/demo.sh BUILD/aligndetr OUT_DIR
set -euo pipefail
bin=${1:-build/aligndetr}
out=${2:-out/demo}
data="$out/data"

if [[ ! -f "$data/annotations/instances_val.json" ]]; then
  "$bin" synth --out "$data" --train 400 --val 100 --size 320 --seed 0
fi
"$bin" dataset stats --ann "$data/annotations/instances_train.json" --images "$data/images/train"
"$bin" dataset show --ann "$data/annotations/instances_train.json" --images "$data/images/train" \
  --out "$out/gt" --limit 8
"$bin" dataset show --ann "$data/annotations/instances_train.json" --images "$data/images/train" \
  --out "$out/gt_augmented" --limit 8 --augment
stats=$("$bin" dataset stats --ann "$data/annotations/instances_train.json" --json)
images=$(sed -E 's/.*"images": ([0-9]+).*/\1/' <<<"$stats")
annotations=$(sed -E 's/.*"annotations": ([0-9]+).*/\1/' <<<"$stats")
echo "demo: train_images=$images train_annotations=$annotations rendered=$out/gt out=$out"
