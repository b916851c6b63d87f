"""Learning-rate schedule: linear warm-up, then step decay or cosine, set per epoch."""

from __future__ import annotations

import math

from balcon.config import OptimConfig

__all__ = ["lr_at"]


def lr_at(optim: OptimConfig, epoch: int, epochs: int) -> float:
    """Learning rate of 0-based ``epoch`` out of ``epochs``.

    Warm-up: ``lr * (epoch + 1) / warmup_epochs`` for the first epochs. Then ``step``
    multiplies by ``gamma`` once per milestone reached (the CIFAR recipe: x0.1 from
    epoch 160 and again from 180, 0-based) and ``cosine`` decays to 0 at the end.
    """
    if epoch < optim.warmup_epochs:
        return optim.lr * (epoch + 1) / optim.warmup_epochs
    if optim.schedule == "cosine":
        span = max(1, epochs - optim.warmup_epochs)
        return optim.lr * 0.5 * (1 + math.cos(math.pi * (epoch - optim.warmup_epochs) / span))
    return optim.lr * optim.gamma ** sum(epoch >= m for m in optim.milestones)
