"""One pass of a checkpoint over a held-out split, keeping what a run's report draws on.

``balcon report`` needs, per image, the true class, the predicted class and the
confidence (the largest softmax probability); per class, the sum of the encoder's
features over its images (for the class-mean feature geometry), and of the contrastive
embeddings for a method that trains the projection head; and the classifier's weight
norms. :func:`report_pass` computes them in one batched pass on the best device and
caches them beside the checkpoint (``best-report-test.npz`` for ``best.pt`` on test),
keyed by the checkpoint's size and modification time, the split and the data folder; a
folder it cannot write to gets its report all the same, uncached. A current cache is
used without reading the data (a dataset whose files change in place under the same
folder is not noticed: delete the ``*-report-*.npz`` files then).
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from balcon.config import REPORT_ORDER
from balcon.data import data_dir_for, load_image_sets
from balcon.engine.metrics import classification_metrics
from balcon.errors import BalconError
from balcon.methods import METHODS
from balcon.runs.checkpoint import write_atomic
from balcon.runs.files import data_folder
from balcon.runs.inference import checkpoint_logits, model_for_inference

__all__ = ["CACHE_FORMAT", "ReportPass", "cache_path", "report_pass"]

#: Bumped when what the cache holds changes: an older cache is recomputed.
CACHE_FORMAT = "balcon-report-pass-2"
ARRAYS = ("labels", "predictions", "confidence", "feature_sums", "feature_counts",
          "embedding_sums", "weight_norms")


@dataclass
class ReportPass:
    """What one pass of a checkpoint over a split leaves (N images, C classes, F features).

    ``labels``, ``predictions`` (N,) int64; ``confidence`` (N,) float32, the largest
    softmax probability;
    ``feature_sums`` (C, F) float64, the sum of the encoder features of each true
    class's images, and ``feature_counts`` (C,) the images per class;
    ``embedding_sums`` (C, D) float64, the same sums of the contrastive embeddings (the
    projection head's L2-normalised outputs) for a method that trains that head, else
    (C, 0); ``weight_norms`` (C,) the L2 norm of each class's classifier weight row.
    ``meta``:
    checkpoint, epoch, split, data folder, class names and training counts, the
    metrics of :func:`~balcon.engine.metrics.classification_metrics`, and whether the
    pass came from the cache (``cached``).
    """

    labels: np.ndarray
    predictions: np.ndarray
    confidence: np.ndarray
    feature_sums: np.ndarray
    feature_counts: np.ndarray
    embedding_sums: np.ndarray
    weight_norms: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


def cache_path(checkpoint: Path, split: str) -> Path:
    """Where the pass of ``checkpoint`` over ``split`` is cached: beside the checkpoint."""
    return checkpoint.with_name(f"{checkpoint.stem}-report-{split}.npz")


def _fingerprint(checkpoint: Path, split: str, data_dir: str | None) -> dict[str, Any]:
    """What a cache must have been made for: this checkpoint file (size, modification
    time), the split, and the data folder given (None: the run's own)."""
    stat = checkpoint.stat()
    return {"format": CACHE_FORMAT, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "split": split, "data_dir": data_dir}


def _read_cache(path: Path, key: dict[str, Any]) -> ReportPass | None:
    """The cached pass at ``path`` when it was made for ``key``, else None."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            if meta.get("key") != key:
                return None
            arrays = {name: npz[name] for name in ARRAYS}
    except Exception:  # noqa: BLE001 - a damaged cache (cut copy, garbage) is only a miss
        return None
    return ReportPass(**arrays, meta={**meta, "cached": True})


def _write_cache(path: Path, result: ReportPass) -> bool:
    """Write the cache atomically; False (and nothing left) when the folder is not writable."""
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(result.meta)),
             **{name: getattr(result, name) for name in ARRAYS})
    try:
        write_atomic(path, lambda f: f.write(buffer.getvalue()))
    except BalconError:
        return False
    return True


class _ClassSums:
    """Per-class sums (float64, on the CPU) of the encoder features of each batch and,
    with ``head`` (the projection head), of the contrastive embeddings."""

    def __init__(self, num_classes: int, head: torch.nn.Module | None) -> None:
        self.num_classes, self.head = num_classes, head
        self.features: torch.Tensor | None = None
        self.embeddings = torch.zeros(num_classes, 0, dtype=torch.float64)

    def _add(self, sums: torch.Tensor | None, values: torch.Tensor,
             labels: torch.Tensor) -> torch.Tensor:
        values = values.double().cpu()
        if sums is None or sums.shape[1] != values.shape[1]:
            sums = torch.zeros(self.num_classes, values.shape[1], dtype=torch.float64)
        return sums.index_add_(0, labels, values)

    def __call__(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.features = self._add(self.features, features, labels)
        if self.head is not None:
            z = F.normalize(self.head(features).float(), dim=1)
            self.embeddings = self._add(self.embeddings, z, labels)


def _from_cache(checkpoint: Path, split: str | None, data_dir: str | None
                ) -> ReportPass | None:
    """The cached pass of ``checkpoint`` when current, found without reading the data:
    over ``split``, or (None) over the first of test, val, train that is cached."""
    if not checkpoint.is_file():
        return None
    for name in (split,) if split else REPORT_ORDER:
        cached = _read_cache(cache_path(checkpoint, name), _fingerprint(checkpoint, name,
                                                                        data_dir))
        if cached is not None and (split or cached.meta.get("report_split")):
            return cached
    return None


def report_pass(checkpoint: str | Path, data_dir: str | Path | None = None,
                device: str | None = None, split: str | None = None,
                use_cache: bool = True) -> ReportPass:
    """The pass of ``checkpoint`` over ``split`` (default: the run's report split) of its
    data (default: the folder it was trained on), from the cache when it is current (the
    data is then not read at all)."""
    checkpoint = Path(checkpoint)
    key_dir = data_folder(data_dir)
    if use_cache and (cached := _from_cache(checkpoint, split, key_dir)) is not None:
        return cached
    state, cfg, model, dev = model_for_inference(checkpoint, device)
    folder = data_dir_for(cfg.data, data_dir, state.get("data_dir"))
    splits = load_image_sets(cfg.data, folder)
    is_report_split = split in (None, splits.report_split)
    split = split or splits.report_split
    key = _fingerprint(checkpoint, split, key_dir)
    cache = cache_path(checkpoint, split)
    images = splits.get(split)
    names = state["class_names"]
    if images.class_names != names:
        raise BalconError(f"the {split} split in {folder} has other classes than "
                          f"{checkpoint}; point --data-dir at the data it was trained on")
    started = time.perf_counter()
    method = METHODS.get(cfg.loss.method)
    sums = _ClassSums(len(names), model.projection_head if method is not None and
                      method.contrastive else None)
    logits, labels = checkpoint_logits(state, cfg, model, images, dev, "report pass", sums)
    probs = logits.softmax(dim=1)
    weight = state["model"]["classifier.weight"].float()
    result = ReportPass(
        labels=labels.numpy().astype(np.int64),
        predictions=logits.argmax(1).numpy().astype(np.int64),
        confidence=probs.max(1).values.numpy().astype(np.float32),
        feature_sums=sums.features.numpy(),
        feature_counts=np.bincount(labels.numpy(), minlength=len(names)),
        embedding_sums=sums.embeddings.numpy(),
        weight_norms=weight.norm(dim=1).numpy().astype(np.float64),
        meta={"key": key, "checkpoint": str(checkpoint), "epoch": int(state["epoch"]),
              "split": split, "data_dir": None if folder is None else str(folder),
              "class_names": list(names),
              "class_counts": [int(n) for n in state["class_counts"]],
              "classifier": cfg.model.classifier, "report_split": is_report_split,
              "metrics": classification_metrics(logits, labels, state["class_counts"])},
    )
    result.meta["seconds"] = time.perf_counter() - started
    result.meta["device"] = str(dev)
    result.meta["cached_to"] = str(cache) if use_cache and _write_cache(cache, result) else None
    result.meta["cached"] = False
    return result
