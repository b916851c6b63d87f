#!/usr/bin/env bash
# The GPU checks of a session, in one call: the BCL loss benchmark on CUDA, then
# BCL on CIFAR-10-LT (imbalance 100) with the cifar10-lt-r100 preset, its schedule
# compressed to EPOCHS epochs (warm-up and lr steps scaled).
#
#   bash benchmarks/gpu_session.sh CIFAR10_JPEG_TAR OUT_DIR [EPOCHS] [TRAIN_LIMIT_S]
#
# CIFAR10_JPEG_TAR is cifar10-jpeg.tar.gz (an ImageFolder tree with train/ and test/,
# which balcon reads as CIFAR-10). Runs from the source tree (PYTHONPATH=src), so it
# needs only torch, torchvision, timm, PyYAML, tqdm and scikit-learn on the machine.
# Writes into OUT_DIR: gpu.txt, bench_loss_cuda.md, train.log, metrics.jsonl,
# summary.json, curves.png. SKIP_BENCH=1 skips the loss benchmark.
set -u
tar_path=$1
out=$2
epochs=${3:-50}
limit=${4:-330}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  nproc
  python3 -c "import sys, torch, torchvision, timm; print(sys.version.split()[0], torch.__version__, torchvision.__version__, timm.__version__)"
} > "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  python3 benchmarks/bench_loss.py --markdown --repeats 20 --warmup 5 2>&1 | tee "$out/bench_loss_cuda.md"
fi
data=$(mktemp -d)
start=$(date +%s)
tar xzf "$tar_path" -C "$data"
echo "unpacked in $(( $(date +%s) - start )) s"
run=$(mktemp -d)/run
start=$(date +%s)
timeout "$limit" python3 -m balcon train --preset cifar10-lt-r100 --data-dir "$data/cifar10-jpeg" \
  --out "$run" --epochs "$epochs" --set train.eval_every=5 ${TRAIN_SET:-}
echo "train exit $? after $(( $(date +%s) - start )) s"
for f in train.log metrics.jsonl summary.json curves.png; do
  [ -f "$run/$f" ] && cp "$run/$f" "$out/"
done
[ -f "$run/curves.png" ] || python3 -c "from balcon.report import plot_curves; plot_curves('$run')" \
  && cp "$run/curves.png" "$out/" 2>/dev/null
exit 0
