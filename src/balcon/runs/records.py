"""A run's evaluations: ``metrics.jsonl`` (one JSON line per evaluation on the selection
split), the one reader of it, and the last / best summary drawn from it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from balcon.data.longtail import SHOT_GROUPS
from balcon.runs.checkpoint import write_failure, write_text_atomic
from balcon.runs.files import METRICS

__all__ = ["RESULT_KEYS", "append_record", "read_records", "result_row", "summarize"]

#: The keys of a result that summaries and tables carry.
RESULT_KEYS = ("epoch", "top1", "top5", "top5_k", *SHOT_GROUPS)


def read_records(run_dir: str | Path, up_to_epoch: int | None = None) -> list[dict[str, Any]]:
    """The evaluation records of ``run_dir``'s ``metrics.jsonl`` ([] when there is none; a
    line cut short by a kill, or a blank one, is skipped). With ``up_to_epoch`` (a run
    resuming after that epoch) later records are dropped from the file too."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = []
    for line in lines:
        try:
            kept.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    if up_to_epoch is None:
        return kept
    kept = [r for r in kept if isinstance(r, dict) and r.get("epoch", up_to_epoch + 1)
            <= up_to_epoch]
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def append_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Add ``record`` to ``metrics.jsonl``, on disk before anything written after it."""
    path = run_dir / METRICS
    try:
        with path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise write_failure(path, err) from None


def result_row(metrics: dict[str, Any], split: str) -> dict[str, Any]:
    """The summary keys of an evaluation, tagged with the split it measured."""
    return {**{k: metrics.get(k) for k in RESULT_KEYS}, "split": split}


def summarize(records: list[dict[str, Any]], split: str) -> dict[str, Any]:
    """Last and best (top-1) evaluation of ``records``, all measured on ``split``."""
    last = records[-1]
    best = max(records, key=lambda r: r["top1"])
    return {"last": result_row(last, split), "best": result_row(best, split),
            "epochs_run": last["epoch"], "selection_split": split, "report_split": split}
