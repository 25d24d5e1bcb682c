#!/usr/bin/env bash
# The demo: generate the built-in synthetic dataset, train the tiny Align-DETR on it on the CPU
# (about 10 minutes on 2 cores), evaluate it with the alignment analysis, and draw predictions.
#   scripts/demo.sh BUILD/aligndetr OUT_DIR
set -euo pipefail
bin=${1:-build/aligndetr}
out=${2:-out/demo}
data="$out/data"
run="$out/train"
config=configs/demo_synth.yaml
paths=(--set "data.train.ann=$data/annotations/instances_train.json"
       --set "data.train.images=$data/images/train"
       --set "data.val.ann=$data/annotations/instances_val.json"
       --set "data.val.images=$data/images/val")

# Generated again whenever the settings change (a stamp file records them).
synth_args=(--train 800 --val 100 --size 256 --min-object-size 16 --seed 0)
if [[ ! -f "$data/annotations/instances_val.json" || "$(cat "$data/.settings" 2>/dev/null)" != "${synth_args[*]}" ]]; then
  rm -rf "$data"
  "$bin" synth --out "$data" "${synth_args[@]}"
  echo "${synth_args[*]}" > "$data/.settings"
fi
"$bin" dataset show --ann "$data/annotations/instances_train.json" --images "$data/images/train" \
  --out "$out/ground_truth" --limit 8 --augment
"$bin" train --config "$config" "${paths[@]}" --output "$run"
"$bin" eval --config "$config" "${paths[@]}" --weights "$run/model_final.pt" --analysis \
  --out "$out/eval"
"$bin" predict --config "$config" "${paths[@]}" --weights "$run/model_final.pt" \
  --input "$data/images/val" --out "$out/predictions" --score-thr 0.15

field() { sed -nE "s/.*\"$1\": ?([-0-9.eE]+|null).*/\1/p" "$2" | head -n 1; }
ap=$(field AP "$out/eval/eval.json")
ap50=$(field AP50 "$out/eval/eval.json")
recall=$(field br_recall_top_n "$out/eval/alignment.json")
pearson=$(field pearson "$out/eval/alignment.json")
fmt4() { if [[ $1 == null || -z $1 ]]; then echo "$1"; else printf '%.4f' "$1"; fi; }
echo "demo: AP=$(fmt4 "$ap") AP50=$(fmt4 "$ap50") BR_recall_N=$(fmt4 "$recall") pearson=$(fmt4 "$pearson") out=$out"
