"""torchvision's ImageNet ResNets (ResNet, ResNeXt, Wide ResNet) as feature encoders.

BCL's ImageNet-LT and iNaturalist 2018 backbones are ResNet-50 and ResNeXt-50
(32x4d), 2048 features each. The names are torchvision's own model names whose
builder returns a :class:`torchvision.models.ResNet` (every such model has an ``fc``
head); the encoder is built without weights and with ``fc`` replaced by an identity,
so it returns the pooled features. Pretrained weights come separately, through
:func:`balcon.models.load_pretrained`.
"""

from __future__ import annotations

from functools import lru_cache

from torch import nn

__all__ = ["torchvision_resnet", "torchvision_resnet_names"]


@lru_cache(maxsize=1)
def torchvision_resnet_names() -> tuple[str, ...]:
    """Sorted names of torchvision's ResNet-family classification models.

    These are the models registered in ``torchvision.models`` whose builder lives in
    ``torchvision.models.resnet`` (``resnet18`` ... ``resnet152``, ``resnext*``,
    ``wide_resnet*``): all of them are :class:`torchvision.models.ResNet` with an ``fc``.
    """
    import torchvision.models as tvm

    return tuple(
        name
        for name in sorted(tvm.list_models(module=tvm))
        if tvm.get_model_builder(name).__module__ == tvm.resnet.__name__
    )


def torchvision_resnet(name: str) -> nn.Module:
    """torchvision model ``name`` (see :func:`torchvision_resnet_names`) as an encoder.

    Built with ``weights=None``; ``fc`` becomes :class:`torch.nn.Identity`, so the
    encoder maps (N, 3, H, W) images to (N, num_features) pooled features, and its
    ``num_features`` attribute is the old ``fc.in_features`` (2048 for ``resnet50``).
    """
    import torchvision.models as tvm

    if name not in torchvision_resnet_names():
        raise ValueError(
            f"{name!r} is not a torchvision ResNet; use one of "
            f"{', '.join(torchvision_resnet_names())}"
        )
    model = tvm.get_model(name, weights=None)
    num_features = int(model.fc.in_features)
    model.fc = nn.Identity()
    model.num_features = num_features
    return model
