#!/usr/bin/env bash
# CE vs LA vs BCL on real CIFAR-10-LT (imbalance 100) with a CPU-sized schedule: the
# cifar10-lt-r100 preset compressed to EPOCHS epochs (warm-up and lr steps scaled),
# bf16 autocast, then one fp32 and one bf16 epoch of the full BCL recipe for timing.
#
#   bash benchmarks/cpu_cifar10_lt.sh DATA_DIR OUT_ROOT [EPOCHS]
#
# DATA_DIR holds cifar-10-batches-py (e.g. made by ../shared/tools/cifar10_jpeg_to_batches.py).
# Each run leaves its run directory under OUT_ROOT; summary.json holds the numbers.
set -eu
data=$1
root=$2
epochs=${3:-15}
for method in ce la bcl; do
  /usr/bin/time -f "$method wall %e s" balcon train --preset cifar10-lt-r100 --data-dir "$data" \
    --out "$root/$method" --epochs "$epochs" --set loss.method=$method \
    --set train.precision=bf16 --set train.eval_every=5
done
for precision in off bf16; do
  /usr/bin/time -f "bcl full-recipe epoch ($precision) wall %e s" balcon train \
    --preset cifar10-lt-r100 --data-dir "$data" --out "$root/epoch-$precision" \
    --epochs 1 --set train.precision=$precision
done
