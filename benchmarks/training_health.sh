#!/usr/bin/env bash
# Training health on CPU: balcon before (0.2.0) and after the fix beside the reference
# trainer written the published way, on CIFAR-10-LT r100 from the JPEG CIFAR-10, the
# cifar10-lt-r100 recipe compressed to 15 epochs (warm-up 1 epoch, x0.1 at 12 and 14),
# bf16 autocast. One run at a time (two at once halve each other's speed); about 2.5 h
# on 2 cores. Results: BENCHMARKS.md, "Training health".
#
#   bash benchmarks/training_health.sh DATA_DIR OUT_ROOT [PART ...]
#
# DATA_DIR is the ImageFolder tree (train/, test/) that
# ../shared/tools/cifar10_jpeg_to_batches.py writes as cifar10-jpeg/. PARTs (default all):
# before, after, reference, bcl, ablation, diagnostics, table. "before" checks out 0.2.0 (commit
# 9286e57) into OUT_ROOT/balcon-0.2.0 and runs the first 5 of its 15 epochs per seed.
set -eu
data=$(realpath "$1")
root=$2
shift 2
parts=${*:-before after reference bcl ablation diagnostics table}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$root"
train() {  # train NAME ARGS...: balcon's 15-epoch run of the cifar10-lt-r100 recipe
  local name=$1
  shift
  balcon train --preset cifar10-lt-r100 --data-dir "$data" --out "$root/$name" --epochs 15 \
    --set train.precision=bf16 --set train.eval_every=5 "$@"
}
reference() {  # reference NAME ARGS...
  local name=$1
  shift
  python "$here/reference_trainer.py" "$data" "$root/$name.jsonl" --bf16 "$@" \
    > "$root/$name.out"
}
for part in $parts; do
  case $part in
    before)
      [ -d "$root/balcon-0.2.0" ] || git -C "$here/.." worktree add "$root/balcon-0.2.0" 9286e57
      for seed in 0 1 2; do
        PYTHONPATH="$root/balcon-0.2.0/src" python -c "
import sys
from balcon.config.parse import apply_overrides, compress_schedule
from balcon.runs.train import fit
from balcon.presets import load_preset
cfg = compress_schedule(load_preset('cifar10-lt-r100'), 15)
cfg = apply_overrides(cfg, ['loss.method=la', 'train.precision=bf16', 'train.eval_every=5',
                            'train.seed=$seed'])
fit(cfg, '$data', '$root/before-la-s$seed', stop_after=5)"
      done ;;
    after)
      for seed in 0 1 2; do train "after-la-s$seed" --set loss.method=la --set train.seed=$seed; done ;;
    reference)
      for seed in 0 1 2; do reference "ref-la-s$seed" --method la --seed $seed; done
      # the control: the same trainer with balcon's per-batch warm-up
      reference ref-la-s0-perstep --method la --seed 0 --warmup-per-step ;;
    bcl)
      train after-bcl-s0
      reference ref-bcl-s0 --method bcl --seed 0 ;;
    ablation)  # seed 0, LA; "after-la-s0" is the new default (init + warm-up + fan-in)
      train abl-fanout --set loss.method=la --set model.conv_init=kaiming-fan-out
      train abl-shortcutB --set loss.method=la --set model.shortcut=B
      train abl-convtorch --set loss.method=la --set model.conv_init=torch
      train abl-cutoutmean --set loss.method=la --set data.cutout_fill=mean
      for seed in 1 2; do  # the one that looked better, over two more seeds
        train "abl-shortcutB-s$seed" --set loss.method=la --set model.shortcut=B --set train.seed=$seed
      done ;;
    diagnostics)  # per-epoch weight norms and feature alignment: 0.2 + unit init, and 0.3
      [ -d "$root/balcon-0.2.0" ] || git -C "$here/.." worktree add "$root/balcon-0.2.0" 9286e57
      PYTHONPATH="$root/balcon-0.2.0/src" python "$here/training_diagnostics.py" "$data" \
        "$root/diag-unit02" --unit-init > "$root/diag-unit02.out"
      python "$here/training_diagnostics.py" "$data" "$root/diag-cur" > "$root/diag-cur.out" ;;
    table)
      runs() { local out=""; for s in 0 1 2; do out="$out,$root/$1$s$2"; done; echo "${out#,}"; }
      python "$here/health_table.py" --acc "before=$(runs before-la-s)" \
        "after=$(runs after-la-s)" "reference=$(runs ref-la-s .jsonl)" \
        "reference-per-step=$root/ref-la-s0-perstep.jsonl"
      python "$here/health_table.py" --acc "after=$root/after-bcl-s0" \
        "reference=$root/ref-bcl-s0.jsonl"
      python "$here/health_table.py" "after=$root/after-la-s0" "fan-out=$root/abl-fanout" \
        "shortcut-B=$root/abl-shortcutB" "conv-torch=$root/abl-convtorch" \
        "cutout-mean=$root/abl-cutoutmean"
      python "$here/health_table.py" --no-epochs "after=$(runs after-la-s)" \
        "shortcut-B=$root/abl-shortcutB,$root/abl-shortcutB-s1,$root/abl-shortcutB-s2" ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
