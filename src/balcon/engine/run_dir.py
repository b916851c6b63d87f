"""The files of a run directory other than checkpoints: log, metrics lines, summary.

``train.log`` mirrors the console; ``metrics.jsonl`` holds one JSON line per
evaluation (on the model-selection split); ``summary.json`` the last and best epoch
and, once a run ends, the final report on the report split.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from balcon import __version__
from balcon.config import Config, config_to_yaml
from balcon.engine.checkpoint import write_failure, write_text_atomic
from balcon.errors import BalconError, one_line

__all__ = [
    "LOCK",
    "LOG",
    "RunLock",
    "RunLog",
    "check_new_run_dir",
    "open_new_run",
    "open_resume",
    "read_records",
    "record_precision",
    "result_row",
    "summarize",
]

LOG = logging.getLogger("balcon")
#: The keys of a result that summaries and tables carry.
RESULT_KEYS = ("epoch", "top1", "top5", "top5_k", "many", "medium", "few")


class _LogFile(logging.FileHandler):
    """``train.log``: a write that fails (a full disk) stops the run in one line, where
    logging would print a traceback and go on."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        err = sys.exc_info()[1]
        if isinstance(err, OSError):
            raise write_failure(Path(self.baseFilename), err) from None
        super().handleError(record)


class RunLog:
    """``train.log`` plus the console, for the duration of a run (rank 0 only)."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.handlers: list[logging.Handler] = []
        if enabled:
            try:
                file_handler: logging.Handler = _LogFile(run_dir / "train.log")
            except OSError as err:
                raise write_failure(run_dir / "train.log", err) from None
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


#: The lock file of a run directory: whoever holds its flock writes the run.
LOCK = ".lock"


class RunLock:
    """One writer per run: an exclusive ``flock`` on ``RUN_DIR/.lock`` for the run's life.

    The file names the holder (PID and host); the OS drops the lock when the holder
    dies, so a lock left by a dead process never blocks (the file stays, unlocked).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK
        self.file = open(self.path, "a+")  # noqa: SIM115 - held open for the run's life
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise BalconError(
                f"run directory {run_dir} is in use by {holder}; wait for it to end or stop "
                "it (one process writes a run)"
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        self.file.flush()

    def release(self) -> None:
        """Unlock (also what the OS does when the process dies)."""
        if not self.file.closed:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()


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
        write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


#: The files of a run that has not trained yet (or stopped, on an error, before its
#: first checkpoint): a new run may take such a directory over.
NOT_YET_TRAINED = {"config.yaml", "run.json", "train.log"}


def _stopped(log: Path) -> bool:
    """Whether ``train.log`` ends with the line a run writes when an error or Ctrl-C stops it."""
    try:
        lines = log.read_text().strip().splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    return bool(lines) and " stopped: " in lines[-1]


def _contents(run_dir: Path) -> set[str]:
    """The names in ``run_dir`` but its lock file and the temporaries of cut writes."""
    if not run_dir.is_dir():
        return set()
    return {p.name for p in run_dir.iterdir()
            if p.name != LOCK and not (p.name.startswith(".") and p.name.endswith(".tmp"))}


def check_new_run_dir(run_dir: Path) -> set[str]:
    """Refuse a file, or a directory holding anything but a run that never trained.

    A run that never trained left at most ``config.yaml``, ``run.json`` and a
    ``train.log`` ending in "stopped: ..." (an error before its first checkpoint, say a
    corrupt image or a wrong --data-dir); a new run may take its directory over. Returns
    what is there to remove.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise BalconError(f"--out {run_dir} is a file; give a directory")
    names = _contents(run_dir)
    log = run_dir / "train.log"
    if names and not (names <= NOT_YET_TRAINED and (not log.exists() or _stopped(log))):
        raise BalconError(
            f"run directory {run_dir} is not empty; choose another --out, or continue it "
            f"with balcon train --resume {run_dir} (or the same command with --continue)"
        )
    return names


def _write_run_files(cfg: Config, data_dir: str | Path | None, run_dir: Path) -> None:
    """``config.yaml`` (resolved) and ``run.json`` (the data folder), atomically."""
    write_text_atomic(run_dir / "config.yaml", config_to_yaml(cfg))
    info = {"data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
            "balcon_version": __version__}
    write_text_atomic(run_dir / "run.json", json.dumps(info, indent=2))


def record_precision(run_dir: Path, precision: str, reason: str) -> None:
    """Add the precision a new run trains with, and why, to its ``run.json`` (when it has
    one: :func:`~balcon.engine.prepare.prepare` also serves benchmarks without one)."""
    path = run_dir / "run.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    info.update(precision=precision, precision_reason=reason)
    write_text_atomic(path, json.dumps(info, indent=2))


def open_new_run(cfg: Config, data_dir: str | Path | None, run_dir: Path) -> RunLock:
    """Rank 0, first thing of a new run: create ``run_dir`` (see :func:`check_new_run_dir`),
    take its lock and write its config and data folder, so that from here on the
    directory can be resumed whatever happens. Returns the lock (held until released)."""
    check_new_run_dir(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BalconError(f"cannot create run directory {run_dir} ({err.strerror}); "
                          "choose another --out") from None
    lock = RunLock(run_dir)  # refuses a run still being set up there
    try:
        for name in check_new_run_dir(run_dir):  # under the lock: a run that never trained
            (run_dir / name).unlink()
        _write_run_files(cfg, data_dir, run_dir)
    except BaseException:
        lock.release()
        raise
    return lock


def _remove_stale_temporaries(run_dir: Path) -> None:
    """Temporary files of writes a kill cut short (the lock holder is the only writer)."""
    for tmp in run_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def open_resume(run_dir: Path) -> tuple[RunLock, dict[str, Any]]:
    """Rank 0 of ``--resume``: the lock of ``run_dir`` and what to resume from: its
    ``last.pt``, or, when the run wrote only its config, ``{"config", "data_dir"}``."""
    from balcon.engine.checkpoint import load_checkpoint

    if not (run_dir / "config.yaml").is_file() and not (run_dir / "last.pt").is_file():
        raise BalconError(f"{run_dir} holds no run (no config.yaml, no last.pt); give --resume "
                          "a run directory balcon wrote")
    lock = RunLock(run_dir)
    try:
        _remove_stale_temporaries(run_dir)
        if (run_dir / "last.pt").is_file():
            try:
                return lock, load_checkpoint(run_dir / "last.pt")
            except BalconError as err:
                raise BalconError(
                    f"{run_dir / 'last.pt'} is truncated or corrupt ({one_line(err)}); delete "
                    f"it to start {run_dir} again from the beginning with --resume, or "
                    "restore it from a backup"
                ) from None
        return lock, _config_only(run_dir)
    except BaseException:
        lock.release()
        raise


def _config_only(run_dir: Path) -> dict[str, Any]:
    """A run that wrote its config and nothing else: its config and data folder."""
    import yaml

    try:
        raw = yaml.safe_load((run_dir / "config.yaml").read_text())
        info = json.loads((run_dir / "run.json").read_text()) \
            if (run_dir / "run.json").is_file() else {}
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise BalconError(f"{run_dir / 'config.yaml'} is unreadable ({type(err).__name__}); "
                          "fix it or start a new run") from None
    if not isinstance(raw, dict) or not isinstance(info, dict):
        raise BalconError(f"{run_dir / 'config.yaml'} is not a balcon config; start a new run")
    return {"config": raw, "data_dir": info.get("data_dir")}
