"""A checkpoint put to use: its model, its metrics on a split, its predictions for images."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from balcon.config import Config, run_config
from balcon.data import ImageSet, data_dir_for, find_images, load_image_sets
from balcon.engine.device import inference_precision, resolve_device, run_precision
from balcon.engine.loaders import eval_loader
from balcon.engine.metrics import classification_metrics
from balcon.engine.steps import predict
from balcon.errors import BalconError
from balcon.models import BCLModel, build_model
from balcon.models.finetune import apply_finetune
from balcon.runs.checkpoint import GIVE_A_CHECKPOINT, load_checkpoint

__all__ = [
    "Predictions",
    "checkpoint_logits",
    "checkpoint_precision",
    "evaluate_checkpoint",
    "model_for_inference",
    "predict_images",
]


@dataclass
class Predictions:
    """Raw logits of a held-out set, with the true labels and where each image came from."""

    logits: torch.Tensor
    labels: torch.Tensor
    sources: list[str]
    class_names: list[str]
    #: ``(path, reason)`` of each image left out because it could not be read.
    skipped: list[tuple[str, str]] = field(default_factory=list)


def model_for_inference(
    path: Path, device: str | None
) -> tuple[dict[str, Any], Config, BCLModel, torch.device]:
    """A checkpoint's state, config and model (on the device, in its memory format)."""
    state = load_checkpoint(path)
    cfg = run_config(state["config"], source=str(path))
    dev = resolve_device(device)
    model = build_model(cfg.model, len(state["class_names"]))
    apply_finetune(model, cfg.model)  # a LoRA run's adapters
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise BalconError(
            f"checkpoint {path}: its weights do not fit the model its own config builds "
            f"({cfg.model.encoder}), so it was damaged or edited; {GIVE_A_CHECKPOINT}"
        ) from None
    model = model.to(dev)
    if cfg.model.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return state, cfg, model, dev


def checkpoint_precision(state: dict[str, Any], cfg: Config, device: torch.device) -> str:
    """The precision to predict with from a checkpoint: the one its run trained with (one
    that keeps none: its config's), as ``device`` can run it."""
    return inference_precision(device, run_precision(state, cfg.train.precision, device)[0])


def checkpoint_logits(state: dict[str, Any], cfg: Config, model: BCLModel, images: ImageSet,
                      device: torch.device, desc: str,
                      after_batch: Callable[[torch.Tensor, torch.Tensor], None] | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~balcon.engine.steps.predict` of a checkpoint's model over ``images`` in the
    checkpoint's precision and test-time view (``after_batch`` as there)."""
    return predict(model, eval_loader(images, cfg.data, device), device,
                   checkpoint_precision(state, cfg, device), desc,
                   cfg.model.channels_last, after_batch=after_batch)


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
    data_dir = data_dir_for(cfg.data, data_dir, state.get("data_dir"))
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
    logits, labels = checkpoint_logits(state, cfg, model, images, dev, "eval")
    metrics = classification_metrics(logits, labels, state["class_counts"])
    sources = images.paths or [f"{split}[{i}]" for i in range(len(images))]
    predictions = Predictions(logits, labels, list(sources), names)
    return {"checkpoint": str(path), "epoch": state["epoch"], "config": cfg.name,
            "method": cfg.loss.method, "split": split, "images": len(labels),
            "skipped_images": len(splits.skipped.get(split, [])),
            "seconds": time.perf_counter() - started, **metrics,
            "class_names": names, "class_counts": state["class_counts"]}, predictions


def predict_images(
    path: str | Path, inputs: list[str | Path], device: str | None = None,
    skip_unreadable: bool = False,
) -> Predictions:
    """A checkpoint's logits for unlabelled images (files, or folders searched recursively).

    The images get the run's test-time view. ``labels`` are all -1. An image that cannot
    be read stops the prediction, or with ``skip_unreadable`` is left out (every image is
    decoded once beforehand) and listed in ``skipped``.
    """
    files = find_images(inputs)
    state, cfg, model, dev = model_for_inference(Path(path), device)
    names = state["class_names"]
    images = ImageSet(labels=np.full(len(files), -1, dtype=np.int64), class_names=names,
                      paths=files)
    skipped = []
    if skip_unreadable:
        bad = images.unreadable()
        if len(bad) == len(files):
            raise BalconError(f"none of the {len(files)} images can be read (first: "
                              f"{files[bad[0][0]]}, {bad[0][1]}); check the files")
        skipped = [(files[i], reason) for i, reason in bad]
        images = images.without([i for i, _ in bad])
    logits, labels = checkpoint_logits(state, cfg, model, images, dev, "predict")
    return Predictions(logits, labels, images.paths, names, skipped)
