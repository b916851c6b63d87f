"""The files of a run directory other than checkpoints: log, metrics lines, summary.

``train.log`` mirrors the console; ``metrics.jsonl`` holds one JSON line per
evaluation (on the model-selection split); ``summary.json`` the last and best epoch
and, once a run ends, the final report on the report split.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from balcon.errors import BalconError

__all__ = ["LOG", "RunLog", "check_new_run_dir", "read_records", "result_row", "summarize"]

LOG = logging.getLogger("balcon")
#: The keys of a result that summaries and tables carry.
RESULT_KEYS = ("epoch", "top1", "top5", "top5_k", "many", "medium", "few")


class RunLog:
    """``train.log`` plus the console, for the duration of a run (rank 0 only)."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.handlers: list[logging.Handler] = []
        if enabled:
            file_handler = logging.FileHandler(run_dir / "train.log")
            file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s",
                                                        "%Y-%m-%d %H:%M:%S"))
            self.handlers = [file_handler, logging.StreamHandler(sys.stdout)]
        for h in self.handlers:
            LOG.addHandler(h)
        self.level, self.propagate = LOG.level, LOG.propagate
        LOG.setLevel(logging.INFO if enabled else logging.WARNING + 100)
        LOG.propagate = False

    def close(self) -> None:
        """Detach and close the handlers."""
        for h in self.handlers:
            LOG.removeHandler(h)
            h.close()
        LOG.setLevel(self.level)
        LOG.propagate = self.propagate


def result_row(metrics: dict[str, Any], split: str) -> dict[str, Any]:
    """The summary keys of an evaluation, tagged with the split it measured."""
    return {**{k: metrics.get(k) for k in RESULT_KEYS}, "split": split}


def summarize(records: list[dict[str, Any]], split: str) -> dict[str, Any]:
    """Last and best (top-1) evaluation of ``records``, all measured on ``split``."""
    last = records[-1]
    best = max(records, key=lambda r: r["top1"])
    return {"last": result_row(last, split), "best": result_row(best, split),
            "epochs_run": last["epoch"], "selection_split": split, "report_split": split}


def read_records(path: Path, up_to_epoch: int) -> list[dict[str, Any]]:
    """Evaluation records of ``metrics.jsonl`` up to an epoch (later ones are dropped)."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short when a run was killed
            continue
        if isinstance(record, dict) and record.get("epoch", up_to_epoch + 1) <= up_to_epoch:
            kept.append(record)
    if len(kept) != len(lines):
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return kept


#: What a run leaves when it stops before its first epoch ends: nothing worth keeping.
STOPPED_BEFORE_FIRST_EPOCH = {"config.yaml", "train.log"}


def _stopped(log: Path) -> bool:
    """Whether ``train.log`` ends with the line a run writes when an error or Ctrl-C stops it."""
    try:
        lines = log.read_text().strip().splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    return bool(lines) and " stopped: " in lines[-1]


def check_new_run_dir(run_dir: Path) -> None:
    """Create ``run_dir``, refusing a file or a directory that already holds a run.

    A directory holding only what a run leaves when an error or Ctrl-C stops it before
    its first checkpoint (``config.yaml``, and a ``train.log`` ending in "stopped: ...")
    is emptied and reused; a run still in its first epoch has no such line.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise BalconError(f"--out {run_dir} is a file; give a directory")
    leftovers = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
    if leftovers == STOPPED_BEFORE_FIRST_EPOCH and _stopped(run_dir / "train.log"):
        # a run that stopped before its first checkpoint (say, at a corrupt image): start over
        for name in leftovers:
            (run_dir / name).unlink()
    elif leftovers:
        raise BalconError(
            f"run directory {run_dir} is not empty; choose another --out, or continue it "
            f"with balcon train --resume {run_dir}"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BalconError(f"cannot create run directory {run_dir} ({err.strerror}); "
                          "choose another --out") from None
