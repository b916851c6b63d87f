#!/usr/bin/env bash
# The paper's CIFAR-10-LT (imbalance 100) row in one device command (< 10 min on an
# H100/H200): the epoch-time benchmark, then the full 200-epoch cifar10-lt-r100 BCL run,
# then LA and CE at the same schedule, each under its own deadline. After each run a row
# goes into OUT/table.md (last and best top-1, many / medium / few, epochs done, wall
# time), so a run cut by its deadline still leaves its row (marked by its epochs).
#
#   bash benchmarks/reproduce_cifar.sh DATA_DIR OUT [EPOCHS]
#
# DATA_DIR holds cifar-10-batches-py (or an ImageFolder copy of CIFAR-10, train/ and
# test/). EPOCHS (default 200, the recipe) compresses the schedule to test the script
# (e.g. 1 on a CPU). Environment: BENCH_ARGS (bench_epoch.py's, default "--steps 20
# --warmup 5"; SKIP_BENCH=1 skips it), BCL_S / LA_S / CE_S (deadlines, default 270 / 110 /
# 110 s), TRAIN_SET (extra --set overrides, e.g. "--set train.precision=bf16"). The runs
# pin the paper's float32 (train.precision=off; auto would take bf16 on the GPU).
# Runs from the source tree (PYTHONPATH=src). Packages the machine lacks (kornia,
# kornia_rs on the lent H200) travel as wheels in .whl/ (benchmarks/gpu_wheels.sh
# downloads them); they are installed into /tmp/site first.
set -u
data=$1
out=$2
epochs=${3:-200}
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
. benchmarks/gpu_info.sh  # $out/gpu.txt
schedule=""
[ "$epochs" != 200 ] && schedule="--epochs $epochs"
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  timeout "${BENCH_S:-120}" python3 benchmarks/bench_epoch.py --data-dir "$data" \
    ${BENCH_ARGS:---steps 20 --warmup 5} --out "$out/bench_epoch.md"
fi
for method in bcl la ce; do
  case $method in bcl) limit=${BCL_S:-270} ;; la) limit=${LA_S:-110} ;; ce) limit=${CE_S:-110} ;; esac
  rm -rf "${out:?}/$method" "$out/$method.seconds"
  start=$(date +%s.%N)
  timeout "$limit" python3 -m balcon train --preset cifar10-lt-r100 --data-dir "$data" \
    --out "$out/$method" $schedule --set loss.method="$method" --set data.pipeline=auto \
    --set train.precision=off ${TRAIN_SET:-} > "$out/$method.out" 2>&1
  status=$?
  python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" \
    "$(date +%s.%N)" > "$out/$method.seconds"
  echo "$method: exit $status after $(cat "$out/$method.seconds") s"
  python3 benchmarks/reproduction_table.py "$out" > "$out/table.md"
  cat "$out/table.md"
done
exit 0
