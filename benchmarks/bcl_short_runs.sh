#!/usr/bin/env bash
# Issue 19, point 6: short CIFAR-100-LT r100 BCL runs, balcon beside the reference trainer.
#
#   bash benchmarks/bcl_short_runs.sh DATA_DIR OUT_ROOT [ARM ...]
#
# DATA_DIR holds both layouts that ../shared/tools/cifar_lossless_to_batches.py DATA_DIR
# --folders writes: cifar-100-python/ (balcon) and cifar100-lossless/{train,test}/ (the
# reference's ImageFolder). Both select the same 10,847 images (checked: equal pixel sums).
#
# The schedule is the recipe's start with its end compressed: EPOCHS (default 20) epochs,
# the recipe's warm-up of WARMUP (default 5) epochs, lr x0.1 at 0-based epochs 0.8 and 0.9
# of EPOCHS (160 and 180 of 200), batch 256, lr 0.15, alpha 2, beta 0.6, temperature 0.1.
# balcon ramps the warm-up lr every batch, the reference once an epoch as published (so
# with WARMUP=1 the reference has no warm-up at all). bf16 autocast on a CPU with native
# bf16, else float32 (PRECISION=off|bf16 overrides), the same for every arm.
#
# Each arm is pinned to one core (taskset) with one thread: arm i on core i % 2 (CORES="0
# 1"), each core taking its arms in turn, so the machine carries two such runs throughout.
# An ARM is TRAINER-SEED with TRAINER one of
#   balcon   balcon's pipeline (views made from the resident uint8 set, data.pipeline=device)
#   workers  balcon with per-image PIL views in a DataLoader (data.pipeline=workers)
#   ref      benchmarks/reference_trainer.py (per-image PIL views, the published code's way)
# Default arms: balcon-0 ref-0 balcon-1 ref-1 workers-0: about 2 h on a 2-vCPU Xeon in bf16
# (an epoch takes balcon ~75 s and the reference ~110 s on one core).
set -euo pipefail
DATA=${1:?DATA_DIR}
OUT=${2:?OUT_ROOT}
shift 2
ARMS=("$@")
[ ${#ARMS[@]} -gt 0 ] || ARMS=(balcon-0 ref-0 balcon-1 ref-1 workers-0)
EPOCHS=${EPOCHS:-20}
WARMUP=${WARMUP:-5}
M1=$((EPOCHS * 8 / 10))
M2=$((EPOCHS * 9 / 10))
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python}
if [ -z "${PRECISION:-}" ]; then
    if grep -q avx512_bf16 /proc/cpuinfo; then PRECISION=bf16; else PRECISION=off; fi
fi
mkdir -p "$OUT"
"$PY" -c "import sys; sys.path.insert(0, '$HERE'); import machine; print(machine.describe_cpu())" > "$OUT/machine.txt"
lscpu | grep -E "Model name|CPU family|^Model:" >> "$OUT/machine.txt"

run_arm() {  # run_arm CORE ARM
    local core=$1 trainer=${2%-*} seed=${2##*-}
    local log="$OUT/$2.log"
    local pin=(nice -n 19 taskset -c "$core" env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1)
    case $trainer in
    balcon|workers)
        local pipe=device; [ "$trainer" = workers ] && pipe=workers
        "${pin[@]}" "$PY" -m balcon train --preset cifar100-lt-r100 --data-dir "$DATA" \
            --out "$OUT/$2" --epochs "$EPOCHS" --set optim.warmup_epochs="$WARMUP" \
            --set "optim.milestones=[$M1,$M2]" --set train.precision="$PRECISION" \
            --set train.eval_every=5 --set train.seed="$seed" --set data.pipeline="$pipe" \
            --set data.num_workers=0 > "$log" 2>&1 ;;
    ref)
        local bf=(); [ "$PRECISION" = bf16 ] && bf=(--bf16)
        "${pin[@]}" "$PY" "$HERE/reference_trainer.py" "$DATA/cifar100-lossless" \
            "$OUT/$2.jsonl" --method bcl --epochs "$EPOCHS" --warmup "$WARMUP" \
            --milestones "$M1" "$M2" --eval-every 5 --seed "$seed" "${bf[@]}" > "$log" 2>&1 ;;
    *) echo "unknown arm $2 (balcon-S, workers-S or ref-S)" >&2; return 2 ;;
    esac
}

# Arm i runs on core CORES[i % n]; each core runs its arms one after another.
read -r -a CORE_LIST <<< "${CORES:-0 1}"
n=${#CORE_LIST[@]}
for c in $(seq 0 $((n - 1))); do
    (
        for i in $(seq "$c" "$n" $((${#ARMS[@]} - 1))); do
            echo "$(date -u +%H:%M:%S) start ${ARMS[$i]} on core ${CORE_LIST[$c]}"
            run_arm "${CORE_LIST[$c]}" "${ARMS[$i]}" || echo "${ARMS[$i]} failed: see $OUT/${ARMS[$i]}.log"
            echo "$(date -u +%H:%M:%S) end ${ARMS[$i]}"
        done
    ) &
done
wait
echo "$(date -u +%H:%M:%S) done"
