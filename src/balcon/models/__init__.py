"""Backbones and the BCL model."""

from __future__ import annotations

import re

from torch import nn

from balcon.config import ModelConfig
from balcon.errors import BalconError
from balcon.models.bcl import BCLModel, CosineClassifier, mlp_head
from balcon.models.resnet_cifar import CifarResNet, resnet_cifar

__all__ = [
    "BCLModel",
    "CifarResNet",
    "CosineClassifier",
    "build_encoder",
    "build_model",
    "mlp_head",
    "resnet_cifar",
]


def build_encoder(name: str) -> nn.Module:
    """A backbone by name: ``resnet32`` (any CIFAR ResNet-(6n+2)) or ``timm:<model>``.

    A timm model is created without pretrained weights and without its classifier,
    so it returns pooled features (e.g. ``timm:resnext50_32x4d`` for ImageNet-LT).
    """
    match = re.fullmatch(r"resnet(\d+)", name)
    if match and (int(match.group(1)) - 2) % 6 == 0 and int(match.group(1)) >= 8:
        return resnet_cifar(int(match.group(1)))
    if name.startswith("timm:"):
        import timm

        try:
            return timm.create_model(name[5:], pretrained=False, num_classes=0)
        except RuntimeError as err:
            raise BalconError(f"model.encoder {name!r}: {err}; see timm.list_models()") from None
    raise BalconError(
        f"model.encoder {name!r} is unknown; use resnet<6n+2> (resnet20, resnet32, ...) "
        "or timm:<model name>"
    )


def build_model(cfg: ModelConfig, num_classes: int) -> BCLModel:
    """The :class:`BCLModel` that ``cfg`` describes, for ``num_classes`` classes."""
    return BCLModel(
        build_encoder(cfg.encoder),
        num_classes,
        classifier=cfg.classifier,
        cosine_scale=cfg.cosine_scale,
        head_hidden=cfg.head_hidden,
        head_dim=cfg.head_dim,
    )
