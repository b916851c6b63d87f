"""The BCL model: one backbone, a classifier branch and a contrastive branch.

As in the official code (``FlamieZhu/BCL``, ``models/resnext.py``, ``BCLModel``): the
classifier maps backbone features to logits; a projection MLP maps them to the
L2-normalised embedding of the contrastive loss; a second MLP of the same shape maps
each classifier weight row to its class prototype, L2-normalised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BCLModel", "CosineClassifier", "mlp_head"]


class CosineClassifier(nn.Module):
    r"""Cosine ("normed linear") classifier: :math:`s \cdot \hat{x} \cdot \hat{w}_k`.

    Logits are bounded by the scale ``s`` in absolute value. The class vectors start
    as the official ``NormedLinear``'s: uniform(-1, 1), each scaled to norm 1. The
    logits ignore their norm, but the effective step of a scale-invariant weight
    grows as 1 / norm^2: uniform(+-1/sqrt(F)) (norm ~0.58, a 3x larger effective
    step) trained worse (BENCHMARKS.md, "Training health").

    Args:
        in_features: feature dimension.
        num_classes: number of classes C; ``weight`` is (C, in_features).
        scale: the scale ``s`` (30 in BCL).
    """

    def __init__(self, in_features: int, num_classes: int, scale: float = 30.0) -> None:
        super().__init__()
        weight = torch.empty(num_classes, in_features).uniform_(-1.0, 1.0)
        self.weight = nn.Parameter(F.normalize(weight, dim=1))
        self.scale = float(scale)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, C) of features (N, in_features)."""
        return self.scale * F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).T


def mlp_head(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear -> BatchNorm -> ReLU -> Linear (the projection and prototype heads)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )


class BCLModel(nn.Module):
    """Backbone + classifier + projection head + prototype head.

    Args:
        encoder: module mapping images (N, 3, H, W) to features (N, F).
        num_classes: number of classes C.
        feature_dim: F; read from ``encoder.num_features`` when omitted.
        classifier: ``"cosine"`` (BCL's normed linear, scaled) or ``"linear"``.
        cosine_scale: scale of the cosine classifier (30).
        head_hidden: hidden width of both MLP heads (512 on CIFAR, 2048 on ImageNet).
        head_dim: output dimension of both heads (128 on CIFAR, 1024 on ImageNet).

    ``forward(x)`` returns ``(projections, logits, prototypes)``: (N, head_dim)
    L2-normalised, (N, C), and (C, head_dim) L2-normalised; ``predict(x)`` the logits.
    Both heads always exist (so any checkpoint loads under any method); ``forward``
    runs the ones it is asked for.
    """

    def __init__(
        self,
        encoder: nn.Module,
        num_classes: int,
        feature_dim: int | None = None,
        classifier: str = "cosine",
        cosine_scale: float = 30.0,
        head_hidden: int = 512,
        head_dim: int = 128,
    ) -> None:
        super().__init__()
        if feature_dim is None:
            feature_dim = getattr(encoder, "num_features", None)
            if not isinstance(feature_dim, int):
                raise ValueError("feature_dim is required: the encoder has no int num_features")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if classifier == "cosine":
            self.classifier: nn.Module = CosineClassifier(feature_dim, num_classes, cosine_scale)
        elif classifier == "linear":
            self.classifier = nn.Linear(feature_dim, num_classes)
        else:
            raise ValueError(f"classifier must be 'cosine' or 'linear', got {classifier!r}")
        self.encoder = encoder
        self.num_classes = num_classes
        self.projection_head = mlp_head(feature_dim, head_hidden, head_dim)
        self.prototype_head = mlp_head(feature_dim, head_hidden, head_dim)
        #: modules that stay in eval mode (a frozen encoder's: ``balcon.models.finetune``)
        self.frozen_modules: list[nn.Module] = []
        #: ``forward`` is given the encoder's features, not images (a linear probe's cache)
        self.takes_features = False

    def train(self, mode: bool = True) -> BCLModel:
        """Train mode, but for :attr:`frozen_modules`, which stay in eval mode."""
        super().train(mode)
        for module in self.frozen_modules:
            module.train(False)
        return self

    def prototypes(self) -> Tensor:
        """L2-normalised class prototypes (C, head_dim) from the classifier weights."""
        return F.normalize(self.prototype_head(self.classifier.weight), dim=1)

    def forward(
        self, x: Tensor, project: bool = True, prototypes: bool = True
    ) -> tuple[Tensor | None, Tensor, Tensor | None]:
        """``(projections, logits, prototypes)`` for images ``x``.

        ``project=False`` skips the projection head and ``prototypes=False`` the
        prototype head; what is skipped comes back as ``None``. A method runs only the
        parts it trains (``balcon.methods``), through ``forward`` so that
        DistributedDataParallel sees the call.
        """
        feats = x if self.takes_features else self.encoder(x)
        # projection head first: the order sets how autograd sums the two branches'
        # gradients into ``feats``; it is kept so that runs stay bit for bit (CHANGELOG 0.2)
        projections = F.normalize(self.projection_head(feats), dim=1) if project else None
        logits = self.classifier(feats)
        return projections, logits, self.prototypes() if prototypes else None

    def predict(self, x: Tensor) -> Tensor:
        """Logits alone (skips both heads); predict with ``argmax`` of these."""
        return self.classifier(self.encoder(x))
