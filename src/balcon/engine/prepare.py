"""The first phase of a run: data, model, optimiser, loaders and resume state, ready to train.

:func:`prepare` returns a :class:`Run`, everything the epoch loop of
:func:`balcon.engine.fit.fit` needs. The multi-process details live here: each rank
reads the data, rank 0 alone checks and creates the run directory and loads
pretrained weights, DDP copies rank 0's weights to every rank, and each rank takes
``batch_size / world_size`` samples of every global batch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from balcon import __version__
from balcon.config import Config
from balcon.data import DataSplits, EpochSampler, ImageSet, load_image_sets, make_train_dataset
from balcon.data.device_views import DeviceLoader, DeviceViews, fits_on, resolve_pipeline
from balcon.engine.device import check_precision, make_grad_scaler, run_precision
from balcon.engine.distributed import (
    DistContext,
    broadcast_object,
    ddp_wrap,
    init_distributed,
    on_every_rank,
    on_main,
)
from balcon.engine.loaders import eval_loader, loader_options
from balcon.engine.objective import Objective, make_objective
from balcon.engine.run_dir import read_records, record_precision
from balcon.errors import BalconError, RankError, one_line
from balcon.models import BCLModel, build_model, load_pretrained

__all__ = ["Run", "own_errors", "prepare"]


@dataclass
class Run:
    """A run ready to train: its config, data, model, optimiser, loaders and progress."""

    cfg: Config
    run_dir: Path
    ctx: DistContext
    device: torch.device
    splits: DataSplits
    objective: Objective
    model: BCLModel
    #: ``model``, or ``model`` in DistributedDataParallel in a multi-process run
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    sampler: EpochSampler
    #: a DataLoader (``workers``) or a DeviceLoader (``device`` pipeline)
    train_loader: DataLoader | DeviceLoader
    select_loader: DataLoader
    #: epochs already done (0 for a new run)
    start_epoch: int
    #: the evaluations so far (metrics.jsonl), on every rank
    records: list[dict[str, Any]]
    #: what every checkpoint holds besides the weights, the optimiser and the epoch
    base_state: dict[str, Any]
    #: how the encoder's pretrained weights were loaded (new runs with model.pretrained)
    pretrained_note: str | None = None
    #: the interrupted part of epoch ``start_epoch`` (a resume mid-epoch): this rank's
    #: ``EpochMeter.state()``, or ``{"stats": ...}`` when only its evaluation was left
    partial: dict[str, Any] | None = None

    @property
    def counts(self) -> list[int]:
        """Training images per class (the loss's prior and the shot groups)."""
        return self.base_state["class_counts"]

    @property
    def precision(self) -> str:
        """What it trains with (``off``, ``bf16``, ``fp16``): ``train.precision`` resolved
        when the run started, kept by every resume."""
        return self.base_state["precision"]

    @property
    def precision_reason(self) -> str:
        """Why: ``train.precision``, or the rule of ``auto`` (``auto: no native bf16 ...``)."""
        return self.base_state["precision_reason"]

    @property
    def best_top1(self) -> float:
        """Best selection-split top-1 so far (-inf before the first evaluation)."""
        return max((r["top1"] for r in self.records), default=-math.inf)

    @property
    def pipeline(self) -> str:
        """Where the training views are made: ``workers`` or ``device``."""
        return "device" if isinstance(self.train_loader, DeviceLoader) else "workers"

    @property
    def processes(self) -> str:
        """The multi-process set-up in words ("" for a single process)."""
        local = self.train_loader.batch_size
        return (f"{self.ctx.world_size} processes ({local} images each per batch)"
                if self.ctx.enabled else "")


@contextlib.contextmanager
def own_errors(ctx: DistContext) -> Iterator[None]:
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


def prepare(cfg: Config, data_dir: str | Path | None, run_dir: Path, device: str | None,
            download: bool, resume_state: dict[str, Any] | None) -> Run:
    """Everything the epochs of ``cfg`` need; ``resume_state`` is a ``last.pt`` to continue."""
    ctx, dev = init_distributed(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # a resumed run's own; a new run's resolved by rank 0 (auto: by the hardware's flags)
    precision, precision_reason = on_main(run_precision, resume_state, cfg.train.precision,
                                          dev)
    if resume_state is not None and precision == "fp16" and dev.type != "cuda":
        raise BalconError(f"{run_dir} trains in fp16 ({precision_reason}), which needs CUDA; "
                          "resume it on a CUDA device")
    check_precision(dev, precision)
    local_batch = _local_batch(cfg, ctx)
    splits = _load_data(cfg, data_dir, ctx, download)
    if resume_state is not None:
        _check_resume_data(resume_state, splits, run_dir, ctx)
    counts = splits.train.class_counts()
    objective = make_objective(cfg.loss, counts).to(dev)
    sampler = EpochSampler(len(splits.train), seed=cfg.train.seed,
                           num_replicas=ctx.world_size, rank=ctx.rank)
    # the device pipeline decodes every image here (an unreadable one stops the run
    # before it trains, so its directory may be reused)
    train_loader = _train_loader(cfg, splits.train, objective.method.views, sampler,
                                 local_batch, dev, ctx)
    model, optimizer = _build(cfg, splits.train.num_classes, dev, ctx)
    scaler = make_grad_scaler(dev, precision)
    pretrained_note, start_epoch, partial = None, 0, None
    if resume_state is not None:
        _restore(resume_state, model, optimizer, scaler, run_dir)
        start_epoch = int(resume_state["epoch"])
        partial = _partial_epoch(resume_state, ctx)
    elif cfg.model.pretrained is not None:  # rank 0 loads them; DDP shares them
        pretrained_note = on_main(load_pretrained, model.encoder, cfg.model.pretrained,
                                  cfg.model.encoder)
    # DDP copies rank 0's weights (pretrained or resumed) to every rank
    train_model = ddp_wrap(model, dev, objective.method) if ctx.enabled else model
    select_loader = eval_loader(splits.get(splits.selection_split), cfg.data, dev, ctx,
                                persistent=True)
    records = broadcast_object(read_records(run_dir / "metrics.jsonl", start_epoch)
                               if ctx.is_main else [])
    base_state = {
        "config": cfg.to_dict(), "class_names": splits.train.class_names,
        "class_counts": counts,
        "data_dir": None if data_dir is None else str(Path(data_dir).resolve()),
        "balcon_version": __version__, "selection_split": splits.selection_split,
        "precision": precision, "precision_reason": precision_reason,
    }
    if resume_state is None and ctx.is_main:
        record_precision(run_dir, precision, precision_reason)
    return Run(cfg, run_dir, ctx, dev, splits, objective, model, train_model, optimizer,
               scaler, sampler, train_loader, select_loader, start_epoch, records,
               base_state, pretrained_note, partial)


def _local_batch(cfg: Config, ctx: DistContext) -> int:
    batch = cfg.train.batch_size
    if batch % ctx.world_size:
        raise BalconError(
            f"train.batch_size {batch} is the global batch and must divide by the "
            f"{ctx.world_size} processes; set train.batch_size to a multiple of {ctx.world_size}"
        )
    return batch // ctx.world_size


def _train_loader(cfg: Config, images: ImageSet, views: int, sampler: EpochSampler,
                  batch: int, device: torch.device,
                  ctx: DistContext) -> DataLoader | DeviceLoader:
    """Batches of ``views`` views: per image in DataLoader workers, or made on the device
    (``data.pipeline``); both take their keys from ``sampler`` (this rank's share). Every
    rank holds the whole set on its device; all agree on a decoding error."""
    auto_fits = cfg.data.pipeline != "auto" or fits_on(images, cfg.data.image_size, device)
    if resolve_pipeline(cfg.data, device) == "device" and auto_fits:  # auto: else workers
        made = on_every_rank(DeviceViews, images, cfg.data, views, cfg.train.seed, device)
        return DeviceLoader(made, sampler, batch)
    return DataLoader(make_train_dataset(images, cfg.data, views, cfg.train.seed),
                      batch_size=batch, sampler=sampler, drop_last=False,
                      **loader_options(cfg.data, device, ctx, persistent=True))


def _load_data(cfg: Config, data_dir: str | Path | None, ctx: DistContext,
               download: bool) -> DataSplits:
    """Every rank's copy of the splits; with ``download``, local rank 0 fetches (and
    reads) the data before the others read it."""
    fetched = on_every_rank(lambda: load_image_sets(cfg.data, data_dir, download=True)
                            if download and ctx.local_rank == 0 else None)
    return on_every_rank(lambda: fetched or load_image_sets(cfg.data, data_dir))


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


def _partial_epoch(state: dict[str, Any], ctx: DistContext) -> dict[str, Any] | None:
    """This rank's part of an epoch a checkpoint interrupted (None at an epoch end)."""
    if "epoch_stats" in state:
        return {"stats": state["epoch_stats"]}
    if not state.get("step"):
        return None
    waited, elapsed = state["epoch_time"]
    return {"step": int(state["step"]), "sums": state["epoch_sums"][ctx.rank],
            "waited": waited, "elapsed": elapsed}


def _check_resume_data(state: dict[str, Any], splits: DataSplits, run_dir: Path,
                       ctx: DistContext) -> None:
    stopped_by = int(state.get("world_size", ctx.world_size))
    if (state.get("step") or "epoch_stats" in state) and stopped_by != ctx.world_size:
        raise BalconError(
            f"{run_dir} stopped mid-epoch with {stopped_by} processes; resume it with "
            f"{stopped_by} (torchrun --nproc_per_node {stopped_by}), or from an epoch end"
        )
    train_set: ImageSet = splits.train
    if state["class_names"] != train_set.class_names or \
            state["class_counts"] != train_set.class_counts():
        raise BalconError(
            f"the data given to resume {run_dir} is not the data it was trained on (other "
            "classes or class counts); point --data-dir at the original data"
        )
    chosen_on = state.get("selection_split", splits.selection_split)
    if chosen_on != splits.selection_split:
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
