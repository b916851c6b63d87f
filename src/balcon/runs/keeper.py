"""What keeps a run while the epoch loop trains: checkpoints, metrics, summary, stopping.

:class:`RunKeeper` is the loop's :class:`~balcon.engine.loop.Keeper`: after each step it
asks :class:`~balcon.runs.preempt.StepControl` whether a signal asked to stop or a clock
checkpoint is due; after each epoch it writes TensorBoard's scalars, ``best.pt`` (a new
best), the ``metrics.jsonl`` line and ``last.pt``, in that order (a resume never skips
a ``best.pt``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from balcon import __version__
from balcon.engine.distributed import barrier, broadcast_object
from balcon.engine.loop import EpochMeter, Keeper, steps_per_epoch
from balcon.engine.prepare import EpochProgress, Trainer
from balcon.errors import Preempted
from balcon.runs.checkpoint import save_checkpoint, write_text_atomic
from balcon.runs.files import BEST, LAST, SUMMARY, data_folder, record_precision
from balcon.runs.preempt import StepControl
from balcon.runs.records import append_record, read_records, summarize
from balcon.runs.tensorboard import EpochBoard

__all__ = ["RunKeeper"]


class RunKeeper(Keeper):
    """The run directory ``run_dir`` of the trainer ``t`` (every rank has one; rank 0
    writes). A resumed run's evaluations so far are read from ``metrics.jsonl``."""

    def __init__(self, t: Trainer, run_dir: Path, data_dir: str | Path | None,
                 control: StepControl) -> None:
        self.t, self.run_dir, self.control = t, run_dir, control
        self.records: list[dict[str, Any]] = broadcast_object(
            read_records(run_dir, t.start_epoch) if t.ctx.is_main else [])
        self.summary = summarize(self.records, t.splits.selection_split) \
            if self.records else {}
        #: what every checkpoint holds besides the training state
        self.base_state = {
            "config": t.cfg.to_dict(), "class_names": t.splits.train.class_names,
            "class_counts": t.counts,
            "data_dir": data_folder(data_dir),
            "balcon_version": __version__, "selection_split": t.splits.selection_split,
            "precision": t.precision, "precision_reason": t.precision_reason,
        }
        if t.start_epoch == 0 and t.progress is None and t.ctx.is_main:
            record_precision(run_dir, t.precision, t.precision_reason)
        self.board = EpochBoard(run_dir, t.cfg.train.tensorboard and t.ctx.is_main,
                                t.start_epoch)

    @property
    def best_top1(self) -> float:
        """Best selection-split top-1 so far (-inf before the first evaluation)."""
        return max((r["top1"] for r in self.records), default=-math.inf)

    def stopped(self, where: str, note: str = "") -> Preempted:
        """The error a run stopped by a signal ends with: where, and how to continue."""
        return Preempted(f"preempted {where} ({self.control.signal_name}{note}); continue "
                         f"with balcon train --resume {self.run_dir}")

    def step_done(self, epoch: int, meter: EpochMeter) -> None:
        """Checkpoint when a signal or the clock asks; stop on a signal."""
        if not self.control.checks_at(meter.step):
            return
        stop, due = self.control.poll()
        if stop or due:
            self.save_last(epoch, meter.progress())
        if stop:
            raise self.stopped(f"at epoch {epoch + 1} step {meter.step}")

    def evaluating(self, epoch: int, stats: dict[str, Any]) -> None:
        """Stop on a signal, the epoch's stats in ``last.pt`` (a resume evaluates)."""
        if self.control.poll()[0]:
            self.save_last(epoch, EpochProgress(stats=stats))
            raise self.stopped(f"at epoch {epoch + 1} step {steps_per_epoch(self.t)}",
                               ", before its evaluation")

    def save_last(self, epoch: int, progress: EpochProgress) -> None:
        """``last.pt`` inside epoch ``epoch`` (0-based); every rank calls it."""
        state = self.t.state(epoch, progress)  # gathers every rank's sums
        if self.t.ctx.is_main:
            save_checkpoint(self.run_dir / LAST, {**self.base_state, **state})
        barrier()  # no rank leaves (and gets torchrun to stop the others) before it is written
        self.control.checkpointed()

    def epoch_done(self, epoch: int, stats: dict[str, Any],
                   record: dict[str, Any] | None) -> None:
        """TensorBoard, ``best.pt``, the metrics line, ``last.pt``; the summary so far."""
        self.board.epoch(epoch, stats, record)  # before last.pt: a resume purges it
        best_before = self.best_top1
        if record is not None:
            self.records.append(record)
        if self.t.ctx.is_main:
            state = {**self.base_state, **self.t.state(epoch)}
            if record is not None:
                if record["top1"] > best_before:
                    save_checkpoint(self.run_dir / BEST, state)
                append_record(self.run_dir, record)
            save_checkpoint(self.run_dir / LAST, state)
        self.control.checkpointed()
        if record is not None and epoch < self.t.cfg.train.epochs:
            self.write_summary(summarize(self.records, self.t.splits.selection_split))

    def write_summary(self, summary: dict[str, Any]) -> None:
        """``summary.json``, with the precision and the unreadable images skipped."""
        summary.update(precision=self.t.precision, precision_reason=self.t.precision_reason)
        if self.t.splits.skipped:
            summary["skipped_images"] = {k: len(v) for k, v in self.t.splits.skipped.items()}
        self.summary = summary
        if self.t.ctx.is_main:
            write_text_atomic(self.run_dir / SUMMARY, json.dumps(summary, indent=2))

    def close(self) -> None:
        """Close TensorBoard's event file."""
        self.board.close()
