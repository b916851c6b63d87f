"""ResNet for 32x32 inputs (He et al., "Deep Residual Learning", CVPR 2016, section 4.2).

Depth ``6n + 2``: a 3x3 stem with 16 channels, then three stages of ``n`` basic
blocks with 16, 32 and 64 channels (stride 2 at the start of stages 2 and 3), global
average pooling. ResNet-32 (n = 5) is the CIFAR-LT backbone of BCL; 20, 44, 56 and 110
follow suit.

The defaults are the LDAM-DRW ResNet-32 that BCL's CIFAR reimplementations train:
shortcuts that change shape subsample and zero-pad the channels (the paper's option A)
and every convolution is drawn ``kaiming_normal_`` with PyTorch's default fan-in mode.
The alternatives, measured on a 15-epoch CIFAR-10-LT run (BENCHMARKS.md, "Training
health"): ``shortcut="B"`` (1x1 convolution + BatchNorm on shape changes; +3.6 +- 4.5
top-1 over three seeds, not conclusive), ``conv_init="torch"`` (PyTorch's own init; 10
points worse) and ``conv_init="kaiming-fan-out"``, which makes the
stem's weights 2.3x smaller than fan-in does (within one seed's spread of fan-in).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from balcon.config.sections import CONV_INITS, SHORTCUTS

__all__ = ["CifarResNet", "resnet_cifar"]


class _BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.pad = planes - in_planes
        # option B: a strided 1x1 convolution + BatchNorm where the shape changes
        self.projection = (nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                         nn.BatchNorm2d(planes))
                           if shortcut == "B" and (stride != 1 or self.pad) else None)

    def shortcut(self, x: Tensor) -> Tensor:
        if self.projection is not None:
            return self.projection(x)
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) encoder for small images; ``forward`` returns (N, 64) features.

    Args:
        depth: total depth, ``6n + 2`` with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...).
        width: channels of the first stage (16 in the paper); stages use 1x, 2x, 4x.
        shortcut: ``"A"`` (subsample and zero-pad, parameter-free) or ``"B"`` (1x1
            convolution + BatchNorm) where a block changes the shape.
        conv_init: ``"kaiming"`` (normal, fan-in: LDAM-DRW), ``"kaiming-fan-out"``
            or ``"torch"`` (PyTorch's default init).
    """

    def __init__(self, depth: int = 32, width: int = 16, shortcut: str = "A",
                 conv_init: str = "kaiming") -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, ...), got {depth}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        if conv_init not in CONV_INITS:
            raise ValueError(f"conv_init must be one of {CONV_INITS}, got {conv_init!r}")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers: list[nn.Module] = []
        in_planes = width
        for stage, planes in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                layers.append(_BasicBlock(in_planes, planes, stride, shortcut))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.num_features = in_planes
        if conv_init != "torch":
            mode = "fan_out" if conv_init == "kaiming-fan-out" else "fan_in"
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """Pooled features (N, num_features) of images (N, 3, H, W)."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


def resnet_cifar(depth: int = 32, shortcut: str = "A", conv_init: str = "kaiming") -> CifarResNet:
    """A CIFAR ResNet of the given depth (ResNet-32 for BCL's CIFAR-LT recipe)."""
    return CifarResNet(depth, shortcut=shortcut, conv_init=conv_init)
