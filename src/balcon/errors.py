"""The exception types balcon raises for problems the user can fix, and its logger."""

from __future__ import annotations

import logging
import re
import signal

__all__ = [
    "EX_TEMPFAIL",
    "LOG",
    "STOP_SIGNALS",
    "BalconError",
    "Preempted",
    "RankError",
    "load_failure",
    "one_line",
    "short_reason",
]

#: balcon's logger: a run's ``train.log`` and console (``balcon.runs.files.RunLog``).
LOG = logging.getLogger("balcon")


class BalconError(Exception):
    """A problem with the user's input (files, paths, config values, checkpoints).

    Its message is one line naming the culprit and the fix; the command line prints
    it without a traceback and exits with status 2. In a multi-process run every
    process meets the same problem, and only rank 0 prints it.
    """


class RankError(BalconError):
    """A problem that one process of a multi-process run met alone (e.g. a corrupt
    image in its share of the data); the process that met it prints it."""


def one_line(err: BaseException) -> str:
    """The user-facing line of an error, also when a DataLoader worker wrapped it."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else type(err).__name__
    prefix = "balcon.errors.BalconError: "
    return line[len(prefix):] if line.startswith(prefix) else line


def short_reason(err: BaseException, limit: int = 100) -> str:
    """``Type: first sentence`` of a library's error, for the parentheses of a one-line
    message: terminal colour codes dropped, cut at a word near ``limit`` characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
    first = text.splitlines()[0].strip() if text else ""
    first = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]
    if len(first) > limit:
        first = first[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def load_failure(err: BaseException) -> str:
    """Why ``torch.load`` could not read a file, in words (its KeyError on a text file
    says nothing)."""
    if isinstance(err, KeyError | EOFError | UnicodeDecodeError):
        return "not a file torch.save wrote"
    return short_reason(err)


#: The exit status of a preempted run: "temporary failure, run it again" (sysexits.h).
EX_TEMPFAIL = 75
#: The signals that stop a run (at a step boundary with a checkpoint, or at once before
#: training): a cluster's preemption (SIGTERM, SIGUSR1) and Ctrl-C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Preempted(BalconError):
    """A run stopped on a signal (SIGTERM, SIGINT, SIGUSR1) with its checkpoints intact;
    ``balcon train --resume`` (or the same command with ``--continue``) continues it."""
