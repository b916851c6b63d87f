"""A whole training run, in three phases: prepare, the epochs, the report.

:func:`fit` reads as its phases: :func:`~balcon.engine.prepare.prepare` (data, model,
optimiser, loaders, resume state), then per epoch ``_train_epoch``, ``_evaluate`` (when
due) and ``_save`` (checkpoints), then the report on the report split.

The run directory holds ``config.yaml`` and ``run.json`` (written first, before any data
is read, so every run directory can be resumed), ``train.log``, ``metrics.jsonl`` (one
JSON line per evaluation on the model-selection split), ``last.pt`` (every epoch, and
mid-epoch every ``train.checkpoint_minutes`` and on a preemption signal),
``best.pt`` (best selection top-1 so far) and ``summary.json`` (last and best, and
at the end the report on the test split). A run resumed from ``last.pt`` (at an epoch
end or mid-epoch) ends with the same weights as an uninterrupted one, bit for bit on the
CPU: the model is seeded, the shuffle and every sample's augmentation derive from
(seed, epoch, index), and the checkpoint holds the
optimizer, the gradient scaler and the RNG state.

Under ``torchrun`` the same function runs in every process: DDP wraps the model,
each rank takes ``batch_size / world_size`` samples of every global batch, a loss on
projections (BCL) sees the gathered global batch, evaluation is sharded and gathered, and only
rank 0 logs and writes. The global batch and every sample's views do not depend on
the number of processes, so a run can resume from an epoch end with another world
size (a mid-epoch checkpoint needs the count that wrote it).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from balcon.config import Config, run_config
from balcon.engine.checkpoint import save_checkpoint, write_failure, write_text_atomic
from balcon.engine.device import emulated_bf16_warning
from balcon.engine.distributed import (
    barrier,
    broadcast_buffers,
    gather,
    init_distributed,
    on_main,
)
from balcon.engine.preempt import Preempted, StepControl
from balcon.engine.prepare import Run, own_errors, prepare
from balcon.engine.run_dir import LOG, RunLock, RunLog, open_new_run, open_resume, summarize
from balcon.engine.run_report import evaluate_split, finished_summary, fmt
from balcon.engine.schedule import lr_at
from balcon.engine.steps import EpochMeter, Interrupted, train_one_epoch
from balcon.engine.tensorboard import EpochBoard, require_tensorboard
from balcon.errors import BalconError, one_line

__all__ = ["RunResult", "fit", "resume"]


@dataclass
class RunResult:
    """What a finished (or stopped) run leaves: its directory and its summary."""

    run_dir: Path
    summary: dict[str, Any]
    #: True when :func:`resume` found the run already at its configured end.
    already_finished: bool = False


def fit(
    cfg: Config,
    data_dir: str | Path | None,
    run_dir: str | Path,
    device: str | None = None,
    download: bool = False,
    stop_after: int | None = None,
    _resume_state: dict[str, Any] | None = None,
    _opened: bool = False,
) -> RunResult:
    """Train ``cfg`` on the data in ``data_dir``, writing the run directory ``run_dir``.

    Three phases: :func:`~balcon.engine.prepare.prepare` (data, model, optimiser,
    resume state), the epochs (train, evaluate when due, checkpoint), the report. A new
    run first takes the directory's lock and writes its config (rank 0). A preemption
    signal stops the run at the next step with a checkpoint and :class:`Preempted`.
    ``stop_after`` ends the run after that many epochs (as if interrupted); it
    continues with :func:`resume`. Returns the run directory and its summary.
    """
    run_dir = Path(run_dir)
    ctx, _ = init_distributed(device)
    held: list[RunLock] = []  # rank 0's lock of a new run (resume() holds its own)
    if cfg.train.tensorboard:
        on_main(require_tensorboard)  # before anything is written
    if not _opened:
        on_main(lambda: held.append(open_new_run(cfg, data_dir, run_dir)))
    hint = f"continue with balcon train --resume {run_dir}"
    try:
        with StepControl(ctx, cfg.train.checkpoint_minutes, hint) as control:
            run = prepare(cfg, data_dir, run_dir, device, download, _resume_state)
            return _train(run, stop_after, control)
    finally:
        for lock in held:
            lock.release()


def _train(run: Run, stop_after: int | None, control: StepControl) -> RunResult:
    """The epochs and the report of a prepared run, logged to its train.log; signals are
    handled at step boundaries during the epochs, at once elsewhere."""
    cfg, epochs = run.cfg, run.cfg.train.epochs
    last = min(epochs, stop_after) if stop_after is not None else epochs
    summary = summarize(run.records, run.splits.selection_split) if run.records else {}
    log = RunLog(run.run_dir, enabled=run.ctx.is_main)
    board = None
    try:
        _log_start(run)
        board = EpochBoard(run.run_dir, cfg.train.tensorboard and run.ctx.is_main,
                           run.start_epoch)
        with control.steps():
            for epoch in range(run.start_epoch, last):
                stats = _train_epoch(run, epoch, control)
                broadcast_buffers(run.model)  # evaluate and save rank 0's BatchNorm statistics
                record = _evaluate(run, epoch, stats, control)
                board.epoch(epoch + 1, stats, record)  # before last.pt: a resume purges it
                _save(run, epoch + 1, record)
                control.checkpointed()
                if record is not None and epoch + 1 < epochs:
                    summary = summarize(run.records, run.splits.selection_split)
                    _write_summary(run, summary)
            if control.poll()[0]:  # a signal during the last save: stop before the report
                raise Preempted(f"preempted after epoch {last} ({control.signal_name}); "
                                f"continue with balcon train --resume {run.run_dir}")
        if last == epochs and run.records:  # the last epoch is done (now, or before a resume)
            if run.start_epoch >= epochs:
                LOG.info("all %d epochs done; finishing the report", epochs)
            summary = finished_summary(run.model, cfg, run.precision, run.run_dir,
                                       run.splits, run.counts, run.device, run.ctx,
                                       run.records)
            _write_summary(run, summary)
    except BalconError as err:
        LOG.info("stopped: %s", one_line(err))
        raise
    except KeyboardInterrupt:
        LOG.info("stopped: interrupted")
        raise
    finally:
        if board is not None:
            board.close()
        log.close()
    return RunResult(run.run_dir, summary)


def _log_start(run: Run) -> None:
    """The log's first lines: what trains on what, or where a resumed run picks up."""
    cfg, splits, processes = run.cfg, run.splits, run.processes
    emulated = emulated_bf16_warning(run.precision, run.device)
    if run.start_epoch > 0:
        LOG.info("resuming %s after epoch %d%s; precision: %s (as the run started: %s)",
                 run.run_dir, run.start_epoch, f" with {processes}" if processes else "",
                 run.precision, run.precision_reason)
        if emulated:
            LOG.warning("warning: %s", emulated)
        return
    held_out = ", ".join(f"{len(splits.get(n))} {n}" for n in ("val", "test")
                         if getattr(splits, n) is not None)
    LOG.info("run %s: %s, %s, %d train%s images, %d classes, device %s%s",
             run.run_dir, cfg.name, cfg.loss.method, len(splits.train),
             f" / {held_out}" if held_out else "", splits.train.num_classes, run.device,
             f", {processes}" if processes else "")
    LOG.info("precision: %s (%s)", run.precision, run.precision_reason)
    if emulated:
        LOG.warning("warning: %s", emulated)
    if run.pretrained_note:
        LOG.info("encoder weights: %s", run.pretrained_note)
    for name, bad in splits.skipped.items():
        LOG.info("skipped %d unreadable %s images (data.on_bad_image=skip): %s", len(bad),
                 name, "; ".join(f"{path} ({reason})" for path, reason in bad))
    if splits.unused:
        LOG.info("not read: %s beside train/ (balcon reads train/, val/ or valid/ or "
                 "validation/, and test/)", ", ".join(f"{n}/" for n in splits.unused))
    LOG.info("training views: %s pipeline%s", run.pipeline,
             f" (the set on {run.device} as uint8)" if run.pipeline == "device" else
             " (per image, in DataLoader workers)")
    if splits.selection_split == "train":
        LOG.info("no val or test split: best.pt is chosen on, and the report "
                 "measures, the training images (no held-out accuracy)")
    else:
        LOG.info("model selection on %s, final report on %s", splits.selection_split,
                 splits.report_split)


