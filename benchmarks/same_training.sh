#!/usr/bin/env bash
# Whether this tree trains exactly as an earlier commit did: for each of the six
# methods, a 4-epoch demo (float32) with the code of BEFORE and with this tree, their
# last.pt compared tensor by tensor (benchmarks/same_checkpoint.py: bit for bit, else
# the largest absolute difference of each tensor that differs).
#
#   bash benchmarks/same_training.sh [BEFORE]     # BEFORE: a git ref, default 926deec (0.6.0)
#
# Then a run the earlier code started (bcl, stopped after 2 of its 4 epochs) is
# continued with this tree (--resume) and compared with the earlier code's straight run;
# this tree also evaluates and reports the earlier code's run directory.
#
# Runs go to build/same-training/<ref>/<method>; the "before" code is a git worktree
# at build/same-training/src-<ref>, run with PYTHONPATH pointing at its src/ (the
# venv's balcon is this tree's editable install). Same machine, same process count.
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:-926deec}
py=${PYTHON:-.venv/bin/python}
out=build/same-training
methods="bcl ce la supcon bcl-no-averaging bcl-no-complement"
ref=$(git rev-parse --short "$before")
mkdir -p "$out"
[ -d "$out/src-$ref" ] || git worktree add --detach "$out/src-$ref" "$ref" >/dev/null
train() {  # train SRC DIR METHOD
  rm -rf "$2"
  PYTHONPATH="$1" "$py" -m balcon train --preset digits-lt-demo --epochs 4 \
    --set "loss.method=$3" --set train.precision=off --out "$2" >/dev/null
}
status=0
for m in $methods; do
  [ -f "$out/$ref/$m/last.pt" ] || train "$out/src-$ref/src" "$out/$ref/$m" "$m"
  train src "$out/now/$m" "$m"
  printf '%-18s ' "$m"
  "$py" benchmarks/same_checkpoint.py "$out/$ref/$m/last.pt" "$out/now/$m/last.pt" || status=1
done
old="$out/$ref-stopped/bcl"
rm -rf "$old" "$out/report.html"
PYTHONPATH="$out/src-$ref/src" "$py" -c "
import sys
from balcon.config import apply_overrides
from balcon.engine import fit
from balcon.presets import load_preset
from balcon.config import compress_schedule
cfg = compress_schedule(load_preset('digits-lt-demo'), 4)
fit(apply_overrides(cfg, ['loss.method=bcl', 'train.precision=off']), None, sys.argv[1],
    stop_after=2)" "$old" >/dev/null
"$py" -m balcon train --resume "$old" >/dev/null
printf '%-18s ' "bcl, continued"
"$py" benchmarks/same_checkpoint.py "$out/$ref/bcl/last.pt" "$old/last.pt" || status=1
"$py" -m balcon eval --checkpoint "$out/$ref/la/best.pt" --out "$out/eval.json" | tail -2
"$py" -m balcon report "$out/$ref/la" "$out/$ref/bcl" --out "$out/report.html" | tail -1
echo "lscpu: $(lscpu | sed -n 's/^Model name: *//p'); before: $ref; now: $(git rev-parse --short HEAD)$(git diff --quiet || echo +changes)"
exit $status
