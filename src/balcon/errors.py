"""The one exception type balcon raises for problems the user can fix."""

from __future__ import annotations

__all__ = ["BalconError"]


class BalconError(Exception):
    """A problem with the user's input (files, paths, config values, checkpoints).

    Its message is one line naming the culprit and the fix; the command line prints
    it without a traceback and exits with status 2.
    """
