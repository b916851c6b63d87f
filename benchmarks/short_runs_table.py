"""The table of issue 19's short CIFAR-100-LT BCL runs (``bcl_short_runs.sh``).

    python benchmarks/short_runs_table.py [RUNS_DIR]   # default runs/: short-w5/, short/

Reads ``RUNS_DIR/short-w5`` (the recipe's 5-epoch warm-up) and ``RUNS_DIR/short`` (a
1-epoch warm-up): balcon run directories and reference ``.jsonl`` files. Prints per run the
loss at epochs 10 and 20, top-1 at 10 and 20, and many / medium / few at 20.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from health_table import read_run  # noqa: E402

R = Path(sys.argv[1] if len(sys.argv) > 1 else "runs")


def run_at(path: Path) -> tuple[dict, dict]:
    """A run's evaluations at epochs 10 and 20 and its per-epoch losses."""
    epochs, at10 = read_run(path, at=10)
    _, at20 = read_run(path, at=20)
    return {10: at10, 20: at20}, {e: loss for e, (loss, _) in epochs.items()}


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
        recs, loss = run_at(root / f"{arm}.jsonl" if arm.startswith("ref") else root / arm)
    except FileNotFoundError:
        continue
    last = recs.get(20)
    warm = "5 epochs" if w == "w5" else "1 epoch"
    cells = ["-" if r is None else f"{r[k]:.2f}" for r, k in (
        (recs.get(10), "top1"), (last, "top1"), (last, "many"), (last, "medium"), (last, "few"))]
    end = f"{loss[20]:.3f}" if 20 in loss else "-"
    print(f"| {name} | {warm} | {arm[-1]} | {loss.get(10, float('nan')):.3f} / {end} | "
          + " | ".join(cells) + " |")
