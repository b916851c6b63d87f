#!/usr/bin/env bash
# Issue 19, point 6: short CIFAR-100-LT r100 BCL runs, balcon beside the reference trainer.
#
#   bash benchmarks/bcl_short_runs.sh DATA_DIR OUT_ROOT [ARM ...]
#
# DATA_DIR holds both layouts that ../shared/tools/cifar_lossless_to_batches.py DATA_DIR
# --folders writes: cifar-100-python/ (balcon) and cifar100-lossless/{train,test}/ (the
# reference's ImageFolder). Both select the same 10,847 images (checked: equal pixel sums).
#
# The schedule is the recipe compressed to EPOCHS (default 20): warm-up 1 epoch, lr x0.1 at
# 0-based epochs 0.8 and 0.9 of EPOCHS (160 and 180 of 200), batch 256, lr 0.15, BCL's
# alpha 2, beta 0.6, temperature 0.1; bf16 autocast on a CPU with native bf16, else float32
# (PRECISION=off|bf16 overrides), the same for every arm. Arms run two at a time, each
# pinned to one core (taskset) with one thread, so both members of a pair see the same
# machine. An ARM is TRAINER-SEED with TRAINER one of
#   balcon   balcon's pipeline (views made from the resident uint8 set, data.pipeline=device)
#   workers  balcon with per-image PIL views in a DataLoader (data.pipeline=workers)
#   ref      benchmarks/reference_trainer.py (per-image PIL views, the published code's way)
# Default arms: balcon-0 ref-0 balcon-1 ref-1 workers-0 workers-1.
# Summarise with: python benchmarks/health_table.py-style reading of OUT_ROOT (see BENCHMARKS.md).
set -euo pipefail
DATA=${1:?DATA_DIR}
OUT=${2:?OUT_ROOT}
shift 2
ARMS=("$@")
[ ${#ARMS[@]} -gt 0 ] || ARMS=(balcon-0 ref-0 balcon-1 ref-1 workers-0 workers-1)
EPOCHS=${EPOCHS:-20}
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
            --out "$OUT/$2" --epochs "$EPOCHS" --set optim.warmup_epochs=1 \
            --set "optim.milestones=[$M1,$M2]" --set train.precision="$PRECISION" \
            --set train.eval_every=5 --set train.seed="$seed" --set data.pipeline="$pipe" \
            --set data.num_workers=0 > "$log" 2>&1 ;;
    ref)
        local bf=(); [ "$PRECISION" = bf16 ] && bf=(--bf16)
        "${pin[@]}" "$PY" "$HERE/reference_trainer.py" "$DATA/cifar100-lossless" \
            "$OUT/$2.jsonl" --method bcl --epochs "$EPOCHS" --warmup 1 \
            --milestones "$M1" "$M2" --eval-every 5 --seed "$seed" "${bf[@]}" > "$log" 2>&1 ;;
    *) echo "unknown arm $2 (balcon-S, workers-S or ref-S)" >&2; return 2 ;;
    esac
}

i=0
while [ $i -lt ${#ARMS[@]} ]; do
    echo "$(date -u +%H:%M:%S) start ${ARMS[$i]} ${ARMS[$((i + 1))]:-}"
    run_arm 0 "${ARMS[$i]}" &
    a=$!
    if [ $((i + 1)) -lt ${#ARMS[@]} ]; then run_arm 1 "${ARMS[$((i + 1))]}" & b=$!; wait $b || true; fi
    wait $a || true
    i=$((i + 2))
done
echo "$(date -u +%H:%M:%S) done"
