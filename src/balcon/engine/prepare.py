"""The first phase of training: data, model, optimiser, loaders and resume state.

:func:`prepare` returns a :class:`Trainer`, everything the epoch loop
(:mod:`balcon.engine.loop`) needs. The multi-process details live here: each rank
reads the data, rank 0 alone loads pretrained weights, DDP copies rank 0's weights to
every rank, and each rank takes ``batch_size / world_size`` samples of every global
batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from balcon.config import Config
from balcon.data import (
    DataSplits,
    EpochSampler,
    FeatureDataset,
    ImageSet,
    load_image_sets,
    make_train_dataset,
)
from balcon.data.device_views import DeviceLoader, DeviceViews, fits_on, resolve_pipeline
from balcon.engine.device import (
    can_compile,
    check_compile,
    check_precision,
    make_grad_scaler,
    run_precision,
)
from balcon.engine.distributed import (
    DistContext,
    ddp_wrap,
    gather,
    init_distributed,
    on_every_rank,
    on_main,
)
from balcon.engine.loaders import eval_loader, loader_options
from balcon.engine.steps import Objective, make_objective, predict
from balcon.errors import BalconError, Preempted, RankError, one_line
from balcon.models import BCLModel, build_model, load_pretrained
from balcon.models.finetune import apply_finetune, check_finetune

__all__ = ["EpochProgress", "Trainer", "own_errors", "prepare"]


@dataclass
class EpochProgress:
    """Where an interrupted epoch stands: steps done, this rank's metric sums and time so
    far; or, with ``stats``, its training done and only its evaluation left."""

    step: int = 0
    sums: torch.Tensor | None = None
    waited: float = 0.0
    elapsed: float = 0.0
    stats: dict[str, Any] | None = None


@dataclass
class Trainer:
    """A run ready to train: its config, data, model, optimiser, loaders and progress."""

    cfg: Config
    ctx: DistContext
    device: torch.device
    splits: DataSplits
    counts: list[int]  # training images per class (the loss's prior, the shot groups)
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
    #: ``off``, ``bf16`` or ``fp16``, resolved when the run started, and why
    precision: str
    precision_reason: str
    start_epoch: int = 0  # epochs already done
    #: how the encoder's pretrained weights were loaded (new runs with model.pretrained)
    pretrained_note: str | None = None
    #: whether ``train_model`` is compiled (``train.compile`` where a compiler is found)
    compiled: bool = False
    #: the interrupted part of epoch ``start_epoch`` (a resume mid-epoch)
    progress: EpochProgress | None = None

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

    def state(self, epoch: int, progress: EpochProgress | None = None) -> dict[str, Any]:
        """The training state after ``epoch`` epochs (and ``progress`` into the next):
        weights, optimiser, scaler, RNG; what a checkpoint holds to resume exactly.
        Mid-epoch, every rank's sums are gathered (call it on every rank)."""
        state = {"epoch": epoch, "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                 "rng": torch.get_rng_state(), "world_size": self.ctx.world_size}
        if progress is not None and progress.stats is not None:
            state["epoch_stats"] = progress.stats
        elif progress is not None:
            state.update(step=progress.step, epoch_time=[progress.waited, progress.elapsed],
                         epoch_sums=gather(progress.sums.to(self.device)[None]).cpu())
        return state


@contextlib.contextmanager
def own_errors(ctx: DistContext) -> Iterator[None]:
    """In a multi-process run, mark a BalconError raised here as this rank's own.

    Each rank reads its own share of the data, so a corrupt file stops one rank; its
    message must come from that rank (torchrun then stops the others).
    """
    try:
        yield
    except (RankError, Preempted):
        raise
    except BalconError as err:
        if not ctx.enabled:
            raise
        raise RankError(f"process {ctx.rank}: {one_line(err)}") from None


def prepare(cfg: Config, data_dir: str | Path | None, device: str | None = None,
            download: bool = False, resume: dict[str, Any] | None = None,
            source: str = "the run") -> Trainer:
    """Everything the epochs of ``cfg`` need; ``resume`` is a training state to continue
    (:meth:`Trainer.state`, with the run's ``class_names`` and ``class_counts``), and
    ``source`` names where it came from in errors."""
    ctx, dev = init_distributed(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # a resumed run's own; a new run's resolved by rank 0 (auto: by the hardware's flags)
    precision, reason = on_main(run_precision, resume, cfg.train.precision, dev)
    if resume is not None and precision == "fp16" and dev.type != "cuda":
        raise BalconError(f"{source} trains in fp16 ({reason}), which needs CUDA; resume "
                          "it on a CUDA device")
    check_precision(dev, precision)
    check_finetune(cfg.model)
    if cfg.train.compile and resume is None:
        check_compile(dev)
    local_batch = _local_batch(cfg, ctx)
    splits = _load_data(cfg, data_dir, ctx, download)
    if resume is not None:
        _check_resume_data(resume, splits, source, ctx)
    counts = splits.train.class_counts()
    objective = make_objective(cfg.loss, counts, dev)
    sampler = EpochSampler(len(splits.train), seed=cfg.train.seed,
                           num_replicas=ctx.world_size, rank=ctx.rank)
    # the device pipeline decodes every image here (an unreadable one stops the run
    # before it trains, so its directory may be reused)
    cached = cfg.model.finetune == "linear" and objective.method.views == 1
    train_loader = None if cached else _train_loader(
        cfg, splits.train, objective.method.views, sampler, local_batch, dev, ctx)
    model, note = _build(cfg, splits.train.num_classes, dev, ctx, pretrained=resume is None)
    if resume is not None:  # the run's own weights, before the features are computed
        _restore(resume, model, source)
    if cached:  # a frozen encoder, one view: its features of the un-augmented images, once
        train_loader = _feature_loader(model, cfg, splits.train, sampler, local_batch, dev,
                                       precision)
        model.takes_features = True
    t = Trainer(cfg, ctx, dev, splits, counts, objective, model, model,
                _optimizer(model, cfg), make_grad_scaler(dev, precision), sampler, train_loader,
                eval_loader(splits.get(splits.selection_split), cfg.data, dev, ctx,
                            persistent=True), precision, reason, pretrained_note=note)
    if resume is not None:
        _restore_training(resume, t, source)
    _wrap_for_training(t)
    return t


def _wrap_for_training(t: Trainer) -> None:
    """What the training step calls: the model in DDP (several processes; DDP copies rank
    0's weights, pretrained or resumed, to every rank), then under ``torch.compile``
    (``train.compile``). ``t.model`` stays plain: evaluation and checkpoints use it."""
    if t.ctx.enabled:
        t.train_model = ddp_wrap(t.model, t.device, t.objective.method)
    # one graph per batch shape (a smaller last batch gets its own), so a resumed run
    # runs the same kernels as the run it continues. A compiled run resumed where
    # nothing can compile trains eagerly (its config cannot change on resume; the run's
    # log warns).
    if t.cfg.train.compile and can_compile(t.device):
        t.train_model = torch.compile(t.train_model, dynamic=False)
        t.compiled = True


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


def _feature_loader(model: BCLModel, cfg: Config, images: ImageSet, sampler: EpochSampler,
                    batch: int, device: torch.device, precision: str) -> DataLoader:
    """Batches of the frozen encoder's features of the training images' test-time view,
    computed here once (``model.finetune=linear`` with a one-view method)."""
    features: list[torch.Tensor] = []
    predict(model, eval_loader(images, cfg.data, device), device, precision,
            "features", cfg.model.channels_last,
            after_batch=lambda f, _: features.append(f.float().cpu()))
    return DataLoader(FeatureDataset(torch.cat(features), images.labels), batch_size=batch,
                      sampler=sampler, drop_last=False)


def _load_data(cfg: Config, data_dir: str | Path | None, ctx: DistContext,
               download: bool) -> DataSplits:
    """Every rank's copy of the splits; with ``download``, local rank 0 fetches (and
    reads) the data before the others read it."""
    fetched = on_every_rank(lambda: load_image_sets(cfg.data, data_dir, download=True)
                            if download and ctx.local_rank == 0 else None)
    return on_every_rank(lambda: fetched or load_image_sets(cfg.data, data_dir))


def _build(cfg: Config, num_classes: int, device: torch.device, ctx: DistContext,
           pretrained: bool = False) -> tuple[BCLModel, str | None]:
    """The seeded model on ``device``, its encoder's pretrained weights loaded (rank 0,
    ``pretrained``: a new run; DDP shares them), set up for ``model.finetune``."""
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
    note = on_main(load_pretrained, model.encoder, cfg.model.pretrained, cfg.model.encoder) \
        if pretrained and cfg.model.pretrained is not None else None
    apply_finetune(model, cfg.model)
    return model, note  # type: ignore[return-value]


def _optimizer(model: BCLModel, cfg: Config) -> torch.optim.Optimizer:
    """SGD over the trainable parameters; with ``optim.encoder_lr_scale`` the encoder's
    are a group of their own, whose ``lr_scale`` the loop multiplies the lr by."""
    o, params = cfg.optim, [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": params}]
    if o.encoder_lr_scale != 1.0:
        encoder = {id(p) for p in model.encoder.parameters()}
        groups = [g for g in ({"params": [p for p in params if id(p) in encoder],
                               "lr_scale": o.encoder_lr_scale},
                              {"params": [p for p in params if id(p) not in encoder]})
                  if g["params"]]
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum,
                           weight_decay=o.weight_decay, nesterov=o.nesterov)


def _check_resume_data(state: dict[str, Any], splits: DataSplits, source: str,
                       ctx: DistContext) -> None:
    stopped_by = int(state.get("world_size", ctx.world_size))
    if (state.get("step") or "epoch_stats" in state) and stopped_by != ctx.world_size:
        raise BalconError(
            f"{source} stopped mid-epoch with {stopped_by} processes; resume it with "
            f"{stopped_by} (torchrun --nproc_per_node {stopped_by}), or from an epoch end"
        )
    train_set: ImageSet = splits.train
    if state["class_names"] != train_set.class_names or \
            state["class_counts"] != train_set.class_counts():
        raise BalconError(
            f"the data given to resume {source} is not the data it was trained on (other "
            "classes or class counts); point --data-dir at the original data"
        )
    chosen_on = state.get("selection_split", splits.selection_split)
    if chosen_on != splits.selection_split:
        raise BalconError(
            f"{source} chose its best epoch on the {chosen_on} split, which the data given "
            f"to resume lacks; point --data-dir at the original data"
        )


def _restore(state: dict[str, Any], model: nn.Module, source: str) -> None:
    """Load the weights of a :meth:`Trainer.state` into ``model``."""
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError, ValueError, TypeError):
        raise _misfit(source) from None


def _restore_training(state: dict[str, Any], t: Trainer, source: str) -> None:
    """Load the rest of a :meth:`Trainer.state` into ``t`` (:func:`_restore` loads its
    weights): optimiser, scaler, RNG, progress."""
    try:
        t.optimizer.load_state_dict(state["optimizer"])
        t.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
    except (KeyError, RuntimeError, ValueError, TypeError):
        raise _misfit(source) from None
    t.start_epoch = int(state["epoch"])
    if "epoch_stats" in state:
        t.progress = EpochProgress(stats=state["epoch_stats"])
    elif state.get("step"):
        waited, elapsed = state["epoch_time"]
        t.progress = EpochProgress(int(state["step"]), state["epoch_sums"][t.ctx.rank],
                                   waited, elapsed)


def _misfit(source: str) -> BalconError:
    return BalconError(f"the checkpoint of {source} does not fit the model and optimizer "
                       "its config describes; it is incompatible (start a new run)")
