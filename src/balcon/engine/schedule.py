"""Learning-rate schedule: linear warm-up stepped per batch, then step decay or cosine per epoch."""

from __future__ import annotations

import math

from balcon.config import OptimConfig

__all__ = ["lr_at"]


def lr_at(optim: OptimConfig, epoch: int, epochs: int, step: int | None = None,
          steps_per_epoch: int = 1) -> float:
    """Learning rate of batch ``step`` (0-based; None: the last) of 0-based ``epoch``.

    With ``W = optim.warmup_epochs``, ``S = steps_per_epoch`` and ``lr = optim.lr``:

    - warm-up, ``epoch < W``: ``lr * (epoch * S + step + 1) / (W * S)``, a linear rise
      every batch from ``lr / (W S)`` at the first to ``lr`` at the last batch of epoch
      ``W - 1``. With ``S = 1`` this is the published per-epoch warm-up
      ``lr * (epoch + 1) / W``, which every batch of an epoch then shares (and which is
      also each epoch's last value in the per-batch rise);
    - after it, per epoch: ``step`` schedule: ``lr * gamma ** k`` with k the number of
      ``optim.milestones`` at or below ``epoch`` (the CIFAR recipe: x0.1 from 0-based
      epoch 160 and again from 180); ``cosine``: ``lr * (1 + cos(pi * (epoch - W) /
      max(1, epochs - W))) / 2``, which is ``lr`` at epoch ``W`` and, at the last epoch,
      ``lr * (1 + cos(pi * (1 - 1 / (epochs - W)))) / 2`` (not 0).
    """
    if epoch < optim.warmup_epochs:
        step = steps_per_epoch - 1 if step is None else step
        done = epoch * steps_per_epoch + step + 1
        return optim.lr * done / (optim.warmup_epochs * steps_per_epoch)
    if optim.schedule == "cosine":
        span = max(1, epochs - optim.warmup_epochs)
        return optim.lr * 0.5 * (1 + math.cos(math.pi * (epoch - optim.warmup_epochs) / span))
    return optim.lr * optim.gamma ** sum(epoch >= m for m in optim.milestones)
