#!/usr/bin/env bash
# The paper's CIFAR-LT (imbalance 100) rows in one device command (< 10 min on an
# H100/H200): the epoch-time benchmark, then the 200-epoch runs of each method of METHODS,
# one after the other under its own deadline (default) or all at once under one deadline
# (TOGETHER=1). After the runs a row per method goes into OUT/table.md (last and best
# top-1, many / medium / few, epochs done, wall time), so a run cut by its deadline still
# leaves its row (marked by its epochs).
#
#   bash benchmarks/reproduce_cifar.sh DATA OUT [EPOCHS]
#
# DATA holds cifar-10-batches-py / cifar-100-python (or an ImageFolder copy of CIFAR,
# train/ and test/), or is a .pack file of benchmarks/cifar_lt_pack.py (a preset's
# long-tailed subset and the test set, ~40 MB, unpacked here first). EPOCHS (default 200,
# the recipe) compresses the schedule to test the script (e.g. 1 on a CPU). Environment:
# PRESET (default cifar10-lt-r100), METHODS (default "bcl la ce"), TOGETHER=1 with RUN_S
# (its deadline, default 480 s), else BCL_S / LA_S / CE_S (default 270 / 110 / 110 s),
# BENCH_ARGS (bench_epoch.py's, default "--steps 20 --warmup 5"; SKIP_BENCH=1 skips it),
# TRAIN_SET (extra --set overrides, e.g. "--set train.checkpoint_minutes=2"). The runs pin
# the paper's float32 (train.precision=off; auto would take bf16 on the GPU). Runs from the
# source tree (PYTHONPATH=src). Packages the machine lacks (kornia, kornia_rs on the lent
# H200) travel as wheels in .whl/ (benchmarks/gpu_wheels.sh downloads them); they are
# installed into /tmp/site first. Exits 1 when a run failed (a run cut by its deadline
# has not), 2 when a .pack does not fit the preset or TRAIN_SET.
set -u
data=$1
out=$2
epochs=${3:-200}
preset=${PRESET:-cifar10-lt-r100}
methods=${METHODS-bcl la ce}  # set but empty: no training runs (the benchmark alone)
mkdir -p "$out"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
. benchmarks/gpu_info.sh  # $out/gpu.txt
if [[ $data == *.pack ]]; then
  # only the pack's own subset holds real images: refuse what would select others
  case "${TRAIN_SET:-}" in *data.imbalance*|*data.subsample_seed*|*data.profile*)
    echo "a .pack holds one preset's subset: drop data.imbalance / subsample_seed / profile" \
      "from TRAIN_SET, or pass the full data" >&2; exit 2 ;;
  esac
  unpacked=$(mktemp -d)
  python3 benchmarks/cifar_lt_pack.py unpack "$data" "$unpacked" --preset "$preset" || exit 2
  data=$unpacked
fi
schedule=""
[ "$epochs" != 200 ] && schedule="--epochs $epochs"
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  timeout "${BENCH_S:-120}" python3 benchmarks/bench_epoch.py --data-dir "$data" \
    --preset "$preset" ${BENCH_ARGS:---steps 20 --warmup 5} --out "$out/bench_epoch.md"
fi

run() {  # run METHOD LIMIT: one training run under its deadline, its wall time in OUT
  local method=$1 limit=$2 start status
  rm -rf "${out:?}/$method" "$out/$method.seconds"
  start=$(date +%s.%N)
  timeout "$limit" python3 -m balcon train --preset "$preset" --data-dir "$data" \
    --out "$out/$method" $schedule --set loss.method="$method" --set data.pipeline=auto \
    --set train.precision=off ${TRAIN_SET:-} > "$out/$method.out" 2>&1
  status=$?
  python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" \
    "$(date +%s.%N)" > "$out/$method.seconds"
  echo "$method: exit $status after $(cat "$out/$method.seconds") s"
  # 0 finished, 124 / 75 cut by the deadline (SIGTERM: last.pt written); else it failed
  case $status in 0|124|75) ;; *) echo "$method" >> "$out/failed" ;; esac
}

rm -f "$out/failed"
for method in $methods; do
  if [ "${TOGETHER:-0}" = 1 ]; then
    run "$method" "${RUN_S:-480}" &
  else
    case $method in bcl) limit=${BCL_S:-270} ;; la) limit=${LA_S:-110} ;; *) limit=${CE_S:-110} ;; esac
    run "$method" "$limit"
    python3 benchmarks/reproduction_table.py "$out" "$preset" > "$out/table.md"
  fi
done
wait
python3 benchmarks/reproduction_table.py "$out" "$preset" > "$out/table.md"
cat "$out/table.md"
# a run that failed (not one its deadline cut) makes the script fail, naming it
[ -f "$out/failed" ] && { echo "failed: $(tr '\n' ' ' < "$out/failed")" >&2; exit 1; }
exit 0
