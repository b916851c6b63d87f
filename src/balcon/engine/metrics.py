"""Accuracy of a classifier on a test set: overall, top-k, per class, per shot group."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from balcon.data.longtail import SHOT_GROUPS, shot_groups

__all__ = ["HEADLINE_KEYS", "classification_metrics", "fmt"]

#: A result's headline accuracies: overall top-1, then each shot group's.
HEADLINE_KEYS = ("top1", *SHOT_GROUPS)


def fmt(value: float | None, spec: str = ".2f") -> str:
    """An accuracy formatted by ``spec``, or ``-`` for None (an empty shot group)."""
    return "-" if value is None else format(value, spec)


def classification_metrics(
    logits: Tensor, labels: Tensor, train_counts: Sequence[int]
) -> dict[str, Any]:
    """Accuracies in percent.

    Returns ``top1``; ``top5`` with ``top5_k = min(5, C)`` (top-k accuracy);
    ``per_class`` (accuracy of each class over its test images, None for a class
    without test images); ``many``, ``medium``, ``few``: the mean of the per-class
    accuracies of the classes in each shot group (from ``train_counts``), None for a
    group without classes.
    """
    num_classes = logits.shape[1]
    if len(train_counts) != num_classes:
        raise ValueError(
            f"train_counts has {len(train_counts)} classes, logits have {num_classes}"
        )
    labels = labels.to(logits.device)
    k = min(5, num_classes)
    correct = logits.argmax(1) == labels
    in_topk = (logits.topk(k, dim=1).indices == labels[:, None]).any(1)
    hits = torch.bincount(labels[correct], minlength=num_classes).tolist()
    totals = torch.bincount(labels, minlength=num_classes).tolist()
    per_class = [100.0 * h / n if n else None for h, n in zip(hits, totals, strict=True)]
    out: dict[str, Any] = {
        "top1": 100.0 * correct.double().mean().item() if len(labels) else None,
        "top5": 100.0 * in_topk.double().mean().item() if len(labels) else None,
        "top5_k": k,
    }
    for name, members in shot_groups(train_counts).items():
        accs = [per_class[c] for c in members if per_class[c] is not None]
        out[name] = sum(accs) / len(accs) if accs else None
    out["per_class"] = per_class
    return out