def _train_epoch(run: Run, epoch: int, control: StepControl) -> dict[str, Any]:
    """Train epoch ``epoch`` (0-based, or its rest after a mid-epoch resume) with the
    per-batch lr; checkpoint mid-epoch when ``control`` asks; log and return its stats
    (with ``lr``, the epoch's last)."""
    cfg, epochs, steps = run.cfg, run.cfg.train.epochs, _steps_per_epoch(run)
    partial = run.partial if epoch == run.start_epoch else None
    lr = lr_at(cfg.optim, epoch, epochs, steps_per_epoch=steps)  # the epoch's last
    if partial is not None and "stats" in partial:  # only its evaluation was left
        return partial["stats"]
    start = partial["step"] if partial else 0
    run.sampler.set_epoch(epoch, skip=start * run.train_loader.batch_size)

    def after_step(meter: EpochMeter) -> bool:
        stop, due = control.poll()
        if stop or due:
            _save_mid_epoch(run, epoch, meter.state())
            control.checkpointed()
        return stop

    with own_errors(run.ctx):
        result = train_one_epoch(
            run.train_model, run.train_loader, run.objective, run.optimizer, run.scaler,
            run.device, run.precision, desc=f"epoch {epoch + 1}/{epochs}",
            channels_last=cfg.model.channels_last, ctx=run.ctx,
            lr_of_step=lambda step: lr_at(cfg.optim, epoch, epochs, step, steps),
            resume=partial, after_step=after_step,
        )
    if isinstance(result, EpochMeter):
        raise Preempted(f"preempted at epoch {epoch + 1} step {result.step} "
                        f"({control.signal_name}); continue with balcon train --resume "
                        f"{run.run_dir}")
    stats = {"lr": lr, **result}
    LOG.info("epoch %d/%d lr %.4g loss %.4f (cls %.4f, con %s) train-acc %.2f "
             "%.0f img/s %.1fs (data wait %.0f%%)", epoch + 1, epochs, stats["lr"],
             stats["loss"], stats["loss_cls"], fmt(stats["loss_con"], ".4f"),
             stats["train_acc"], stats["images_per_s"], stats["train_seconds"],
             100 * stats["data_wait_share"])
    if not math.isfinite(stats["loss"]):
        raise BalconError(
            f"training diverged at epoch {epoch + 1} (loss {stats['loss']}); lower "
            "optim.lr or use train.precision=off"
        )
    return stats


