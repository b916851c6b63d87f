"""One epoch of training and one pass of prediction: the hot path.

``train_step`` is one optimisation step; ``EpochMeter`` keeps the time, the progress
bar and the metric sums beside it; ``train_one_epoch`` runs the two over a loader.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from balcon.engine.device import autocast
from balcon.engine.distributed import DistContext, all_reduce_sum, gather
from balcon.engine.objective import Objective, objective_loss

__all__ = ["EpochMeter", "Interrupted", "predict", "train_one_epoch", "train_step"]


class Interrupted(Exception):  # noqa: N818 - what happened, not an error
    """A pass abandoned because the run was asked to stop."""


def _progress(loader: DataLoader, desc: str, show: bool = True) -> tqdm:
    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, unit="batch",
                disable=not (show and sys.stderr.isatty()))


class EpochMeter:
    """Timing, the progress bar and the metric sums of one training epoch.

    ``batches()`` yields the loader's batches and times the wait for each; ``add``
    sums one step's losses and correct predictions on the device (no host sync);
    ``result()`` reduces the sums over all processes. An epoch resumed mid-way starts
    from the ``state()`` of its interrupted part: its first step and its sums.
    """

    def __init__(self, loader: DataLoader, desc: str, device: torch.device,
                 ctx: DistContext, state: dict[str, Any] | None = None) -> None:
        self.loader, self.device, self.ctx = loader, device, ctx
        state = state or {}
        self.first_step = int(state.get("step", 0))
        # loss, cls loss, con loss, correct, images
        self.sums = (state["sums"].to(device) if "sums" in state
                     else torch.zeros(5, device=device))
        self.waited = float(state.get("waited", 0.0))  # seconds spent waiting for data
        self.start = time.perf_counter() - float(state.get("elapsed", 0.0))
        self.bar = _progress(loader, desc, show=ctx.is_main)
        self.step = self.first_step

    def batches(self) -> Iterator[tuple[int, tuple[list[Tensor], Tensor]]]:
        """``(step, (views, labels))`` for each remaining batch of the epoch."""
        batches = iter(self.bar)
        for step in range(self.first_step, self.first_step + len(self.loader)):
            tick = time.perf_counter()
            batch = next(batches)
            self.waited += time.perf_counter() - tick
            yield step, batch

    def state(self) -> dict[str, Any]:
        """Where the epoch stands: steps done, this rank's sums, its time so far."""
        return {"step": self.step, "sums": self.sums.detach().cpu().clone(),
                "waited": self.waited, "elapsed": time.perf_counter() - self.start}

    @torch.no_grad()
    def add(self, step: int, losses: tuple[Tensor, Tensor, Tensor], correct: Tensor,
            batch: int) -> None:
        """Count one step: its (total, classifier, contrastive) losses and correct count."""
        loss, loss_cls, loss_con = (x.detach() * batch for x in losses)
        self.sums += torch.stack([loss, loss_cls, loss_con, correct.float(),
                                  torch.tensor(float(batch), device=self.device)])
        self.step = step + 1
        if not self.bar.disable and (step % 10 == 0 or self.step == self.first_step
                                     + len(self.loader)):
            s = self.sums.tolist()
            rate = s[4] * self.ctx.world_size / (time.perf_counter() - self.start)
            self.bar.set_postfix(loss=f"{s[0] / s[4]:.3f}", acc=f"{100 * s[3] / s[4]:.1f}",
                                 img_s=f"{rate:.0f}")

    def result(self, contrastive: bool) -> dict[str, float | None]:
        """Mean losses and accuracy over every process's images, and the speed."""
        self.bar.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - self.start
        all_reduce_sum(self.sums)
        seen = max(self.sums[4].item(), 1.0)
        loss, loss_cls, loss_con, correct = (v / seen for v in self.sums[:4].tolist())
        return {
            "loss": loss,
            "loss_cls": loss_cls,
            "loss_con": loss_con if contrastive else None,
            "train_acc": 100.0 * correct,
            "images_per_s": seen / elapsed,
            "train_seconds": elapsed,
            "data_wait_share": self.waited / elapsed,
        }


def train_step(
    model: nn.Module, images: Tensor, labels: Tensor, objective: Objective,
    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, precision: str,
) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
    """One optimisation step on ``images`` (the views stacked along the batch).

    Returns the (total, classifier, contrastive) losses and how many view-1 images
    the classifier got right.
    """
    batch = labels.shape[0]
    with autocast(images.device, precision):
        projections, logits, prototypes = model(images, **objective.forward_parts())
    logits = logits[:batch].float()
    losses = objective_loss(objective, logits, labels,
                            None if projections is None else projections[batch:], prototypes)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses[0]).backward()
    scaler.step(optimizer)
    scaler.update()
    return losses, (logits.detach().argmax(1) == labels).sum()


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
    resume: dict[str, Any] | None = None,
    after_step: Callable[[EpochMeter], bool] | None = None,
) -> dict[str, float | None] | EpochMeter:
    """Train for one pass over ``loader``; returns mean losses, accuracy and speed.

    ``lr_of_step(step)`` (0-based batch of this epoch), when given, sets the learning
    rate of every parameter group before each batch (the per-batch warm-up).
    ``resume`` (an :meth:`EpochMeter.state`) continues an epoch interrupted after that
    many steps; ``loader`` then yields only the remaining batches. ``after_step(meter)``
    runs after every step; when it returns True the epoch stops there and the meter
    (its ``state()``, not reduced over the ranks) is returned instead of the stats.

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
    meter = EpochMeter(loader, desc, device, ctx, resume)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for step, (views, labels) in meter.batches():
        if lr_of_step is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_of_step(step)
        labels = labels.to(device, non_blocking=True)
        images = torch.cat([v.to(device, non_blocking=True) for v in views])
        images = images.contiguous(memory_format=memory_format)
        losses, correct = train_step(model, images, labels, objective, optimizer, scaler,
                                     precision)
        meter.add(step, losses, correct, labels.shape[0])
        if after_step is not None and after_step(meter):
            meter.bar.close()
            return meter
    return meter.result(objective.contrastive)


@torch.no_grad()
def predict(
    model: nn.Module, loader: DataLoader, device: torch.device, precision: str,
    desc: str = "eval", channels_last: bool = False, ctx: DistContext | None = None,
    stop: Callable[[], bool] | None = None,
) -> tuple[Tensor, Tensor]:
    """Float32 logits (N, C) and labels (N,) of the whole set of ``loader``, on the CPU.

    ``stop()``, asked after each batch (on every rank alike), abandons the pass with
    :class:`Interrupted` (a preempted run must stop within seconds).

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
        if stop is not None and stop():
            raise Interrupted("evaluation")
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
