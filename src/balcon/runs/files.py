"""A run directory: its file names, its lock, its log, and opening it (new or to resume).

``config.yaml`` and ``run.json`` are written first, before any data is read, so every
run directory can be resumed; ``train.log`` mirrors the console; ``metrics.jsonl``
holds one JSON line per evaluation (on the model-selection split); ``last.pt`` (every
epoch, and mid-epoch by the clock and on a preemption signal) and ``best.pt`` are
checkpoints; ``summary.json`` holds the last and best epoch and, once a run ends, the
final report on the report split.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from balcon import __version__
from balcon.config import Config, config_to_yaml
from balcon.errors import LOG, BalconError
from balcon.runs.checkpoint import (
    is_special,
    load_checkpoint,
    write_failure,
    write_text_atomic,
)

__all__ = [
    "BEST",
    "CONFIG",
    "FILE_ONLY",
    "LAST",
    "LOCK",
    "METRICS",
    "RUN_FILES",
    "RUN_INFO",
    "SEEDS",
    "SUMMARY",
    "TRAIN_LOG",
    "RunLock",
    "RunLog",
    "check_new_run_dir",
    "check_output",
    "data_folder",
    "open_new_run",
    "open_resume",
    "read_json",
    "record_precision",
]

#: ``extra=`` of a log record for ``train.log`` alone: a line the command also prints
#: as its own error (``balcon: error: ...``) is not shown twice.
FILE_ONLY = {"file_only": True}

#: The files of a run directory (and of a multi-seed folder, ``SEEDS``).
CONFIG, RUN_INFO, TRAIN_LOG, METRICS = "config.yaml", "run.json", "train.log", "metrics.jsonl"
LAST, BEST, SUMMARY, SEEDS = "last.pt", "best.pt", "summary.json", "seeds.json"
#: Every file balcon keeps in a run directory or a --seeds folder: no command's output
#: replaces one.
RUN_FILES = (CONFIG, RUN_INFO, TRAIN_LOG, METRICS, LAST, BEST, SUMMARY, SEEDS)
#: The lock file of a run directory: whoever holds its flock writes the run.
LOCK = ".lock"


def check_output(path: str | Path, flag: str, writes: tuple[str, ...],
                 inputs: Sequence[str | Path] = (), name: str | None = None) -> Path:
    """``path``, where a command will write its result (an existing folder: ``name``
    inside it), unless that would destroy something: an existing file that is one of the
    command's ``inputs``, a run's own file (:data:`RUN_FILES`), or a file of another kind
    than those the command writes (``writes``: name endings such as ``.csv``) is refused
    in one line, before any work; so is a path inside a file. Missing folders on the way
    are made when it is written, and a path ending in ``/`` names a folder. A link is
    followed: its target is what is checked; a device, a pipe or standard output is
    returned as given, a socket refused."""
    out = Path(path)
    if name is not None and (out.is_dir() or str(path).endswith(("/", os.sep))):
        out = out / name  # an existing folder, or one to make ("new/")
    if is_special(out):
        return out
    if out.is_socket():
        raise BalconError(f"{flag} {out} is a socket; give a file name or choose another {flag}")
    if out.is_symlink():
        out = out.resolve()
    if out.is_dir():
        raise BalconError(f"{flag} {out} is a folder; give a file name or choose another {flag}")
    folder = out.parent
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():  # a file, or a broken link
        raise BalconError(f"{flag} {out}: {folder} is not a folder; choose another {flag}")
    if not out.is_file():
        return out
    if any(Path(i).exists() and out.samefile(i) for i in inputs):
        culprit = "is an input of this command"
    elif out.name in RUN_FILES:
        culprit = f"is a run's {out.name}"
    elif not out.name.endswith(writes):
        culprit = f"exists and is not a {' or '.join(writes)} file"
    else:
        return out
    raise BalconError(f"{flag} {out} {culprit}; writing there would replace it: choose "
                      f"another {flag}")


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
                file_handler: logging.Handler = _LogFile(run_dir / TRAIN_LOG)
            except OSError as err:
                raise write_failure(run_dir / TRAIN_LOG, err) from None
            file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s",
                                                        "%Y-%m-%d %H:%M:%S"))
            console = logging.StreamHandler(sys.stdout)
            console.addFilter(lambda record: not getattr(record, "file_only", False))
            self.handlers = [file_handler, console]
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


def data_folder(data_dir: str | Path | None) -> str | None:
    """The absolute path a run records for its data folder (None: the preset's own)."""
    return None if data_dir is None else str(Path(data_dir).resolve())


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


#: The files of a run that has not trained yet (or stopped, on an error, before its
#: first checkpoint): a new run may take such a directory over.
NOT_YET_TRAINED = {CONFIG, RUN_INFO, TRAIN_LOG}


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


def check_new_run_dir(run_dir: Path, has_continue: bool = True) -> set[str]:
    """Refuse a file, or a directory holding anything but a run that never trained.

    A run that never trained left at most ``config.yaml``, ``run.json`` and a
    ``train.log`` ending in "stopped: ..." (an error before its first checkpoint, say a
    corrupt image or a wrong --data-dir); a new run may take its directory over. Returns
    what is there to remove. ``has_continue``: whether the refusal may suggest running
    the same command with ``--continue`` (``balcon demo`` has no such flag).
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise BalconError(f"--out {run_dir} is a file; give a directory")
    names = _contents(run_dir)
    log = run_dir / TRAIN_LOG
    if names and not (names <= NOT_YET_TRAINED and (not log.exists() or _stopped(log))):
        again = " (or the same command with --continue)" if has_continue else ""
        raise BalconError(f"run directory {run_dir} is not empty; choose another --out, or "
                          f"continue it with balcon train --resume {run_dir}{again}")
    return names


def record_precision(run_dir: Path, precision: str, reason: str) -> None:
    """Add the precision a new run trains with, and why, to its ``run.json``."""
    info = read_json(run_dir / RUN_INFO)
    info.update(precision=precision, precision_reason=reason)
    write_text_atomic(run_dir / RUN_INFO, json.dumps(info, indent=2))


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
        write_text_atomic(run_dir / CONFIG, config_to_yaml(cfg))  # the config, resolved
        info = {"data_dir": data_folder(data_dir), "balcon_version": __version__}
        write_text_atomic(run_dir / RUN_INFO, json.dumps(info, indent=2))
    except BaseException:
        lock.release()
        raise
    return lock


def open_resume(run_dir: Path) -> tuple[RunLock, dict[str, Any]]:
    """Rank 0 of ``--resume``: the lock of ``run_dir`` and what to resume from: its
    ``last.pt``, or, when the run wrote only its config, ``{"config", "data_dir"}``."""
    if not (run_dir / CONFIG).is_file() and not (run_dir / LAST).is_file():
        raise BalconError(f"{run_dir} holds no run (no config.yaml, no last.pt); give --resume "
                          "a run directory balcon wrote")
    lock = RunLock(run_dir)
    try:
        for tmp in run_dir.glob(".*.tmp"):  # writes a kill cut short (we are the only writer)
            tmp.unlink(missing_ok=True)
        if (run_dir / LAST).is_file():
            return lock, load_checkpoint(
                run_dir / LAST, fix=f"it is truncated or corrupt: delete it to start "
                f"{run_dir} again from the beginning with --resume, or restore it from a backup")
        return lock, _config_only(run_dir)
    except BaseException:
        lock.release()
        raise


def _config_only(run_dir: Path) -> dict[str, Any]:
    """A run that wrote its config and nothing else: its config and data folder."""
    import yaml

    try:
        raw = yaml.safe_load((run_dir / CONFIG).read_text())
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise BalconError(f"{run_dir / CONFIG} is unreadable ({type(err).__name__}); "
                          "fix it or start a new run") from None
    if not isinstance(raw, dict):
        raise BalconError(f"{run_dir / CONFIG} is not a balcon config; start a new run")
    return {"config": raw, "data_dir": read_json(run_dir / RUN_INFO).get("data_dir")}


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (``summary.json``, ``run.json``); {} when there is
    none, or it is unreadable."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}
