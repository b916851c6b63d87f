"""The table of issue 19's short CIFAR-100-LT BCL runs (``bcl_short_runs.sh``).

    python benchmarks/short_runs_table.py [RUNS_DIR]   # default runs/: short-w5/, short/

Reads ``RUNS_DIR/short-w5`` (the recipe's 5-epoch warm-up) and ``RUNS_DIR/short`` (a
1-epoch warm-up): balcon run directories and reference ``.jsonl`` files. Prints per run the
loss at epochs 10 and 20, top-1 at 10 and 20, and many / medium / few at 20.
"""

import json
import re
import sys
from pathlib import Path

R = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")


def balcon(d: Path) -> tuple[dict, dict]:
    """A balcon run's evaluations and per-epoch losses."""
    recs = {r["epoch"]: r for r in map(json.loads, (d/"metrics.jsonl").read_text().splitlines())}
    loss = {}
    for line in (d/"train.log").read_text().splitlines():
        m = re.search(r" epoch (\d+)/\d+ lr \S+ loss (\S+)", line)
        if m:
            loss[int(m.group(1))] = float(m.group(2))
    return recs, loss


def ref(f: Path) -> tuple[dict, dict]:
    """A reference run's evaluations and per-epoch losses."""
    rows = [json.loads(x) for x in f.read_text().splitlines()[1:]]
    return {r["epoch"]: r for r in rows if "top1" in r}, {r["epoch"]: r["loss"] for r in rows}


rows = [("balcon (device)", "w5", "balcon-0"), ("balcon (device)", "w5", "balcon-1"),
        ("balcon (workers: PIL views)", "w5", "workers-0"),
        ("reference", "w5", "ref-0"), ("reference", "w5", "ref-1"),
        ("reference, per-batch warm-up (`--warmup-per-step`)", "w5", "ref-ps-0"),
        ("balcon (device)", "w1", "balcon-0"), ("reference", "w1", "ref-0")]
print("| trainer | warm-up | seed | loss at epoch 10 / 20 | top-1 at epoch 10 | "
      "top-1 at epoch 20 | many | medium | few |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for name, w, arm in rows:
    root = R / ("short-w5" if w == "w5" else "short")
    try:
        recs, loss = ref(root/f"{arm}.jsonl") if arm.startswith("ref") else balcon(root/arm)
    except FileNotFoundError:
        continue
    last = recs.get(20)
    warm = "5 epochs" if w == "w5" else "1 epoch"
    cells = ["-" if r is None else f"{r[k]:.2f}" for r, k in (
        (recs.get(10), "top1"), (last, "top1"), (last, "many"), (last, "medium"), (last, "few"))]
    end = f"{loss[20]:.3f}" if 20 in loss else "-"
    print(f"| {name} | {warm} | {arm[-1]} | {loss.get(10, float('nan')):.3f} / {end} | "
          + " | ".join(cells) + " |")
