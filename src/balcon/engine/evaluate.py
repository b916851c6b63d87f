"""Evaluation: loaders over held-out splits, a model's metrics, a checkpoint's report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from balcon.config import Config, DataConfig, run_config
from balcon.data import ImageSet, find_images, load_image_sets, make_eval_dataset
from balcon.engine.checkpoint import load_checkpoint
from balcon.engine.device import default_num_workers, inference_precision, resolve_device
from balcon.engine.distributed import DistContext
from balcon.engine.metrics import classification_metrics
from balcon.engine.steps import predict
from balcon.errors import BalconError
from balcon.models import BCLModel, build_model

__all__ = [
    "EVAL_BATCH",
    "Predictions",
    "eval_loader",
    "evaluate_checkpoint",
    "loader_options",
    "model_for_inference",
    "predict_images",
]

#: Images per evaluation batch (per process).
EVAL_BATCH = 256


@dataclass
class Predictions:
    """Raw logits of a held-out set, with the true labels and where each image came from."""

    logits: torch.Tensor
    labels: torch.Tensor
    sources: list[str]
    class_names: list[str]


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGTERM, SIGINT and SIGUSR1 to the main process, which
    stops at a step boundary and shuts them down (a signal sent to the whole process
    group would otherwise kill a worker mid-batch and fail that step)."""
    import signal

    from balcon.errors import STOP_SIGNALS

    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def loader_options(data: DataConfig, device: torch.device,
                   ctx: DistContext | None = None) -> dict[str, Any]:
    """DataLoader workers, pinned memory and persistent workers for ``device``.

    With ``data.num_workers`` null, each of a node's processes takes its share of the
    node's cores (see :func:`~balcon.engine.device.default_num_workers`).
    """
    ctx = ctx or DistContext()
    workers = data.num_workers
    if workers is None:
        workers = default_num_workers(device, ctx.local_world_size)
    return dict(num_workers=workers, pin_memory=device.type == "cuda",
                persistent_workers=workers > 0,
                worker_init_fn=_ignore_stop_signals if workers > 0 else None)


def eval_loader(images: ImageSet, data: DataConfig, device: torch.device,
                ctx: DistContext | None = None) -> DataLoader:
    """A deterministic loader over ``images``; sharded over the ranks of a multi-process run."""
    ctx = ctx or DistContext()
    dataset = make_eval_dataset(images, data)
    sampler = (DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank,
                                  shuffle=False) if ctx.enabled else None)
    return DataLoader(dataset, batch_size=EVAL_BATCH, shuffle=False, sampler=sampler,
                      **loader_options(data, device, ctx))


def model_for_inference(
    path: Path, device: str | None
) -> tuple[dict[str, Any], Config, BCLModel, torch.device]:
    """A checkpoint's state, config and model (on the device, in its memory format)."""
    state = load_checkpoint(path)
    cfg = run_config(state["config"], source=str(path))
    dev = resolve_device(device)
    model = build_model(cfg.model, len(state["class_names"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise BalconError(
            f"checkpoint {path} does not fit model {cfg.model.encoder}; it is incompatible"
        ) from None
    model = model.to(dev)
    if cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return state, cfg, model, dev


def _logits(model: BCLModel, images: ImageSet, cfg: Config, device: torch.device,
            desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    return predict(model, eval_loader(images, cfg.data, device), device,
                   inference_precision(device, cfg.train.precision), desc=desc,
                   channels_last=cfg.model.channels_last)


def evaluate_checkpoint(
    path: str | Path, data_dir: str | Path | None = None, device: str | None = None,
    split: str | None = None,
) -> tuple[dict[str, Any], Predictions]:
    """Metrics of a checkpoint on a split of its data (default: its report split).

    Returns the metrics (with class names and counts, the epoch and the split) and the
    per-image predictions.
    """
    path = Path(path)
    state, cfg, model, dev = model_for_inference(path, device)
    data_dir = data_dir if data_dir is not None else state.get("data_dir")
    splits = load_image_sets(cfg.data, data_dir)
    split = split or splits.report_split
    images = splits.get(split)
    names = state["class_names"]
    if images.class_names != names:
        raise BalconError(
            f"the {split} split in {data_dir} has classes {images.class_names[:3]}..., the "
            f"checkpoint {names[:3]}...; point --data-dir at the data it was trained on"
        )
    started = time.perf_counter()
    logits, labels = _logits(model, images, cfg, dev, "eval")
    metrics = classification_metrics(logits, labels, state["class_counts"])
    sources = images.paths or [f"{split}[{i}]" for i in range(len(images))]
    predictions = Predictions(logits, labels, list(sources), names)
    return {"checkpoint": str(path), "epoch": state["epoch"], "config": cfg.name,
            "method": cfg.loss.method, "split": split, "images": len(labels),
            "skipped_images": len(splits.skipped.get(split, [])),
            "seconds": time.perf_counter() - started, **metrics,
            "class_names": names, "class_counts": state["class_counts"]}, predictions


def predict_images(
    path: str | Path, inputs: list[str | Path], device: str | None = None
) -> Predictions:
    """A checkpoint's logits for unlabelled images (files, or folders searched recursively).

    The images get the run's test-time view. ``labels`` are all -1.
    """
    files = find_images(inputs)
    state, cfg, model, dev = model_for_inference(Path(path), device)
    names = state["class_names"]
    images = ImageSet(labels=np.full(len(files), -1, dtype=np.int64), class_names=names,
                      paths=files)
    logits, labels = _logits(model, images, cfg, dev, "predict")
    return Predictions(logits, labels, files, names)
