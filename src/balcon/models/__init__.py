"""Backbones, the BCL model, and pretrained encoder weights."""

from __future__ import annotations

import re

from torch import nn

from balcon.config import ModelConfig
from balcon.errors import BalconError
from balcon.models.bcl import BCLModel, CosineClassifier, mlp_head
from balcon.models.pretrained import load_pretrained
from balcon.models.resnet_cifar import CifarResNet, resnet_cifar
from balcon.models.resnet_torchvision import torchvision_resnet, torchvision_resnet_names

__all__ = [
    "BCLModel",
    "CifarResNet",
    "CosineClassifier",
    "build_encoder",
    "build_model",
    "check_encoder",
    "load_pretrained",
    "mlp_head",
    "resnet_cifar",
    "torchvision_resnet",
    "torchvision_resnet_names",
]

_ACCEPTED = (
    "use cifar_resnet<6n+2> or resnet<6n+2> (CIFAR ResNets: resnet8, resnet20, resnet32, "
    "...), a torchvision ResNet ({tv}), or timm:<model name>"
)


def _cifar_depth(text: str) -> int | None:
    depth = int(text)
    return depth if depth >= 8 and (depth - 2) % 6 == 0 else None


def _unknown(name: str, why: str = "is unknown") -> BalconError:
    tv = ", ".join(torchvision_resnet_names())
    return BalconError(f"model.encoder {name!r} {why}; " + _ACCEPTED.format(tv=tv))


def _cifar_resnet_depth(name: str) -> int | None:
    """Depth of the CIFAR ResNet ``name`` names (torchvision's names excluded by the
    caller), None when it names none."""
    match = re.fullmatch(r"cifar_resnet(\d+)", name)
    if match:
        depth = _cifar_depth(match.group(1))
        if depth is None:
            raise _unknown(name, "is not a CIFAR ResNet depth (6n + 2, n >= 1)")
        return depth
    match = re.fullmatch(r"resnet(\d+)", name)
    return _cifar_depth(match.group(1)) if match else None


def build_encoder(name: str, shortcut: str = ModelConfig.shortcut,
                  conv_init: str = ModelConfig.conv_init) -> nn.Module:
    """A feature encoder by name, without pretrained weights; it has ``num_features``.

    ``shortcut`` and ``conv_init`` shape the CIFAR ResNets (see :class:`CifarResNet`);
    other encoders keep their own design and refuse values other than the defaults.

    Names resolve in this order:

    - ``cifar_resnetN``: the CIFAR ResNet of depth N = 6n + 2 (64 features);
    - a torchvision ResNet-family name (``resnet50``, ``resnext50_32x4d``,
      ``wide_resnet50_2``, ...; see :func:`torchvision_resnet_names`): that model with
      ``fc`` replaced by an identity (2048 features for ResNet-50 and ResNeXt-50);
    - ``resnetN`` with N = 6n + 2 that torchvision does not name (``resnet8``,
      ``resnet20``, ``resnet32``, ...): the CIFAR ResNet (``resnet50`` and
      ``resnet152`` are torchvision's; ``cifar_resnet50`` is the CIFAR one);
    - ``timm:<model>``: a timm model without its classifier, so it returns pooled
      features (e.g. ``timm:resnext50_32x4d``).

    Anything else is a :class:`~balcon.errors.BalconError` listing these forms.
    """
    kind, depth = _encoder_kind(name, shortcut, conv_init)
    if kind == "cifar":
        return resnet_cifar(depth, shortcut=shortcut, conv_init=conv_init)
    if kind == "torchvision":
        return torchvision_resnet(name)
    import timm

    try:  # a ViT takes any image size its patches divide (its position embedding resized)
        try:
            return timm.create_model(name[5:], pretrained=False, num_classes=0,
                                     dynamic_img_size=True)
        except TypeError:  # a model without that option (CNNs take any size anyway)
            return timm.create_model(name[5:], pretrained=False, num_classes=0)
    except RuntimeError as err:
        raise BalconError(f"model.encoder {name!r}: {err}; see timm.list_models()") from None


def _encoder_kind(name: str, shortcut: str, conv_init: str) -> tuple[str, int]:
    """``("cifar", depth)``, ``("torchvision", 0)`` or ``("timm", 0)`` for the encoder
    ``name``; a name of none of :func:`build_encoder`'s forms, or ``shortcut`` and
    ``conv_init`` other than the defaults for an encoder that is not a CIFAR ResNet, is
    a :class:`~balcon.errors.BalconError`."""
    torchvision_name = name in torchvision_resnet_names()
    depth = None if torchvision_name else _cifar_resnet_depth(name)
    if depth is not None:
        return "cifar", depth
    if not torchvision_name and not name.startswith("timm:"):
        raise _unknown(name)
    defaults = (ModelConfig.shortcut, ModelConfig.conv_init)
    if (shortcut, conv_init) != defaults:
        raise BalconError(
            f"model.shortcut and model.conv_init shape the CIFAR ResNets only; model.encoder "
            f"{name!r} has its own: leave them at {defaults[0]} and {defaults[1]}"
        )
    return ("torchvision", 0) if torchvision_name else ("timm", 0)


def check_encoder(cfg: ModelConfig) -> None:
    """Refuse ``cfg``'s encoder (its name, shortcut and init) as :func:`build_encoder`
    would, without building it, so a run refuses it before it writes anything (a timm
    name with a source, ``timm:hf-hub:...``, is left to the build)."""
    kind, _ = _encoder_kind(cfg.encoder, cfg.shortcut, cfg.conv_init)
    if kind == "timm" and ":" not in cfg.encoder[5:]:
        import timm

        if not timm.is_model(cfg.encoder[5:]):
            raise BalconError(f"model.encoder {cfg.encoder!r}: timm has no such model; "
                              "see timm.list_models()")


def build_model(cfg: ModelConfig, num_classes: int) -> BCLModel:
    """The :class:`BCLModel` that ``cfg`` describes, for ``num_classes`` classes.

    The encoder starts from random weights: ``cfg.pretrained`` is applied by the
    training engine (:func:`load_pretrained`) for new runs only, since evaluation and
    resumed runs take every weight from a checkpoint.
    """
    return BCLModel(
        build_encoder(cfg.encoder, shortcut=cfg.shortcut, conv_init=cfg.conv_init),
        num_classes,
        classifier=cfg.classifier,
        cosine_scale=cfg.cosine_scale,
        head_hidden=cfg.head_hidden,
        head_dim=cfg.head_dim,
    )
