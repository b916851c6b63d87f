"""A whole training run: data, model, epochs, evaluation, checkpoints, run directory.

The run directory holds ``config.yaml``, ``train.log``, ``metrics.jsonl`` (one JSON
line per evaluation on the model-selection split), ``last.pt`` (every epoch),
``best.pt`` (best selection top-1 so far) and ``summary.json`` (last and best, and
at the end the report on the test split). A run resumed from ``last.pt`` ends with
the same weights as an uninterrupted one: the model is seeded, the shuffle and every
sample's augmentation derive from (seed, epoch, index), and the checkpoint holds the
optimizer, the gradient scaler and the RNG state.

Under ``torchrun`` the same function runs in every process: DDP wraps the model,
each rank takes ``batch_size / world_size`` samples of every global batch, the BCL
loss sees the gathered global batch, evaluation is sharded and gathered, and only
rank 0 logs and writes. The global batch and every sample's views do not depend on
the number of processes, so a run can resume with another world size.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from balcon import __version__
from balcon.config import Config, config_from_dict, config_to_yaml
from balcon.data import (
    EpochSampler,
    ImageSet,
    load_image_sets,
    make_train_dataset,
)
from balcon.engine.checkpoint import load_checkpoint, save_checkpoint
from balcon.engine.device import check_precision, make_grad_scaler
from balcon.engine.distributed import (
    DistContext,
    broadcast_buffers,
    broadcast_object,
    init_distributed,
    on_every_rank,
    on_main,
)
from balcon.engine.evaluate import eval_loader, loader_options
from balcon.engine.run_dir import (
    LOG,
    RunLog,
    check_new_run_dir,
    read_records,
    summarize,
)
from balcon.engine.run_report import evaluate_split, finished_summary, fmt
from balcon.engine.schedule import lr_at
from balcon.engine.steps import make_objective, train_one_epoch
from balcon.errors import BalconError, RankError, one_line
from balcon.models import BCLModel, build_model, load_pretrained

__all__ = ["RunResult", "fit", "resume"]


@dataclass
class RunResult:
    """What a finished (or stopped) run leaves: its directory and its summary."""

    run_dir: Path
    summary: dict[str, Any]
    #: True when :func:`resume` found the run already at its configured end.
    already_finished: bool = False


def _local_batch(cfg: Config, ctx: DistContext) -> int:
    batch = cfg.train.batch_size
    if batch % ctx.world_size:
        raise BalconError(
            f"train.batch_size {batch} is the global batch and must divide by the "
            f"{ctx.world_size} processes; set train.batch_size to a multiple of {ctx.world_size}"
        )
    return batch // ctx.world_size


def _build(cfg: Config, num_classes: int, device: torch.device,
           ctx: DistContext) -> tuple[BCLModel, torch.optim.Optimizer]:
    torch.manual_seed(cfg.train.seed)
    model: nn.Module = build_model(cfg.model, num_classes)
    if cfg.train.sync_bn and ctx.enabled:
        if device.type != "cuda":
            raise BalconError("train.sync_bn needs GPUs (SyncBatchNorm has no CPU kernels); "
                              "set train.sync_bn=false for a CPU run")
        from timm.layers import convert_sync_batchnorm  # keeps timm's BatchNormAct2d acts

        model = convert_sync_batchnorm(model)
    model = model.to(device)
    if cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    o = cfg.optim
    optimizer = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum,
                                weight_decay=o.weight_decay, nesterov=o.nesterov)
    return model, optimizer  # type: ignore[return-value]


@contextlib.contextmanager
def _own_errors(ctx: DistContext) -> Iterator[None]:
    """In a multi-process run, mark a BalconError raised here as this rank's own.

    Each rank reads its own share of the data, so a corrupt file stops one rank; its
    message must come from that rank (torchrun then stops the others).
    """
    try:
        yield
    except RankError:
        raise
    except BalconError as err:
        if not ctx.enabled:
            raise
        raise RankError(f"process {ctx.rank}: {one_line(err)}") from None


def _check_resume_data(state: dict[str, Any], train_set: ImageSet, select_name: str,
                       run_dir: Path) -> None:
    if state["class_names"] != train_set.class_names or \
            state["class_counts"] != train_set.class_counts():
        raise BalconError(
            f"the data given to resume {run_dir} is not the data it was trained on (other "
            "classes or class counts); point --data-dir at the original data"
        )
    chosen_on = state.get("selection_split", select_name)
    if chosen_on != select_name:
        raise BalconError(
            f"{run_dir} chose its best epoch on the {chosen_on} split, which the data given "
            f"to resume lacks; point --data-dir at the original data"
        )


def _restore(state: dict[str, Any], model: BCLModel, optimizer: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler, run_dir: Path) -> None:
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
    except (KeyError, RuntimeError, ValueError, TypeError):
        raise BalconError(
            f"{run_dir / 'last.pt'} does not fit the model and optimizer its config "
            "describes; it is incompatible (start a new run)"
        ) from None


def _write_summary(run_dir: Path, summary: dict[str, Any], ctx: DistContext) -> None:
    if ctx.is_main:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))


def _start_new_run(cfg: Config, model: BCLModel, run_dir: Path) -> str | None:
    """Rank 0: write config.yaml, load pretrained encoder weights (DDP shares them)."""
    (run_dir / "config.yaml").write_text(config_to_yaml(cfg))
    if cfg.model.pretrained is None:
        return None
    return load_pretrained(model.encoder, cfg.model.pretrained, cfg.model.encoder)


def fit(
    cfg: Config,
    data_dir: str | Path | None,
    run_dir: str | Path,
    device: str | None = None,
    download: bool = False,
    stop_after: int | None = None,
    _resume_state: dict[str, Any] | None = None,
) -> RunResult:
    """Train ``cfg`` on the data in ``data_dir``, writing the run directory ``run_dir``.

    ``stop_after`` ends the run after that many epochs (as if interrupted); it
    continues with :func:`resume`. Returns the run directory and its summary.
    """
    run_dir = Path(run_dir)
    ctx, dev = init_distributed(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    check_precision(dev, cfg.train.precision)
    local_batch = _local_batch(cfg, ctx)
    # with --download, local rank 0 fetches (and reads) the data before the others read it
    fetched = on_every_rank(lambda: load_image_sets(cfg.data, data_dir, download=True)
                            if download and ctx.local_rank == 0 else None)
    splits = on_every_rank(lambda: fetched or load_image_sets(cfg.data, data_dir))
    train_set = splits.train
    counts = train_set.class_counts()
    select_name, report_name = splits.selection_split, splits.report_split
    if _resume_state is None:
        on_main(check_new_run_dir, run_dir)
    else:
        _check_resume_data(_resume_state, train_set, select_name, run_dir)
    objective = make_objective(cfg.loss, counts)
    objective.classifier_loss.to(dev)
    model, optimizer = _build(cfg, train_set.num_classes, dev, ctx)
    scaler = make_grad_scaler(dev, cfg.train.precision)
    pretrained_note = None
    if _resume_state is not None:
        _restore(_resume_state, model, optimizer, scaler, run_dir)
        start_epoch = int(_resume_state["epoch"])
    else:
        pretrained_note = on_main(_start_new_run, cfg, model, run_dir)
        start_epoch = 0
    train_model: nn.Module = model
    if ctx.enabled:  # DDP copies rank 0's weights (pretrained or resumed) to every rank
        train_model = DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None,
            find_unused_parameters=not objective.contrastive,
        )
    sampler = EpochSampler(len(train_set), seed=cfg.train.seed, num_replicas=ctx.world_size,
                           rank=ctx.rank)
    train_loader = DataLoader(
        make_train_dataset(train_set, cfg.data, objective.contrastive, cfg.train.seed),
        batch_size=local_batch, sampler=sampler, drop_last=False,
        **loader_options(cfg.data, dev, ctx),
    )
    select_loader = eval_loader(splits.get(select_name), cfg.data, dev, ctx)
    metrics_path = run_dir / "metrics.jsonl"
    records = broadcast_object(read_records(metrics_path, start_epoch) if ctx.is_main else [])
    best_top1 = max((r["top1"] for r in records), default=-math.inf)
    base_state = {
        "config": cfg.to_dict(), "class_names": train_set.class_names, "class_counts": counts,
        "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
        "balcon_version": __version__, "selection_split": select_name,
    }
    summary: dict[str, Any] = summarize(records, select_name) if records else {}
    processes = (f"{ctx.world_size} processes ({local_batch} images each per batch)"
                 if ctx.enabled else "")
    log = RunLog(run_dir, enabled=ctx.is_main)
    try:
        if start_epoch == 0:
            held_out = ", ".join(f"{len(splits.get(n))} {n}" for n in ("val", "test")
                                 if getattr(splits, n) is not None)
            LOG.info("run %s: %s, %s, %d train%s images, %d classes, device %s%s",
                     run_dir, cfg.name, cfg.loss.method, len(train_set),
                     f" / {held_out}" if held_out else "", train_set.num_classes, dev,
                     f", {processes}" if processes else "")
            if pretrained_note:
                LOG.info("encoder weights: %s", pretrained_note)
            if select_name == "train":
                LOG.info("no val or test split: best.pt is chosen on, and the report "
                         "measures, the training images (no held-out accuracy)")
            else:
                LOG.info("model selection on %s, final report on %s", select_name,
                         report_name)
        else:
            LOG.info("resuming %s after epoch %d%s", run_dir, start_epoch,
                     f" with {processes}" if processes else "")
        epochs = cfg.train.epochs
        last = min(epochs, stop_after) if stop_after is not None else epochs
        steps = len(train_loader)
        for epoch in range(start_epoch, last):
            lr = lr_at(cfg.optim, epoch, epochs, steps_per_epoch=steps)  # the epoch's last
            sampler.set_epoch(epoch)
            with _own_errors(ctx):
                stats = train_one_epoch(
                    train_model, train_loader, objective, optimizer, scaler, dev,
                    cfg.train.precision, desc=f"epoch {epoch + 1}/{epochs}",
                    channels_last=cfg.model.channels_last, ctx=ctx,
                    lr_of_step=lambda step, e=epoch: lr_at(cfg.optim, e, epochs, step, steps),
                )
            LOG.info("epoch %d/%d lr %.4g loss %.4f (cls %.4f, con %s) train-acc %.2f "
                     "%.0f img/s %.1fs (data wait %.0f%%)", epoch + 1, epochs, lr, stats["loss"],
                     stats["loss_cls"], fmt(stats["loss_con"], ".4f"), stats["train_acc"],
                     stats["images_per_s"], stats["train_seconds"],
                     100 * stats["data_wait_share"])
            if not math.isfinite(stats["loss"]):
                raise BalconError(
                    f"training diverged at epoch {epoch + 1} (loss {stats['loss']}); lower "
                    "optim.lr or use train.precision=off"
                )
            done = epoch + 1
            broadcast_buffers(model)  # evaluate and save rank 0's BatchNorm statistics
            evaluated = done % cfg.train.eval_every == 0 or done == epochs
            if evaluated:
                with _own_errors(ctx):
                    metrics = evaluate_split(model, select_loader, counts, cfg, dev, ctx,
                                             select_name)
                record = {"epoch": done, "split": select_name, "lr": lr, **stats, **metrics}
                records.append(record)
                LOG.info("eval epoch %d on %s: top1 %.2f top%d %.2f many %s medium %s few %s",
                         done, select_name, record["top1"], record["top5_k"], record["top5"],
                         fmt(record["many"]), fmt(record["medium"]), fmt(record["few"]))
            if ctx.is_main:
                state = {**base_state, "epoch": done, "model": model.state_dict(),
                         "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                         "rng": torch.get_rng_state()}
                if evaluated and records[-1]["top1"] > best_top1:
                    best_top1 = records[-1]["top1"]
                    save_checkpoint(run_dir / "best.pt", state)  # before last.pt: a resume
                if evaluated:                                   # never skips a best.pt
                    with metrics_path.open("a") as f:
                        f.write(json.dumps(records[-1]) + "\n")
                save_checkpoint(run_dir / "last.pt", state)
            if evaluated and done < epochs:
                summary = summarize(records, select_name)
                _write_summary(run_dir, summary, ctx)
        if last == epochs and records:  # the last epoch is done (now, or before a resume)
            if start_epoch >= epochs:
                LOG.info("all %d epochs done; finishing the report", epochs)
            summary = finished_summary(model, cfg, run_dir, splits, counts, dev, ctx, records)
            _write_summary(run_dir, summary, ctx)
    except BalconError as err:
        LOG.info("stopped: %s", one_line(err))
        raise
    except KeyboardInterrupt:
        LOG.info("stopped: interrupted")
        raise
    finally:
        log.close()
    return RunResult(run_dir, summary)


def resume(
    run_dir: str | Path, data_dir: str | Path | None = None, device: str | None = None,
    stop_after: int | None = None,
) -> RunResult:
    """Continue the run in ``run_dir`` from its ``last.pt`` to its configured end.

    Rank 0 reads the checkpoint and shares it, so in a multi-node run only rank 0
    needs the run directory. Any number of processes may resume any run.
    """
    run_dir = Path(run_dir)
    init_distributed(device)

    def read() -> dict[str, Any]:
        if not (run_dir / "last.pt").is_file():
            raise BalconError(
                f"{run_dir} holds no last.pt; --resume takes a run directory balcon wrote"
            )
        return load_checkpoint(run_dir / "last.pt")

    state = on_main(read)
    cfg = config_from_dict(state["config"], source=f"{run_dir / 'last.pt'}", new_run=False)
    if int(state["epoch"]) >= cfg.train.epochs:  # nothing to train: report what it left

        def read_summary() -> dict[str, Any]:
            try:
                summary = json.loads((run_dir / "summary.json").read_text())
            except (OSError, ValueError):
                return {}
            return summary if isinstance(summary, dict) else {}

        summary = on_main(read_summary)
        if summary.get("finished") and summary.get("epochs_run") == int(state["epoch"]):
            return RunResult(run_dir, summary, already_finished=True)
        # stopped between its last checkpoint and its report: fit() finishes the report
    data_dir = data_dir if data_dir is not None else state.get("data_dir")
    return fit(cfg, data_dir, run_dir, device=device, stop_after=stop_after,
               _resume_state=state)
