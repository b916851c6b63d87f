"""The table of the 200-epoch CPU runs, from their saved copies and the machines they ran on.

    python benchmarks/cpu_200ep_table.py [SAVED_DIR [RUN ...]]
    # default benchmarks/results/cpu-200ep and every run saved there, by name;
    # `cpu_200ep.sh table` passes its runs in their order

For each run (a folder of SAVED_DIR with a ``train.log``): epochs done, top-1 at the
last evaluated epoch and the best, many / medium / few, and the training time. Then,
for each recipe (a run's name without its ``-s<seed>``), the mean and standard deviation
over its finished seeds of the last epoch's top-1, many, medium and few. The runs
cross sessions and machines, so time comes from the epochs' own seconds (``train.log``),
and each epoch is put on the machine that ``SAVED_DIR/machines.log`` names for the
session it ran in (the last entry at or before the epoch's time; ``cpu_200ep.sh start``
appends one per session; the table names it by the part before its first ";").

An epoch's seconds include whatever else that session did: foreground work, a
``pause`` (SIGSTOP), and for an epoch cut by a session's end, the hours until the next
session continued it. So the table gives two figures: the idle-machine time (each
machine's epochs times its median epoch, summed: the figure to quote) and the raw sum
of the epochs' seconds.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from datetime import datetime
from pathlib import Path

EPOCH = re.compile(r"^(\S+ \S+) epoch (\d+)/(\d+) .* ([\d.]+)s \(data wait")
PAPER = ("cifar100-lt-r100: paper BCL 51.9 (53.9 on the leaderboard); ProCo 52.8. "
         "cifar10-lt-r100 (c10- runs, on the JPEG copy): paper BCL 84.3 on the original pixels")


def _time(text: str) -> datetime:
    """A naive local time: train.log's own, or machines.log's ISO time with its offset
    converted to this machine's zone (where both logs were written)."""
    when = datetime.fromisoformat(text.strip())
    return when.astimezone().replace(tzinfo=None) if when.tzinfo else when


def machines(saved: Path) -> list[tuple[datetime, str]]:
    """(since, machine) entries of machines.log: ``ISO-TIME<TAB>description`` lines."""
    path = saved / "machines.log"
    if not path.is_file():
        return []
    rows = [line.split("\t", 1) for line in path.read_text().splitlines() if "\t" in line]
    return sorted((_time(t), m.strip()) for t, m in rows)


def epochs(log: Path) -> dict[int, tuple[datetime, float]]:
    """Epoch -> (end time, seconds) from a train.log; a repeated epoch (redone after a
    stop inside it) keeps its last, complete, line."""
    out = {}
    for line in log.read_text().splitlines():
        m = EPOCH.match(line)
        if m:
            out[int(m.group(2))] = (_time(m.group(1)), float(m.group(4)))
    return out


def result(run: Path) -> tuple[dict | None, dict | None]:
    """(last, best) evaluation: summary.json's when finished, else metrics.jsonl's."""
    summary = run / "summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        if s.get("finished"):
            return s["last"], s["best"]
    path = run / "metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] \
        if path.is_file() else []
    rows = [r for r in rows if r.get("top1") is not None]
    if not rows:
        return None, None
    return rows[-1], max(rows, key=lambda r: r["top1"])


def recipe_of(name: str) -> str:
    """A run's recipe: its name without the seed (``bcl-workers-s1`` -> ``bcl-workers``)."""
    return re.sub(r"-s\d+$", "", name)


def seed_table(finished: dict[str, dict]) -> list[str]:
    """Mean +- sd over the seeds of each recipe of the ``finished`` runs' last epochs."""
    groups: dict[str, list[dict]] = {}
    for name, last in finished.items():
        groups.setdefault(recipe_of(name), []).append(last)
    lines = ["| recipe | finished seeds | top-1 at the last epoch, each | mean +- sd | many | "
             "medium | few |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for recipe, rows in groups.items():
        each = ", ".join(f"{r['top1']:.2f}" for r in rows)
        stats = " | ".join(_mean_sd([r[key] for r in rows])
                           for key in ("top1", "many", "medium", "few"))
        lines.append(f"| {recipe} | {len(rows)} | {each} | {stats} |")
    return lines


def _mean_sd(values: list[float]) -> str:
    """``mean +- sd`` (the sample standard deviation; the mean alone for one value)."""
    sd = f" +- {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2f}{sd}"


def main() -> None:
    saved = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/cpu-200ep")
    known = machines(saved)
    print("| run | epochs | top-1 (epoch) | best top-1 (epoch) | many | medium | few | "
          "idle-machine time | epoch seconds summed | per machine: epochs, median s / epoch |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    names = sys.argv[2:] or sorted(p.name for p in saved.iterdir() if p.is_dir())
    finished: dict[str, dict] = {}
    for method in names:
        run = saved / method
        if not (run / "train.log").is_file():
            continue
        done = epochs(run / "train.log")
        last, best = result(run)
        per: dict[str, list[float]] = {}
        for end, seconds in done.values():
            where = [m for since, m in known if since <= end]
            name = where[-1].split(";")[0] if where else "machine not recorded"
            per.setdefault(name, []).append(seconds)
        split = "; ".join(f"{name}: {len(s)}, {statistics.median(s):.1f} s"
                          for name, s in per.items())
        idle = sum(len(s) * statistics.median(s) for s in per.values()) / 3600
        hours = sum(s for _, s in done.values()) / 3600

        def cell(r: dict | None, key: str) -> str:
            return "-" if r is None else f"{r[key]:.2f}"

        top = "-" if last is None else f"{last['top1']:.2f} ({last['epoch']})"
        top_best = "-" if best is None else f"{best['top1']:.2f} ({best['epoch']})"
        print(f"| {method} | {max(done, default=0)} | {top} | {top_best} | {cell(last, 'many')}"
              f" | {cell(last, 'medium')} | {cell(last, 'few')} | {idle:.1f} h | {hours:.1f} h"
              f" | {split} |")
        totals = re.findall(r"epoch \d+/(\d+)", (run / "train.log").read_text())
        if last is not None and totals and last["epoch"] == int(totals[-1]):  # the newest
            finished[method] = last
    if finished:
        print("\n" + "\n".join(seed_table(finished)))
    print(f"\n{PAPER}")


if __name__ == "__main__":
    main()
