"""The table of benchmarks/finetune_table.sh: one row per run directory under OUT.

    python benchmarks/finetune_table.py build/finetune-table

Columns: the setting, epochs, test top-1 and many / medium / few of the last epoch
(``summary.json``), mean seconds per training epoch (``metrics.jsonl``'s
``train_seconds``), and the wall time of the whole ``balcon train`` command (``NAME.wall``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(run: Path) -> str:
    summary = json.loads((run / "summary.json").read_text())
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    last = summary["last"]
    epoch_s = sum(r["train_seconds"] for r in records) / len(records)
    wall = float((run.parent / f"{run.name}.wall").read_text())
    cells = [last.get(k) for k in ("top1", "many", "medium", "few")]
    acc = " | ".join("-" if c is None else f"{c:.2f}" for c in cells)
    return f"| {run.name} | {summary['epochs_run']} | {acc} | {epoch_s:.1f} | {wall:.0f} |"


def main() -> None:
    out = Path(sys.argv[1])
    print("| setting | epochs | test top-1 | many | medium | few | s / epoch | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in sorted(p for p in out.iterdir() if (p / "summary.json").is_file()
                      and (out / f"{p.name}.wall").is_file()):  # finished runs
        print(row(run))


if __name__ == "__main__":
    main()
