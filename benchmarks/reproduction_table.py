"""The table of ``reproduce_cifar.sh``: one row per run found in OUT, beside the paper.

A finished run gives its summary (last and best epoch on the test split); a run cut by
its deadline gives the last line of its metrics.jsonl (its "epochs" column says how far
it got). Wall time is what the script measured around the run (OUT/METHOD.seconds).

    python benchmarks/reproduction_table.py OUT [PRESET]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

#: ResNet-32, 200 epochs: BCL's top-1 in the BCL paper (Table 1), per preset.
PAPER = {"cifar10-lt-r100": {"bcl": 84.3}, "cifar100-lt-r100": {"bcl": 51.9}}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def row(out: Path, method: str, paper: dict[str, float]) -> str | None:
    run = out / method
    seconds = out / f"{method}.seconds"
    wall = f"{float(seconds.read_text()):.0f} s" if seconds.is_file() else "-"
    summary_path, metrics_path = run / "summary.json", run / "metrics.jsonl"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if summary.get("finished"):
        last, best = summary["last"], summary["best"]
        epochs = f"{summary['epochs_run']}"
    elif metrics_path.is_file() and metrics_path.read_text().strip():
        last = json.loads(metrics_path.read_text().strip().splitlines()[-1])
        best = max((json.loads(line) for line in metrics_path.read_text().splitlines()
                    if line.strip()), key=lambda r: r["top1"])
        epochs = f"{last['epoch']} (cut)"
    else:
        if not seconds.is_file():
            return None
        return f"| {method} | {paper.get(method, '-')} | - | - | - | - | - | 0 | {wall} |"
    return (f"| {method} | {paper.get(method, '-')} | {_fmt(last['top1'])} | "
            f"{_fmt(best['top1'])} (epoch {best['epoch']}) | {_fmt(last['many'])} | "
            f"{_fmt(last['medium'])} | {_fmt(last['few'])} | {epochs} | {wall} |")


def main() -> None:
    out = Path(sys.argv[1])
    paper = PAPER.get(sys.argv[2] if len(sys.argv) > 2 else "cifar10-lt-r100", {})
    rows = [r for m in ("bcl", "la", "ce") if (r := row(out, m, paper)) is not None]
    print("| method | paper top-1 | last top-1 | best top-1 | many | medium | few | epochs "
          "| wall time |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
