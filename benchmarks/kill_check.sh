#!/usr/bin/env bash
# kill -9 from outside, as the long-runs issue asks: the digits preset for 20 epochs,
# SIGKILL at 3, 6, 5, 8, 4, 7, 5, 9, 6 and 5 s after each (re)start (the first lands
# before any checkpoint), `balcon train --resume` after each kill, then last.pt's
# weights compared bit for bit with an uninterrupted run's.
#
#   bash benchmarks/kill_check.sh OUT_ROOT
set -u
root=$1
rm -rf "$root" && mkdir -p "$root"
balcon=(python3 -m balcon)  # run directly, so that $! is the trainer itself
start=$(date +%s)
"${balcon[@]}" train --preset digits-lt-demo --epochs 20 --out "$root/full" > "$root/full.out" 2>&1
echo "uninterrupted: exit $? after $(( $(date +%s) - start )) s"
first=1
for delay in 3 6 5 8 4 7 5 9 6 5; do
  if [ $first = 1 ]; then
    "${balcon[@]}" train --preset digits-lt-demo --epochs 20 --out "$root/cut" >> "$root/cut.out" 2>&1 &
    first=0
  else
    "${balcon[@]}" train --resume "$root/cut" >> "$root/cut.out" 2>&1 &
  fi
  pid=$!
  sleep "$delay"
  if kill -KILL $pid 2>/dev/null; then
    wait $pid 2>/dev/null
    state=$(python3 -c "
import sys, torch
from pathlib import Path
p = Path(sys.argv[1]) / 'last.pt'
if not p.exists(): print('no last.pt yet')
else:
    s = torch.load(p, weights_only=True); print(f'last.pt at epoch {s[\"epoch\"]} step {s.get(\"step\", 0)}')
" "$root/cut")
    echo "killed after $delay s: $state"
  else
    wait $pid; echo "ended by itself (exit $?) before the kill at $delay s"
  fi
done
"${balcon[@]}" train --resume "$root/cut" >> "$root/cut.out" 2>&1
echo "final resume: exit $?"
python3 -c "
import sys, torch
a = torch.load(sys.argv[1] + '/full/last.pt', weights_only=True)['model']
b = torch.load(sys.argv[1] + '/cut/last.pt', weights_only=True)['model']
same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
print('last.pt[\"model\"] bit-identical to the uninterrupted run:', same)
sys.exit(0 if same else 1)
" "$root"
