#!/usr/bin/env bash
# The 224-px GPU check (issue: scale-out, item 8), in one call on a lent GPU machine:
# a synthetic JPEG folder (train/ and val/, 500x375 like ImageNet), then the
# imagefolder-r50 preset (ResNet-50, 224-px views, BCL) with bf16 and channels_last,
# first as one process, then under torchrun with one process per GPU. Prints images/s
# and the data-wait share per epoch.
#
#   bash benchmarks/gpu_224_check.sh OUT_DIR [IMAGES] [EPOCHS] [LIMIT_S]
#
# Runs from the source tree (PYTHONPATH=src). Writes into OUT_DIR: gpu.txt and, per
# run, <name>-train.log and <name>-metrics.jsonl.
set -u
out=$1
images=${2:-4096}
epochs=${3:-2}
limit=${4:-240}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
. benchmarks/gpu_info.sh  # $out/gpu.txt: GPU, cores, versions
data=$(mktemp -d)
python3 - "$data" "$images" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from bench_pipeline import write_image_folder
root, n = Path(sys.argv[1]), int(sys.argv[2])
write_image_folder(root / "train", n, 16, 500, 375, 90)
write_image_folder(root / "val", max(64, n // 16), 16, 500, 375, 90)
PY
gpus=$(nvidia-smi -L 2>/dev/null | wc -l); [ "$gpus" -ge 1 ] || gpus=1
common=(--preset imagefolder-r50 --data-dir "$data" --epochs "$epochs"
        --set train.precision=bf16 --set model.channels_last=true --set train.eval_every=1)
for name in single torchrun; do
  run=$(mktemp -d)/run
  start=$(date +%s)
  if [ "$name" = single ]; then
    timeout "$limit" python3 -m balcon train "${common[@]}" --out "$run"
  else
    timeout "$limit" python3 -m torch.distributed.run --standalone --nproc_per_node "$gpus" \
      -m balcon train "${common[@]}" --out "$run"
  fi
  echo "$name: exit $? after $(( $(date +%s) - start )) s"
  cp "$run/train.log" "$out/$name-train.log" 2>/dev/null
  cp "$run/metrics.jsonl" "$out/$name-metrics.jsonl" 2>/dev/null
done
exit 0