def _steps_per_epoch(run: Run) -> int:
    """Batches of a whole epoch for this rank (the loader may be mid-epoch)."""
    return math.ceil(run.sampler.num_samples / run.train_loader.batch_size)


def _evaluate(run: Run, epoch: int, stats: dict[str, Any],
              control: StepControl) -> dict[str, Any] | None:
    """After epoch ``epoch`` (0-based): the selection-split record when an evaluation is
    due. A stop request abandons it: the checkpoint then holds the epoch's stats, and a
    resume evaluates."""
    done = epoch + 1
    if done % run.cfg.train.eval_every and done != run.cfg.train.epochs:
        return None
    split = run.splits.selection_split
    try:
        with own_errors(run.ctx):
            metrics = evaluate_split(run.model, run.select_loader, run.counts, run.cfg,
                                     run.precision, run.device, run.ctx, split,
                                     stop=lambda: control.poll()[0])
    except Interrupted:
        _save_mid_epoch(run, epoch, {"stats": stats})
        raise Preempted(f"preempted at epoch {done} step {_steps_per_epoch(run)} "
                        f"({control.signal_name}, before its evaluation); continue with "
                        f"balcon train --resume {run.run_dir}") from None
    record = {"epoch": done, "split": split, **stats, **metrics}
    skipped = len(run.splits.skipped.get(split, []))
    if skipped:
        record["skipped_images"] = skipped
    if run.splits.skipped.get("train"):
        record["skipped_train_images"] = len(run.splits.skipped["train"])
    LOG.info("eval epoch %d on %s: top1 %.2f top%d %.2f many %s medium %s few %s%s",
             done, split, record["top1"], record["top5_k"], record["top5"],
             fmt(record["many"]), fmt(record["medium"]), fmt(record["few"]),
             f" ({skipped} unreadable images skipped)" if skipped else "")
    return record


