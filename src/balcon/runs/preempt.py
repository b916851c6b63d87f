"""Stopping cleanly: preemption signals and checkpoints by the clock, agreed by every rank.

Clusters preempt a job with SIGTERM (SLURM: ``--signal``), SIGUSR1, or the user with
Ctrl-C (SIGINT). While a run trains, :class:`StepControl` turns each of these into a
request: the current step finishes, the run writes a checkpoint of exactly that point
and stops with :class:`Preempted` (the command exits with status 75, EX_TEMPFAIL: run
it again). Outside the training loop (reading the data, the final report) nothing is
half-written, so a signal stops the run at once with :class:`Preempted` (status 75),
its last checkpoint intact; under torchrun that holds when every process gets the
signal (torchrun and SLURM send it to all), while a signal to one process alone outside
the loop leaves the others to torchrun's teardown. A second Ctrl-C stops at once.
``train.checkpoint_minutes`` asks for a mid-epoch ``last.pt`` by the clock the same
way. In a multi-process run the requests are agreed every ``AGREE_EVERY`` steps and
at each epoch's end (one small all-reduce, which waits for the device's queued work, so
not at every step), so every rank stops, or checkpoints, at the same step.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

import torch
import torch.distributed as dist

from balcon.engine.distributed import DistContext
from balcon.errors import STOP_SIGNALS, Preempted

__all__ = ["AGREE_EVERY", "StepControl"]

#: Steps between the ranks' agreements within an epoch (a multi-process run).
AGREE_EVERY = 8


class StepControl:
    """Signal handlers and the checkpoint clock of one run, checked at step boundaries.

    Use as a context manager around the training loop (handlers are installed on entry,
    in the main thread only, and restored on exit). ``poll()`` after each step returns
    ``(stop, checkpoint)``, both agreed over all ranks.

    Args:
        ctx: the process's place in the run.
        checkpoint_minutes: minutes between mid-epoch checkpoints (None: epoch ends only).
    """

    def __init__(self, ctx: DistContext, checkpoint_minutes: float | None,
                 resume_hint: str = "") -> None:
        self.ctx = ctx
        self.interval = None if checkpoint_minutes is None else 60.0 * checkpoint_minutes
        self.signal: int | None = None
        self.last_checkpoint = time.monotonic()
        self.resume_hint = resume_hint
        self.deferring = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StepControl:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signal = signum
        if not self.deferring:
            raise Preempted(f"preempted ({self.signal_name}) outside a training step; "
                            f"{self.resume_hint}")

    @contextlib.contextmanager
    def steps(self) -> Iterator[StepControl]:
        """Within: a signal is a request that :meth:`poll` reports at the next step
        boundary (outside, it raises :class:`Preempted` at once)."""
        self.deferring = True
        try:
            yield self
        finally:
            self.deferring = False

    def checks_at(self, step: int) -> bool:
        """Whether the boundary after ``step`` steps of an epoch is polled: each one in a
        single process, every ``AGREE_EVERY``-th where the ranks must agree."""
        return not self.ctx.enabled or step % AGREE_EVERY == 0

    def poll(self) -> tuple[bool, bool]:
        """``(stop, checkpoint)`` at this step boundary, the same on every rank."""
        due = self.interval is not None and \
            time.monotonic() - self.last_checkpoint >= self.interval
        flags = [self.signal is not None, due and self.ctx.is_main]
        if self.ctx.enabled and dist.is_initialized():
            agreed = torch.tensor([float(f) for f in flags])
            if dist.get_backend() == "nccl":
                agreed = agreed.cuda()
            dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
            flags = [bool(v) for v in agreed.tolist()]
        return flags[0], flags[1]

    def checkpointed(self) -> None:
        """Restart the checkpoint clock (a checkpoint was just written)."""
        self.last_checkpoint = time.monotonic()

    @property
    def signal_name(self) -> str:
        """The signal that asked to stop, e.g. ``SIGTERM`` (or ``a peer's signal``)."""
        return signal.Signals(self.signal).name if self.signal is not None else "a peer's signal"
