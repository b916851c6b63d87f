"""Tables of the training-health evidence: balcon runs beside reference-trainer runs.

Reads balcon run directories (``train.log`` for the per-epoch loss and training
accuracy, ``metrics.jsonl`` for the test metrics) and ``reference_trainer.py`` output
files (JSON lines), and prints markdown: one table of per-epoch mean training loss
(and training accuracy) with a column per run, and one of test top-1 / many / medium /
few at the last evaluated epoch, with mean +- std (sample std) over the runs of each group.

    python benchmarks/health_table.py GROUP=PATH[,PATH...] [GROUP=PATH ...] [--acc]

A PATH is a balcon run directory or a reference ``.jsonl`` file; e.g.
``balcon-after=runs/la-s0,runs/la-s1 reference=ref/la-s0.jsonl,ref/la-s1.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

EPOCH_LINE = re.compile(r" epoch (\d+)/(\d+) lr (\S+) loss (\S+) .*?train-acc (\S+)")
GROUPS = ("top1", "many", "medium", "few")


def read_run(path: Path, at: int | None = None
             ) -> tuple[dict[int, tuple[float, float]], dict | None]:
    """Per-epoch (loss, train accuracy) and the last evaluation (or that of epoch ``at``)."""
    if path.is_dir():  # a balcon run directory
        epochs = {}
        for line in (path / "train.log").read_text().splitlines():
            m = EPOCH_LINE.search(line)
            if m:
                epochs[int(m.group(1))] = (float(m.group(4)), float(m.group(5)))
        records = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
    else:  # a reference_trainer.py output file
        rows = [json.loads(x) for x in path.read_text().splitlines()[1:]]
        epochs = {r["epoch"]: (r["loss"], r["train_acc"]) for r in rows}
        records = [r for r in rows if "top1" in r]
    if at is not None:
        records = [r for r in records if r["epoch"] == at]
    return epochs, (records[-1] if records else None)


def fmt(values: list[float | None]) -> str:
    """``mean +- std`` (one value alone as is); '-' when there is none."""
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.mean(vals):.2f} +- {statistics.stdev(vals):.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("groups", nargs="+", help="NAME=PATH[,PATH...]")
    p.add_argument("--acc", action="store_true", help="also the per-epoch training accuracy")
    p.add_argument("--at", type=int, help="the evaluation of this epoch (default: the last)")
    p.add_argument("--no-epochs", action="store_true", help="the results table alone")
    args = p.parse_args()
    runs: list[tuple[str, str, dict, dict | None]] = []
    for item in args.groups:
        name, _, paths = item.partition("=")
        for path in paths.split(","):
            epochs, last = read_run(Path(path), args.at)
            runs.append((name, Path(path).name.removesuffix(".jsonl"), epochs, last))
    top = 0 if args.no_epochs else max(max(e, default=0) for _, _, e, _ in runs)
    if top:
        print("| epoch | " + " | ".join(f"{g} {r}" for g, r, _, _ in runs) + " |")
        print("| ---: |" + " ---: |" * len(runs))
    for epoch in range(1, top + 1):
        cells = []
        for _, _, epochs, _ in runs:
            if epoch not in epochs:
                cells.append("")
                continue
            loss, acc = epochs[epoch]
            cells.append(f"{loss:.3f}" + (f" / {acc:.1f}" if args.acc else ""))
        print(f"| {epoch} | " + " | ".join(cells) + " |")
    if top:
        print()
    print("| group | runs | epoch | " + " | ".join(GROUPS) + " |")
    print("| --- | ---: | ---: |" + " ---: |" * len(GROUPS))
    for name in dict.fromkeys(g for g, _, _, _ in runs):
        lasts = [last for g, _, _, last in runs if g == name and last is not None]
        if not lasts:
            continue
        epochs = sorted({int(r["epoch"]) for r in lasts})
        cells = [fmt([r.get(k) for r in lasts]) for k in GROUPS]
        print(f"| {name} | {len(lasts)} | {','.join(map(str, epochs))} | " + " | ".join(cells)
              + " |")


if __name__ == "__main__":
    main()