def _state(run: Run, epoch: int) -> dict[str, Any]:
    """What every checkpoint holds: the run, the weights, optimiser, scaler and RNG."""
    return {**run.base_state, "epoch": epoch, "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(),
            "rng": torch.get_rng_state(), "world_size": run.ctx.world_size}


def _save_mid_epoch(run: Run, epoch: int, part: dict[str, Any]) -> None:
    """``last.pt`` inside epoch ``epoch`` (0-based): every rank's sums so far (gathered to
    rank 0) and its step, or, with ``stats``, the whole epoch's stats."""
    if "stats" in part:
        extra = {"epoch_stats": part["stats"]}
    else:
        sums = gather(part["sums"].to(run.device)[None]).cpu()
        extra = {"step": part["step"], "epoch_sums": sums,
                 "epoch_time": [part["waited"], part["elapsed"]]}
    if run.ctx.is_main:
        save_checkpoint(run.run_dir / "last.pt", {**_state(run, epoch), **extra})
    barrier()  # no rank leaves (and gets torchrun to stop the others) before it is written


def _save(run: Run, done: int, record: dict[str, Any] | None) -> None:
    """Rank 0: best.pt (a new best), the metrics line, then last.pt, in that order, so a
    resume never skips a best.pt."""
    best_before = run.best_top1
    if record is not None:
        run.records.append(record)
    if not run.ctx.is_main:
        return
    state = _state(run, done)
    if record is not None:
        if record["top1"] > best_before:
            save_checkpoint(run.run_dir / "best.pt", state)
        metrics = run.run_dir / "metrics.jsonl"
        try:
            with metrics.open("a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())  # on disk before the last.pt that counts on it
        except OSError as err:
            raise write_failure(metrics, err) from None
    save_checkpoint(run.run_dir / "last.pt", state)


def _write_summary(run: Run, summary: dict[str, Any]) -> None:
    summary.update(precision=run.precision, precision_reason=run.precision_reason)
    if run.splits.skipped:  # unreadable images skipped, per split, beside the accuracy
        summary["skipped_images"] = {k: len(v) for k, v in run.splits.skipped.items()}
    if run.ctx.is_main:
        write_text_atomic(run.run_dir / "summary.json", json.dumps(summary, indent=2))




def resume(
    run_dir: str | Path, data_dir: str | Path | None = None, device: str | None = None,
    stop_after: int | None = None, download: bool = False,
) -> RunResult:
    """Continue the run in ``run_dir`` to its configured end: from its ``last.pt`` (an
    epoch end or mid-epoch), or, when the run wrote only its config, from the start.

    Rank 0 takes the directory's lock, reads the checkpoint and shares it, so in a
    multi-node run only rank 0 needs the run directory. Any number of processes may
    resume from an epoch end; a mid-epoch checkpoint needs the count that wrote it.
    """
    run_dir = Path(run_dir)
    init_distributed(device)
    held: list[RunLock] = []

    def read() -> dict[str, Any]:
        lock, state = open_resume(run_dir)
        held.append(lock)
        return state

    try:
        state = on_main(read)
        cfg = run_config(state["config"], source=str(run_dir / "config.yaml"))
        data_dir = data_dir if data_dir is not None else state.get("data_dir")
        if "model" not in state:  # only the config: start from the beginning
            return fit(cfg, data_dir, run_dir, device=device, download=download,
                       stop_after=stop_after, _opened=True)
        if int(state["epoch"]) >= cfg.train.epochs and not state.get("step"):
            summary = on_main(_finished_summary, run_dir, int(state["epoch"]))
            if summary:
                return RunResult(run_dir, summary, already_finished=True)
            # stopped between its last checkpoint and its report: fit() finishes the report
        return fit(cfg, data_dir, run_dir, device=device, download=download,
                   stop_after=stop_after, _resume_state=state, _opened=True)
    finally:
        for lock in held:
            lock.release()


def _finished_summary(run_dir: Path, epochs: int) -> dict[str, Any]:
    """summary.json of a run that finished its ``epochs`` and its report, else {}."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    if isinstance(summary, dict) and summary.get("finished") and \
            summary.get("epochs_run") == epochs:
        return summary
    return {}
