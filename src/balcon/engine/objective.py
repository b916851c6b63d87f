"""A method's objective: its table entry (``balcon.methods``) turned into loss modules.

``LOSSES`` maps the loss names the method table uses to builders; a builder takes the
run's ``loss`` config, the training set's class counts and the term's fixed options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from balcon.config import LossConfig
from balcon.engine.distributed import gather, gather_with_grad
from balcon.errors import BalconError
from balcon.losses import BalancedContrastiveLoss, LogitAdjustedLoss
from balcon.methods import METHODS, Method

__all__ = ["LOSSES", "Objective", "make_objective", "objective_loss"]

LossBuilder = Callable[..., nn.Module]


def _logit_adjusted(cfg: LossConfig, class_counts: list[int], **options: object) -> nn.Module:
    return LogitAdjustedLoss(class_counts, **{"tau": cfg.tau, **options})


def _balanced_contrastive(cfg: LossConfig, class_counts: list[int],
                          **options: object) -> nn.Module:
    return BalancedContrastiveLoss(**{"temperature": cfg.temperature, **options})


#: Loss name -> ``builder(loss_config, class_counts, **term_options)``. A loss on logits
#: is called ``loss(logits, labels)``; one on projections ``loss(features, labels)``
#: with ``features`` (B, 2, D), plus ``prototypes=`` (C, D) when the method has them.
LOSSES: dict[str, LossBuilder] = {
    "logit-adjusted": _logit_adjusted,
    "balanced-contrastive": _balanced_contrastive,
}


@dataclass
class Objective:
    """The weighted sum of a method's losses; ``losses[i]`` computes ``method.terms[i]``."""

    method: Method
    losses: list[nn.Module]
    weights: list[float]

    @property
    def contrastive(self) -> bool:
        """Whether the method trains the contrastive branch (three views per sample)."""
        return self.method.contrastive

    def forward_parts(self) -> dict[str, bool]:
        """The keyword arguments of ``BCLModel.forward`` that run this method's parts."""
        parts = self.method.parts
        return {"project": "projection_head" in parts, "prototypes": "prototype_head" in parts}

    def to(self, device: torch.device) -> Objective:
        """Move the losses' buffers (the class prior) to ``device``."""
        for loss in self.losses:
            loss.to(device)
        return self


def make_objective(cfg: LossConfig, class_counts: list[int]) -> Objective:
    """The losses of ``cfg.method`` with their weights, as the method table gives them.

    Refuses an entry whose losses and parts disagree: a loss that uses the prototypes
    (``uses_prototypes``, e.g. BCL's class-complement) needs the ``prototype_head``
    part, and that part needs such a loss (else DDP would wait for its gradient).
    """
    if cfg.method not in METHODS:
        raise BalconError(f"loss.method {cfg.method!r} is not in the method table; register "
                          "it (balcon.methods.register) before training or resuming with it")
    method = METHODS[cfg.method]
    losses, weights = [], []
    for term in method.terms:
        if term.loss not in LOSSES:
            raise BalconError(f"method {method.name!r} names loss {term.loss!r}, which "
                              f"LOSSES lacks; add it there (losses: {', '.join(LOSSES)})")
        losses.append(LOSSES[term.loss](cfg, class_counts, **dict(term.options)))
        weight = getattr(cfg, term.weight) if isinstance(term.weight, str) else term.weight
        weights.append(float(weight))
    uses = any(getattr(loss, "uses_prototypes", False) for loss in losses)
    if uses != ("prototype_head" in method.parts):
        raise BalconError(
            f"method {method.name!r}: its losses {'use' if uses else 'do not use'} the "
            f"prototypes, so its parts must {'' if uses else 'not '}include prototype_head"
        )
    return Objective(method, losses, weights)


def objective_loss(
    objective: Objective, logits: Tensor, labels: Tensor,
    projections: Tensor | None = None, prototypes: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(total, classifier, contrastive)`` losses of one batch (this rank's part of it).

    ``logits`` (B, C) are view 1's; ``projections`` (2B, D) stack views 2 and 3. The
    classifier and contrastive parts are the unweighted sums of the terms on logits
    and on projections. In a multi-process run a loss on projections sees the global
    batch: every rank's projections and labels are gathered (the former with
    gradients) first.
    """
    values = []
    for term, loss in zip(objective.method.terms, objective.losses, strict=True):
        if term.on == "logits":
            values.append(loss(logits, labels))
            continue
        if projections is None:
            raise ValueError(f"method {objective.method.name!r} needs projections")
        pairs = torch.stack(projections.float().split(labels.shape[0]), dim=1)
        extra = {} if prototypes is None else {"prototypes": prototypes.float()}
        values.append(loss(gather_with_grad(pairs), gather(labels), **extra))
    # every value first, then the weighted sum: the graph (and so the bits) of balcon 0.3
    weighted = [v if w == 1.0 and len(values) == 1 else w * v
                for v, w in zip(values, objective.weights, strict=True)]
    total = weighted[0]
    for item in weighted[1:]:
        total = total + item
    zero = torch.zeros((), device=logits.device)
    parts = [sum((v for t, v in zip(objective.method.terms, values, strict=True)
                  if t.on == on), zero) for on in ("logits", "projections")]
    return total, parts[0], parts[1]
