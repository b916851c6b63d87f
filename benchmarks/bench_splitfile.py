"""Benchmark reading a split file: what ``load_split_file`` adds over reading the lines.

What it measures: seconds to load a ``relative/path label`` split file of ``--lines``
lines (default 100,000, in 1,000 class folders; iNaturalist 2018's train split has
437,513) with ``balcon.data.load_split_file``, which parses every line, checks every
label and that every listed file exists, and names classes after their folders.
Baseline, in the same run: reading the file and splitting each line into path and
label, nothing else. Both are the median of ``--repeats`` runs after one warm-up, with
the files in the page cache (a first, cold read from a network disk is slower).

The listed files are empty files written to a temporary folder (or ``--dir``, kept).

Command line (from the repository root)::

    python benchmarks/bench_splitfile.py [--lines 100000] [--classes 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model  # benchmarks/machine.py, beside this script

try:
    from balcon.data import load_split_file
except ImportError:  # running from a source tree without PYTHONPATH=src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from balcon.data import load_split_file


def write_split(root: Path, lines: int, classes: int) -> Path:
    """``lines`` empty files in ``classes`` folders under ``root``, and their split file."""
    rows = []
    for i in range(lines):
        label = i % classes
        rel = f"train/c{label:05d}/img_{i:07d}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
        rows.append(f"{rel} {label}")
    split = root / "train.txt"
    split.write_text("\n".join(rows) + "\n")
    return split


def read_lines_only(split: Path) -> int:
    """The baseline: read the file, split each line into path and label."""
    pairs = [line.rsplit(maxsplit=1) for line in split.read_text().splitlines() if line]
    return len(pairs)


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(args: argparse.Namespace, root: Path) -> None:
    split = write_split(root, args.lines, args.classes)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"date: {now}\ncpu: {cpu_model()}\n{args.lines:,} lines, {args.classes:,} class "
          f"folders, median of {args.repeats} after a warm-up\n")
    baseline = median_seconds(lambda: read_lines_only(split), args.repeats)
    loaded = median_seconds(lambda: load_split_file(root, split.name), args.repeats)
    per = 100_000 / args.lines
    print("| step | s | s per 100k lines |\n| --- | ---: | ---: |")
    print(f"| read and split the lines (baseline) | {baseline:.3f} | {baseline * per:.3f} |")
    print(f"| load_split_file (parse, check labels and files, name classes) | {loaded:.3f} "
          f"| {loaded * per:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="write the files here, keep them")
    args = parser.parse_args()
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        run(args, args.dir)
        return
    with tempfile.TemporaryDirectory(prefix="bench_splitfile_") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
