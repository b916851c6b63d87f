"""The hot path: a method's objective, one training step, and prediction over a set.

:func:`step_loss` is the paper's objective, ``alpha * L_cls + beta * L_con``, for one
batch; :func:`train_step` one optimisation step with it; :func:`predict` the logits of
a whole set and :func:`evaluate` their accuracies (every evaluation of balcon: during
training, the final test, ``eval``, ``predict`` and the report's pass).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from balcon.config import LossConfig
from balcon.engine.device import autocast
from balcon.engine.distributed import DistContext, gather, gather_with_grad
from balcon.engine.metrics import classification_metrics
from balcon.errors import BalconError
from balcon.losses import CLASSIFIER_LOSSES, BalancedContrastiveLoss
from balcon.methods import METHODS, Method

__all__ = ["Objective", "evaluate", "make_objective", "predict", "progress", "step_loss",
           "train_step"]


def progress(items: Iterable, desc: str, show: bool = True, **kw: Any) -> tqdm:
    """A progress bar over ``items``, shown only on a terminal (and ``show``)."""
    return tqdm(items, desc=desc, leave=False, dynamic_ncols=True,
                disable=not (show and sys.stderr.isatty()), **kw)


@dataclass
class Objective:
    """A method's losses and weights, made for one run's classes (:func:`make_objective`)."""

    method: Method
    classifier_loss: nn.Module
    #: the balanced contrastive loss; None for a method without the contrastive term
    contrastive_loss: BalancedContrastiveLoss | None
    alpha: float
    beta: float

    def forward_parts(self) -> dict[str, bool]:
        """The keyword arguments of ``BCLModel.forward`` that run this method's parts."""
        parts = self.method.parts
        return {"project": "projection_head" in parts, "prototypes": "prototype_head" in parts}


def make_objective(cfg: LossConfig, class_counts: list[int],
                   device: torch.device | None = None) -> Objective:
    """The objective of ``cfg.method`` for a training set of ``class_counts`` images a class."""
    method = METHODS.get(cfg.method)
    if method is None or method.classifier_loss not in CLASSIFIER_LOSSES:
        missing = (f"loss.method {cfg.method!r} is not in the method table; register it "
                   "(balcon.methods.register)" if method is None else
                   f"method {method.name!r} names classifier loss {method.classifier_loss!r}"
                   ", which balcon.losses.CLASSIFIER_LOSSES lacks; add it there")
        raise BalconError(f"{missing} before training or resuming with it")
    tau = cfg.tau if method.logit_adjusted else 0.0
    classifier = CLASSIFIER_LOSSES[method.classifier_loss](class_counts, tau).to(device)
    contrastive = BalancedContrastiveLoss(cfg.temperature, method.class_averaging,
                                          method.class_complement) \
        if method.contrastive else None
    return Objective(method, classifier, contrastive,
                     cfg.alpha if method.alpha is None else method.alpha,
                     cfg.beta if method.beta is None else method.beta)


def step_loss(objective: Objective, logits: Tensor, labels: Tensor,
              projections: Tensor | None, prototypes: Tensor | None
              ) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(alpha * L_cls + beta * L_con, L_cls, L_con)`` of one batch (this rank's part).

    ``logits`` (B, C) are view 1's, ``projections`` (2B, D) stack views 2 and 3, and
    ``prototypes`` (C, D) come with class-complement. ``L_con`` is None for a method
    without the contrastive term. In a multi-process run the contrastive loss sees the
    global batch: every rank's projections (with their gradients) and labels.
    """
    loss_cls = objective.classifier_loss(logits, labels)  # logit-adjusted CE on view 1
    if objective.contrastive_loss is None:
        return objective.alpha * loss_cls, loss_cls, None
    pairs = torch.stack(projections.float().split(labels.shape[0]), dim=1)  # (B, 2, D)
    loss_con = objective.contrastive_loss(  # balanced contrastive loss on views 2 and 3
        gather_with_grad(pairs), gather(labels),
        None if prototypes is None else prototypes.float())
    return objective.alpha * loss_cls + objective.beta * loss_con, loss_cls, loss_con


def train_step(model: nn.Module, images: Tensor, labels: Tensor, objective: Objective,
               optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
               precision: str) -> tuple[tuple[Tensor, Tensor, Tensor | None], Tensor]:
    """One optimisation step on ``images`` (the views stacked along the batch).

    Returns :func:`step_loss`'s losses and how many view-1 images the classifier got
    right. All views go through the backbone in one forward, so BatchNorm sees them all.
    """
    batch = labels.shape[0]
    with autocast(images.device, precision):
        projections, logits, prototypes = model(images, **objective.forward_parts())
    logits = logits[:batch].float()
    losses = step_loss(objective, logits, labels,
                       None if projections is None else projections[batch:], prototypes)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses[0]).backward()
    scaler.step(optimizer)
    scaler.update()
    return losses, (logits.detach().argmax(1) == labels).sum()


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: torch.device, precision: str,
            desc: str = "eval", channels_last: bool = False, ctx: DistContext | None = None,
            after_batch: Callable[[Tensor, Tensor], None] | None = None,
            ) -> tuple[Tensor, Tensor]:
    """Float32 logits (N, C) and labels (N,) of the whole set of ``loader``, on the CPU.

    ``after_batch(features, labels)`` sees each batch's encoder features (under the
    same autocast) and may raise to abandon the pass (a preempted run stops within
    seconds; every rank calls it alike). In a multi-process run ``loader`` holds a
    ``DistributedSampler`` (no shuffle): each rank predicts its share, the shares are
    gathered, the sampler's padding dropped and the rows put back in dataset order,
    so every rank returns what a single process would.
    """
    ctx = ctx or DistContext()
    model.eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    all_logits, all_labels = [], []
    for images, labels in progress(loader, desc, show=ctx.is_main, unit="batch"):
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        with autocast(device, precision):
            features = model.encoder(images)
            logits = model.classifier(features)
            if after_batch is not None:
                after_batch(features, labels)
        # gathered on the device below; one process's go to the CPU as they come
        keep = device if ctx.enabled else torch.device("cpu")
        all_logits.append(logits.float().to(keep))
        all_labels.append(labels.to(keep))
    logits, labels = torch.cat(all_logits), torch.cat(all_labels)
    if not ctx.enabled:
        return logits, labels
    # DistributedSampler(shuffle=False): rank r's k-th sample is position r + k * world
    # of the dataset order padded by repeating its start; positions >= size are padding.
    positions = ctx.rank + ctx.world_size * torch.arange(len(labels), device=device)
    positions, logits, labels = gather(positions), gather(logits), gather(labels)
    keep = positions < len(loader.dataset)
    order = positions[keep].argsort()
    return logits[keep][order].cpu(), labels[keep][order].cpu()


def evaluate(model: nn.Module, loader: DataLoader, counts: list[int], precision: str,
             device: torch.device, ctx: DistContext | None = None, desc: str = "eval",
             channels_last: bool = False,
             after_batch: Callable[[Tensor, Tensor], None] | None = None,
             ) -> tuple[dict[str, Any], Tensor, Tensor]:
    """The accuracies (``classification_metrics``, shot groups from ``counts``) of
    ``model`` on the whole set of ``loader``, with its logits and labels (:func:`predict`)."""
    logits, labels = predict(model, loader, device, precision, desc, channels_last, ctx,
                             after_batch)
    return classification_metrics(logits, labels, counts), logits, labels
