"""The exception types balcon raises for problems the user can fix."""

from __future__ import annotations

__all__ = ["BalconError", "RankError", "one_line"]


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
