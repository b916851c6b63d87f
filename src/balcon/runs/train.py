"""A whole training run in its directory: :func:`fit` starts one, :func:`resume` continues it.

A run reads as its phases: open the directory (lock, ``config.yaml``, ``run.json``),
:func:`~balcon.engine.prepare.prepare`, the epochs (:func:`~balcon.engine.loop.train_epochs`
kept by a :class:`~balcon.runs.keeper.RunKeeper`), the report on the report split. A
run resumed from ``last.pt`` (an epoch end or mid-epoch) ends with the same weights as
an uninterrupted one, bit for bit on the CPU: the model is seeded, every sample's
augmentation derives from (seed, epoch, index), and the checkpoint holds the optimizer,
the gradient scaler and the RNG. Under ``torchrun`` every process runs it; only rank 0
logs and writes, and a run resumes from an epoch end with any number of processes (a
mid-epoch checkpoint needs the count that wrote it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from balcon.config import Config, run_config
from balcon.data import check_data_dir, data_dir_for
from balcon.engine.device import emulated_bf16_warning
from balcon.engine.distributed import broadcast_object, init_distributed, on_main
from balcon.engine.loaders import eval_loader
from balcon.engine.loop import train_epochs
from balcon.engine.metrics import fmt
from balcon.engine.prepare import Trainer, prepare
from balcon.engine.steps import evaluate
from balcon.errors import LOG, BalconError, one_line
from balcon.models import check_encoder
from balcon.models.finetune import check_finetune
from balcon.runs.checkpoint import load_checkpoint
from balcon.runs.files import (
    BEST,
    CONFIG,
    FILE_ONLY,
    SUMMARY,
    RunLock,
    RunLog,
    open_new_run,
    open_resume,
    read_json,
)
from balcon.runs.keeper import RunKeeper
from balcon.runs.preempt import StepControl
from balcon.runs.records import result_row, summarize
from balcon.runs.tensorboard import require_tensorboard

__all__ = ["RunResult", "check_new_run", "fit", "resume"]


@dataclass
class RunResult:
    """What a finished (or stopped) run leaves: its directory and its summary."""

    run_dir: Path
    summary: dict[str, Any]
    #: True when :func:`resume` found the run already at its configured end.
    already_finished: bool = False


def check_new_run(cfg: Config, data_dir: str | Path | None, download: bool = False
                  ) -> str | Path | None:
    """The data folder of a new run of ``cfg``, after the checks that read no data: so a
    wrong ``model.encoder``, a missing library (LoRA's peft) or a ``--data-dir`` that does
    not exist is refused before the run directory is made."""
    check_encoder(cfg.model)
    check_finetune(cfg.model)
    data_dir = data_dir_for(cfg.data, data_dir)
    check_data_dir(cfg.data, data_dir, download)
    return data_dir


def fit(cfg: Config, data_dir: str | Path | None, run_dir: str | Path,
        device: str | None = None, download: bool = False,
        stop_after: int | None = None) -> RunResult:
    """Train ``cfg`` on the data in ``data_dir`` into the new run directory ``run_dir``.

    Rank 0 first takes the directory's lock and writes its config. A preemption signal
    stops the run at the next step with a checkpoint and :class:`~balcon.errors.Preempted`.
    ``stop_after`` ends the run after that many epochs (as if interrupted); :func:`resume`
    continues it. Returns the run directory and its summary.
    """
    run_dir = Path(run_dir)
    data_dir = check_new_run(cfg, data_dir, download)  # before anything is written
    init_distributed(device)
    if cfg.train.tensorboard:
        on_main(require_tensorboard)  # before anything is written
    held: list[RunLock] = []
    try:
        on_main(lambda: held.append(open_new_run(cfg, data_dir, run_dir)))
        return _run(cfg, data_dir, run_dir, device, download, stop_after, None)
    finally:
        for lock in held:
            lock.release()


def resume(run_dir: str | Path, data_dir: str | Path | None = None,
           device: str | None = None, stop_after: int | None = None,
           download: bool = False) -> RunResult:
    """Continue the run in ``run_dir`` to its configured end: from its ``last.pt`` (an
    epoch end or mid-epoch), or, when the run wrote only its config, from the start.

    Rank 0 takes the directory's lock, reads the checkpoint and shares it, so in a
    multi-node run only rank 0 needs the run directory.
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
        cfg = run_config(state["config"], source=str(run_dir / CONFIG))
        if cfg.train.tensorboard:
            on_main(require_tensorboard)
        data_dir = data_dir_for(cfg.data, data_dir, state.get("data_dir"))
        if "model" not in state:  # only the config: start from the beginning
            state = None
        elif int(state["epoch"]) >= cfg.train.epochs and not state.get("step"):
            summary = on_main(read_json, run_dir / SUMMARY)
            if summary.get("finished") and summary.get("epochs_run") == cfg.train.epochs:
                return RunResult(run_dir, summary, already_finished=True)
            # stopped between its last checkpoint and its report: finish the report
        return _run(cfg, data_dir, run_dir, device, download, stop_after, state)
    finally:
        for lock in held:
            lock.release()


def _run(cfg: Config, data_dir: str | Path | None, run_dir: Path, device: str | None,
         download: bool, stop_after: int | None, state: dict[str, Any] | None) -> RunResult:
    """Prepare, train and report, logged to ``train.log``; signals are handled at step
    boundaries during the epochs, at once elsewhere. An error or a signal in any phase,
    preparing the data included, ends ``train.log`` with a "stopped: ..." line."""
    ctx, _ = init_distributed(device)
    with StepControl(ctx, cfg.train.checkpoint_minutes,
                     f"continue with balcon train --resume {run_dir}") as control:
        epochs = cfg.train.epochs
        last = min(epochs, stop_after) if stop_after is not None else epochs
        log = RunLog(run_dir, enabled=ctx.is_main)
        keeper: RunKeeper | None = None
        try:
            t = prepare(cfg, data_dir, device, download, state, str(run_dir))
            keeper = RunKeeper(t, run_dir, data_dir, control)
            _log_start(t, run_dir)
            with control.steps():
                train_epochs(t, keeper, last)
                if control.poll()[0]:  # a signal during the last save: stop before the report
                    raise keeper.stopped(f"after epoch {last}")
            if last == epochs and keeper.records:  # the last epoch is done (now or before)
                if t.start_epoch >= epochs:
                    LOG.info("all %d epochs done; finishing the report", epochs)
                keeper.write_summary(_final_summary(t, run_dir, keeper.records))
        except BalconError as err:
            LOG.info("stopped: %s", one_line(err), extra=FILE_ONLY)
            raise
        except KeyboardInterrupt:
            LOG.info("stopped: interrupted", extra=FILE_ONLY)
            raise
        finally:
            if keeper is not None:
                keeper.close()
            log.close()
    return RunResult(run_dir, keeper.summary)


def _log_start(t: Trainer, run_dir: Path) -> None:
    """The log's first lines: what trains on what, or where a resumed run picks up."""
    cfg, splits, processes = t.cfg, t.splits, t.processes
    emulated = emulated_bf16_warning(t.precision, t.device)
    if t.start_epoch > 0:
        LOG.info("resuming %s after epoch %d%s; precision: %s (as the run started: %s)",
                 run_dir, t.start_epoch, f" with {processes}" if processes else "",
                 t.precision, t.precision_reason)
    else:
        held_out = ", ".join(f"{len(splits.get(n))} {n}" for n in ("val", "test")
                             if getattr(splits, n) is not None)
        LOG.info("run %s: %s, %s, %d train%s images, %d classes, device %s%s",
                 run_dir, cfg.name, cfg.loss.method, len(splits.train),
                 f" / {held_out}" if held_out else "", splits.train.num_classes, t.device,
                 f", {processes}" if processes else "")
        LOG.info("precision: %s (%s)", t.precision, t.precision_reason)
    if emulated:
        LOG.warning("warning: %s", emulated)
    if t.compiled:
        LOG.info("training step compiled with torch.compile (the first steps compile)")
    elif cfg.train.compile:
        LOG.warning("warning: train.compile: no C++ compiler for torch.compile here; this "
                    "resumed run trains eagerly (the same math, rounded differently)")
    if t.start_epoch == 0:
        _log_data(t)


def _log_data(t: Trainer) -> None:
    """The new run's encoder weights, data oddities, views and evaluation splits."""
    splits = t.splits
    if t.pretrained_note:
        LOG.info("encoder weights: %s", t.pretrained_note)
    for name, bad in splits.skipped.items():
        LOG.info("skipped %d unreadable %s images (data.on_bad_image=skip): %s", len(bad),
                 name, "; ".join(f"{path} ({reason})" for path, reason in bad))
    if splits.unused:
        LOG.info("not read: %s beside train/ (balcon reads train/, val/ or valid/ or "
                 "validation/, and test/)", ", ".join(f"{n}/" for n in splits.unused))
    LOG.info("training views: %s pipeline%s", t.pipeline,
             f" (the set on {t.device} as uint8)" if t.pipeline == "device" else
             " (per image, in DataLoader workers)")
    if splits.selection_split == "train":
        LOG.info("no val or test split: best.pt is chosen on, and the report "
                 "measures, the training images (no held-out accuracy)")
    else:
        LOG.info("model selection on %s, final report on %s", splits.selection_split,
                 splits.report_split)


def _final_summary(t: Trainer, run_dir: Path, records: list[dict[str, Any]]
                   ) -> dict[str, Any]:
    """The summary of a run whose last epoch is done, per class by name: a run that
    selected on val also measures its last model and its ``best.pt`` on the report split."""
    selected, report = t.splits.selection_split, t.splits.report_split
    summary = summarize(records, selected)
    if report == selected:
        per_class = records[-1]["per_class"]
    else:
        images = t.splits.get(report)
        loader = eval_loader(images, t.cfg.data, t.device, t.ctx)
        last_state = {k: v.detach().clone() for k, v in t.model.state_dict().items()}
        results = {"last": _measure(t, loader, f"{report} (last)")}
        if summary["best"]["epoch"] == summary["last"]["epoch"]:  # best.pt is the last model
            results["best"] = dict(results["last"])
        else:
            t.model.load_state_dict(broadcast_object(
                load_checkpoint(run_dir / BEST)["model"] if t.ctx.is_main else None))
            results["best"] = _measure(t, loader, f"{report} (best)")
            t.model.load_state_dict(last_state)
        per_class = results["last"]["per_class"]
        for name, result in results.items():
            result["epoch"] = summary[name]["epoch"]
            LOG.info("%s split, %s (epoch %d): top1 %.2f many %s medium %s few %s", report,
                     name, result["epoch"], result["top1"], fmt(result["many"]),
                     fmt(result["medium"]), fmt(result["few"]))
        summary = {**{n: result_row(r, report) for n, r in results.items()},
                   "epochs_run": summary["epochs_run"], "selection_split": selected,
                   "report_split": report,
                   "selection": {"last": summary["last"], "best": summary["best"]}}
    summary["per_class"] = dict(zip(t.splits.train.class_names, per_class, strict=True))
    summary["finished"] = True
    return summary


def _measure(t: Trainer, loader: torch.utils.data.DataLoader, desc: str) -> dict[str, Any]:
    return evaluate(t.model, loader, t.counts, t.precision, t.device, t.ctx, desc,
                    t.cfg.model.channels_last)[0]
