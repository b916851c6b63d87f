"""How far apart two runs of one recipe land, class by class (issue 19, point 6).

Two runs of the same recipe that differ only in their random draws (another seed, or the
same seed on another machine, where float rounding parts the runs within a few steps)
give, at one epoch, per-class test accuracies a_k and b_k. This prints, per pair, the
top-1 of each, the mean and standard deviation of a_k - b_k overall and within the
many / medium / few-shot groups, and the spread of one run's top-1 that those per-class
differences imply: sd(a_k - b_k) / sqrt(C) / sqrt(2), treating the classes as independent
(a rough guide: classes share one backbone, so it may understate the spread).

    python benchmarks/run_spread.py NAME=RUN_A,RUN_B [NAME=RUN_A,RUN_B ...] [--epoch 200]

A RUN is a balcon run directory (its ``metrics.jsonl``); the shot groups come from the
class counts in run A's ``last.pt``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import torch  # noqa: E402

from balcon.data.longtail import shot_group_of  # noqa: E402


def per_class(run: Path, epoch: int) -> tuple[float, list[float]]:
    """Top-1 and per-class accuracy of ``run`` at ``epoch``."""
    for line in reversed((run / "metrics.jsonl").read_text().splitlines()):
        rec = json.loads(line)
        if rec.get("epoch") == epoch and "per_class" in rec:
            return rec["top1"], rec["per_class"]
    raise SystemExit(f"{run}: no evaluation with per-class accuracy at epoch {epoch}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("pairs", nargs="+", help="NAME=RUN_A,RUN_B")
    p.add_argument("--epoch", type=int, default=200)
    args = p.parse_args()
    print("| pair | top-1 A | top-1 B | A - B | per-class A - B: mean +- sd | many | medium | "
          "few | implied sd of one run's top-1 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for spec in args.pairs:
        name, runs = spec.split("=", 1)
        (ta, a), (tb, b) = (per_class(Path(r), args.epoch) for r in runs.split(","))
        counts = torch.load(Path(runs.split(",")[0]) / "last.pt", map_location="cpu",
                            weights_only=True)["class_counts"]
        groups = [shot_group_of(n) for n in counts]
        diff = [x - y for x, y in zip(a, b, strict=True)]
        by = {g: statistics.mean(d for d, gg in zip(diff, groups, strict=True) if gg == g)
              for g in ("many", "medium", "few")}
        sd = statistics.stdev(diff)
        print(f"| {name} | {ta:.2f} | {tb:.2f} | {ta - tb:+.2f} | "
              f"{statistics.mean(diff):+.2f} +- {sd:.2f} | {by['many']:+.2f} | "
              f"{by['medium']:+.2f} | {by['few']:+.2f} | {sd / math.sqrt(len(a) * 2):.2f} |")


if __name__ == "__main__":
    main()
