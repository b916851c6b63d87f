"""One epoch of training and one pass of prediction: the hot path."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from balcon.config import LossConfig
from balcon.engine.device import autocast
from balcon.losses import BalancedContrastiveLoss, LogitAdjustedLoss
from balcon.models import BCLModel

__all__ = ["Objective", "make_objective", "predict", "train_one_epoch"]


@dataclass
class Objective:
    """``alpha * classifier loss + beta * contrastive loss`` (the latter optional)."""

    classifier_loss: LogitAdjustedLoss
    contrastive_loss: BalancedContrastiveLoss | None
    alpha: float
    beta: float

    @property
    def contrastive(self) -> bool:
        """Whether the method trains the contrastive branch (three views per sample)."""
        return self.contrastive_loss is not None


def make_objective(loss: LossConfig, class_counts: list[int]) -> Objective:
    """The losses of ``loss.method``.

    ``bcl``: LA + BCL. ``bcl-no-averaging`` / ``bcl-no-complement``: BCL without one
    of its two parts. ``supcon``: LA + SupCon. ``la``: LA alone. ``ce``: plain CE.
    """
    method = loss.method
    tau = 0.0 if method == "ce" else loss.tau
    classifier = LogitAdjustedLoss(class_counts, tau=tau)
    if method in ("ce", "la"):
        return Objective(classifier, None, 1.0, 0.0)
    contrastive = BalancedContrastiveLoss(
        loss.temperature,
        class_averaging=method in ("bcl", "bcl-no-complement"),
        class_complement=method in ("bcl", "bcl-no-averaging"),
    )
    return Objective(classifier, contrastive, loss.alpha, loss.beta)


def _progress(loader: DataLoader, desc: str) -> tqdm:
    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, unit="batch",
                disable=not sys.stderr.isatty())


def train_one_epoch(
    model: BCLModel,
    loader: DataLoader,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    precision: str,
    desc: str = "train",
) -> dict[str, float]:
    """Train for one pass over ``loader``; returns mean losses, accuracy and speed.

    Speed: ``images_per_s`` (training images, each with all its views) and
    ``data_wait_share``, the fraction of the epoch spent waiting for the loader.

    Each batch is ``(views, labels)`` with 1 view (classifier only) or 3 (view 1 to
    the classifier, views 2 and 3 to the contrastive loss). All views go through
    the backbone in one forward, so BatchNorm sees them all.
    """
    model.train()
    sums = torch.zeros(4, device=device)  # loss, classifier loss, contrastive loss, correct
    seen = 0
    waited = 0.0  # seconds spent waiting for the data loader
    start = time.perf_counter()
    bar = _progress(loader, desc)
    batches = iter(bar)
    for step in range(len(loader)):
        tick = time.perf_counter()
        views, labels = next(batches)
        waited += time.perf_counter() - tick
        labels = labels.to(device, non_blocking=True)
        images = torch.cat([v.to(device, non_blocking=True) for v in views])
        batch = labels.shape[0]
        with autocast(device, precision):
            if objective.contrastive:
                projections, logits, prototypes = model(images)
            else:
                logits = model.predict(images)
        logits = logits[:batch].float()
        loss_cls = objective.classifier_loss(logits, labels)
        if objective.contrastive_loss is not None:
            pairs = torch.stack(projections[batch:].float().split(batch), dim=1)
            loss_con = objective.contrastive_loss(
                features=pairs, labels=labels, prototypes=prototypes.float()
            )
            loss = objective.alpha * loss_cls + objective.beta * loss_con
        else:
            loss_con = torch.zeros((), device=device)
            loss = loss_cls
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        with torch.no_grad():
            correct = (logits.argmax(1) == labels).sum()
            sums += torch.stack([loss.detach() * batch, loss_cls.detach() * batch,
                                 loss_con.detach() * batch, correct.float()])
        seen += batch
        if not bar.disable and (step % 10 == 0 or step == len(loader) - 1):
            s = sums.tolist()
            bar.set_postfix(loss=f"{s[0] / seen:.3f}", acc=f"{100 * s[3] / seen:.1f}",
                            img_s=f"{seen / (time.perf_counter() - start):.0f}")
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    loss, loss_cls, loss_con, correct = (v / max(seen, 1) for v in sums.tolist())
    return {
        "loss": loss,
        "loss_cls": loss_cls,
        "loss_con": loss_con if objective.contrastive else None,
        "train_acc": 100.0 * correct,
        "images_per_s": seen / elapsed,
        "train_seconds": elapsed,
        "data_wait_share": waited / elapsed,
    }


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader, device: torch.device, precision: str,
    desc: str = "eval",
) -> tuple[Tensor, Tensor]:
    """Float32 logits (N, C) and labels (N,) of every batch of ``loader``, on the CPU."""
    model.eval()
    all_logits, all_labels = [], []
    for images, labels in _progress(loader, desc):
        with autocast(device, precision):
            logits = model.predict(images.to(device, non_blocking=True))
        all_logits.append(logits.float().cpu())
        all_labels.append(labels)
    return torch.cat(all_logits), torch.cat(all_labels)
