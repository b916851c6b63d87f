#!/usr/bin/env bash
# Fine-tuning against training from scratch on a long-tailed photo folder (issue 21):
# each setting trains once into build/finetune-table/<name>, timed from the command to
# its end; then benchmarks/finetune_table.py prints the table (test top-1, many / medium /
# few, seconds per training epoch, wall time of the command).
#
#   bash benchmarks/finetune_table.sh DATA_DIR WEIGHTS.pth [NAME ...]
#
# DATA_DIR: e.g. build/photo-lt (benchmarks/make_photo_lt.py); WEIGHTS.pth: the
# EfficientNet-Lite0 weights of benchmarks/efficientnet_lite0_weights.py. NAMEs pick
# settings (default: all, in the order below). Pause background runs first.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$1; weights=$2; shift 2
out=build/finetune-table
py=${PYTHON:-.venv/bin/python}
ft="--preset imagefolder-finetune --set model.pretrained=$weights"
declare -A runs=(
  [preset]="$ft"
  [scratch-r32-bcl]="--preset imagefolder-r32 --epochs 3"
  [scratch-r32-la]="--preset imagefolder-r32 --epochs 3 --set loss.method=la"
  [linear-la]="$ft --set model.finetune=linear"
  [linear-la-160]="$ft --set model.finetune=linear --set data.image_size=160"
  [linear-bcl]="$ft --set model.finetune=linear --set loss.method=bcl --epochs 2"
  [partial-la]="$ft --set model.finetune=partial --epochs 2"
  [full-la]="$ft --set model.finetune=full --epochs 2"
  [partial-bcl]="$ft --set model.finetune=partial --set loss.method=bcl --epochs 2"
  [full-bcl]="$ft --set model.finetune=full --set loss.method=bcl --epochs 2"
  # the four modes x {LA, BCL} at the preset's 160 px, 3 epochs each
  [scratch-r50-la-160]="--preset imagefolder-r50 --epochs 3 --set loss.method=la --set data.image_size=160"
  [linear-la-160-3ep]="$ft --set model.finetune=linear --epochs 3"
  [linear-bcl-160-3ep]="$ft --set model.finetune=linear --set loss.method=bcl --epochs 3"
  [partial-la-160-3ep]="$ft --set model.finetune=partial --epochs 3"
  [partial-bcl-160-3ep]="$ft --set model.finetune=partial --set loss.method=bcl --epochs 3"
  [full-la-160-3ep]="$ft --set model.finetune=full --epochs 3"
  [full-la-160-3ep-freeze-bn]="$ft --set model.finetune=full --set model.freeze_bn=true --epochs 3"
  [full-bcl-160-3ep]="$ft --set model.finetune=full --set loss.method=bcl --epochs 3"
  [preset-seed1]="$ft --set train.seed=1"
  [preset-seed2]="$ft --set train.seed=2"
)
order="preset scratch-r32-bcl scratch-r32-la linear-la linear-la-160 linear-bcl partial-la full-la partial-bcl full-bcl
  scratch-r50-la-160 linear-la-160-3ep linear-bcl-160-3ep partial-la-160-3ep partial-bcl-160-3ep
  full-la-160-3ep full-la-160-3ep-freeze-bn full-bcl-160-3ep preset-seed1 preset-seed2"
mkdir -p "$out"
for name in ${*:-$order}; do
  rm -rf "${out:?}/$name"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  "$py" -m balcon train ${runs[$name]} --data-dir "$data" --out "$out/$name" > "$out/$name.log" 2>&1
  echo "$(date +%s.%N) - $start" | bc > "$out/$name.wall"
  echo "$name: $(cat "$out/$name.wall") s"
done
"$py" benchmarks/finetune_table.py "$out"
