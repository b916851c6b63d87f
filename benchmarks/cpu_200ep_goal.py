"""Issue 19's goal, checked on the saved 200-epoch CPU runs: each criterion and its verdict.

    python benchmarks/cpu_200ep_goal.py [SAVED_DIR]   # default benchmarks/results/cpu-200ep
    # `cpu_200ep.sh goal` runs it; exit status 0 when every criterion holds, else 1

The goal names ``SAVED_DIR/la`` and ``SAVED_DIR/bcl``: both ``metrics.jsonl`` reach epoch
200; each ``config.yaml`` is ``cifar100-lt-r100`` with seed 0, 200 epochs, float32
(``train.precision: off``) and its own method; each ``train.log`` says 10847 training
images; BCL's top-1 at epoch 200 (the last epoch, not the best) is at least 51.0 and
above LA's. Reads the saved files with the standard library only (no torch, no PyYAML:
``config.yaml`` is balcon's own two-level dump), so any ``python3`` runs it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

EPOCHS, PRESET, SEED, TRAIN_IMAGES, BCL_AT_LEAST = 200, "cifar100-lt-r100", 0, 10847, 51.0


def last_top1(run: Path) -> float | None:
    """The top-1 of the run's epoch-200 record, or None when it has none yet."""
    path = run / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    records = [json.loads(line) for line in lines if line.strip()]
    return next((r["top1"] for r in records if r.get("epoch") == EPOCHS), None)


def read_config(path: Path) -> dict[str, str]:
    """``config.yaml``'s scalars as text, by ``section.key`` (top-level ones by key)."""
    values, section = {}, ""
    for line in path.read_text().splitlines() if path.is_file() else []:
        key, _, value = line.partition(":")
        if not line.startswith(" "):
            section = key
        value = value.strip().strip("'\"")
        if value:
            values[f"{section}.{key.strip()}" if line.startswith(" ") else key] = value
    return values


def run_checks(run: Path, method: str) -> list[tuple[str, bool]]:
    """(criterion, holds) for one run directory trained with ``method``."""
    cfg, log = read_config(run / "config.yaml"), run / "train.log"
    top1 = last_top1(run)
    return [
        (f"{run.name}: metrics.jsonl reaches epoch {EPOCHS}"
         + (f" (top-1 {top1:.2f})" if top1 is not None else ""), top1 is not None),
        (f"{run.name}: config is {PRESET}, seed {SEED}, {EPOCHS} epochs, float32, {method}",
         cfg.get("name") == PRESET and cfg.get("train.seed") == str(SEED)
         and cfg.get("train.epochs") == str(EPOCHS) and cfg.get("train.precision") == "off"
         and cfg.get("loss.method") == method),
        (f"{run.name}: train.log says {TRAIN_IMAGES} train images",
         log.is_file() and f"{TRAIN_IMAGES} train /" in log.read_text()),
    ]


def goal_checks(saved: Path) -> list[tuple[str, bool]]:
    """Every criterion of the goal, in order."""
    checks = run_checks(saved / "la", "la") + run_checks(saved / "bcl", "bcl")
    la, bcl = last_top1(saved / "la"), last_top1(saved / "bcl")
    done = la is not None and bcl is not None
    compared = f" ({bcl:.2f} against {la:.2f})" if done else " (not both at epoch 200)"
    checks.append((f"bcl: top-1 at epoch {EPOCHS} >= {BCL_AT_LEAST}{compared}",
                   done and bcl >= BCL_AT_LEAST))
    checks.append((f"bcl: top-1 at epoch {EPOCHS} above la's{compared}", done and bcl > la))
    return checks


def main() -> int:
    saved = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/cpu-200ep")
    checks = goal_checks(saved)
    for text, holds in checks:
        print(f"{'PASS' if holds else 'FAIL'}  {text}")
    met = all(holds for _, holds in checks)
    print("goal met" if met else "goal not met")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
