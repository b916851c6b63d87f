"""One epoch of training and one pass of prediction: the hot path."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from balcon.config import LossConfig
from balcon.engine.device import autocast
from balcon.engine.distributed import DistContext, all_reduce_sum, gather, gather_with_grad
from balcon.losses import BalancedContrastiveLoss, LogitAdjustedLoss

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


def _progress(loader: DataLoader, desc: str, show: bool = True) -> tqdm:
    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, unit="batch",
                disable=not (show and sys.stderr.isatty()))


def objective_loss(
    objective: Objective, logits: Tensor, labels: Tensor,
    projections: Tensor | None = None, prototypes: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(total, classifier, contrastive)`` losses of one batch (this rank's part of it).

    ``logits`` (B, C) are view 1's; ``projections`` (2B, D) stack views 2 and 3. In a
    multi-process run the contrastive loss sees the global batch: every rank's
    projections and labels are gathered (the former with gradients) first.
    """
    loss_cls = objective.classifier_loss(logits, labels)
    if objective.contrastive_loss is None or projections is None or prototypes is None:
        return loss_cls, loss_cls, torch.zeros((), device=logits.device)
    batch = labels.shape[0]
    pairs = torch.stack(projections.float().split(batch), dim=1)
    loss_con = objective.contrastive_loss(
        features=gather_with_grad(pairs), labels=gather(labels), prototypes=prototypes.float()
    )
    return objective.alpha * loss_cls + objective.beta * loss_con, loss_cls, loss_con


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    precision: str,
    desc: str = "train",
    channels_last: bool = False,
    ctx: DistContext | None = None,
    lr_of_step: Callable[[int], float] | None = None,
) -> dict[str, float]:
    """Train for one pass over ``loader``; returns mean losses, accuracy and speed.

    ``lr_of_step(step)`` (0-based batch of this epoch), when given, sets the learning
    rate of every parameter group before each batch (the per-batch warm-up).

    Speed: ``images_per_s`` (training images, each with all its views, over all
    ranks) and ``data_wait_share``, the fraction of the epoch this process spent
    waiting for its loader.

    Each batch is ``(views, labels)`` with 1 view (classifier only) or 3 (view 1 to
    the classifier, views 2 and 3 to the contrastive loss). All views go through
    the backbone in one forward, so BatchNorm sees them all. ``model`` is a
    :class:`BCLModel`, or one wrapped in DistributedDataParallel.
    """
    ctx = ctx or DistContext()
    model.train()
    sums = torch.zeros(5, device=device)  # loss, cls loss, con loss, correct, images
    waited = 0.0  # seconds spent waiting for the data loader
    start = time.perf_counter()
    bar = _progress(loader, desc, show=ctx.is_main)
    batches = iter(bar)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for step in range(len(loader)):
        if lr_of_step is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_of_step(step)
        tick = time.perf_counter()
        views, labels = next(batches)
        waited += time.perf_counter() - tick
        labels = labels.to(device, non_blocking=True)
        images = torch.cat([v.to(device, non_blocking=True) for v in views])
        images = images.contiguous(memory_format=memory_format)
        batch = labels.shape[0]
        with autocast(device, precision):
            projections, logits, prototypes = model(images, heads=objective.contrastive)
        logits = logits[:batch].float()
        loss, loss_cls, loss_con = objective_loss(
            objective, logits, labels,
            None if projections is None else projections[batch:], prototypes,
        )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        with torch.no_grad():
            correct = (logits.argmax(1) == labels).sum()
            sums += torch.stack([loss.detach() * batch, loss_cls.detach() * batch,
                                 loss_con.detach() * batch, correct.float(),
                                 torch.tensor(float(batch), device=device)])
        if not bar.disable and (step % 10 == 0 or step == len(loader) - 1):
            s = sums.tolist()
            bar.set_postfix(loss=f"{s[0] / s[4]:.3f}", acc=f"{100 * s[3] / s[4]:.1f}",
                            img_s=f"{s[4] * ctx.world_size / (time.perf_counter() - start):.0f}")
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    all_reduce_sum(sums)
    seen = max(sums[4].item(), 1.0)
    loss, loss_cls, loss_con, correct = (v / seen for v in sums[:4].tolist())
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
    desc: str = "eval", channels_last: bool = False, ctx: DistContext | None = None,
) -> tuple[Tensor, Tensor]:
    """Float32 logits (N, C) and labels (N,) of the whole set of ``loader``, on the CPU.

    In a multi-process run ``loader`` holds a ``DistributedSampler`` (no shuffle):
    each rank predicts its share, the shares are gathered, the sampler's padding
    duplicates are dropped and the rows put back in dataset order, so every rank
    returns what a single process would.
    """
    ctx = ctx or DistContext()
    model.eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    all_logits, all_labels = [], []
    for images, labels in _progress(loader, desc, show=ctx.is_main):
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        with autocast(device, precision):
            logits = model.predict(images)
        if ctx.enabled:  # gathered on the device below
            all_logits.append(logits.float())
            all_labels.append(labels.to(device))
        else:  # a large set's logits need not stay on the device
            all_logits.append(logits.float().cpu())
            all_labels.append(labels)
    logits, labels = torch.cat(all_logits), torch.cat(all_labels)
    if not ctx.enabled:
        return logits, labels
    size = len(loader.dataset)
    # DistributedSampler(shuffle=False): rank r's k-th sample is position r + k * world
    # of the dataset order padded by repeating its start; positions >= size are padding.
    positions = ctx.rank + ctx.world_size * torch.arange(len(labels), device=device)
    positions, logits, labels = gather(positions), gather(logits), gather(labels)
    keep = positions < size
    order = positions[keep].argsort()
    return logits[keep][order].cpu(), labels[keep][order].cpu()
