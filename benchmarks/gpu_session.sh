#!/usr/bin/env bash
# The GPU checks of a session, in one call: the BCL loss benchmark on CUDA, then
# CIFAR-10-LT (imbalance 100) with the cifar10-lt-r100 preset, its schedule compressed
# to EPOCHS epochs (warm-up and lr steps scaled), for each method in METHODS.
#
#   METHODS="bcl" bash benchmarks/gpu_session.sh CIFAR10_JPEG_TAR OUT_DIR [EPOCHS] [LIMIT_S]
#
# CIFAR10_JPEG_TAR is cifar10-jpeg.tar.gz (an ImageFolder tree with train/ and test/,
# which balcon reads as CIFAR-10). Runs from the source tree (PYTHONPATH=src), so it
# needs only torch, torchvision, timm, PyYAML, tqdm and scikit-learn on the machine.
# Writes into OUT_DIR: gpu.txt, bench_loss_cuda.md, and <method>-train.log,
# <method>-metrics.jsonl per method. LIMIT_S bounds each training run; SKIP_BENCH=1
# skips the loss benchmark.
set -u
tar_path=$1
out=$2
epochs=${3:-50}
limit=${4:-330}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
. benchmarks/gpu_info.sh  # $out/gpu.txt: GPU, cores, versions
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  python3 benchmarks/bench_loss.py --markdown --repeats 20 --warmup 5 2>&1 | tee "$out/bench_loss_cuda.md"
fi
data=$(mktemp -d)
tar xzf "$tar_path" -C "$data"
for method in ${METHODS:-bcl}; do
  run=$(mktemp -d)/run
  start=$(date +%s)
  timeout "$limit" python3 -m balcon train --preset cifar10-lt-r100 --data-dir "$data/cifar10-jpeg" \
    --out "$run" --epochs "$epochs" --set train.eval_every=5 --set loss.method="$method" ${TRAIN_SET:-}
  echo "$method: exit $? after $(( $(date +%s) - start )) s"
  cp "$run/train.log" "$out/$method-train.log" 2>/dev/null
  cp "$run/metrics.jsonl" "$out/$method-metrics.jsonl" 2>/dev/null
done
exit 0
