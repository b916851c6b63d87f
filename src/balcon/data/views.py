"""Augmented views of the CIFAR-LT recipe of BCL, built from torchvision transforms.

View 1 (classifier): RandomCrop(size, padding 4), horizontal flip, AutoAugment with
torchvision's CIFAR-10 policy, Cutout (one 16x16 hole). Views 2 and 3 ("sim", the
SimCLR / MoCo v2 view, contrastive branch): RandomResizedCrop(size, scale), flip,
ColorJitter(0.4, 0.4, 0.4, 0.1) with p = 0.8, RandomGrayscale p = 0.2, optional
Gaussian blur. All randomness comes from torch's generator, so a sample's views are
fixed by the seed set before its transform runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch import Tensor
from torchvision import transforms as T

from balcon.config.sections import CUTOUT_FILLS

__all__ = ["Cutout", "FitSize", "check_views", "normalized_tensor", "sim_view", "strong_view",
           "test_view"]


class Cutout:
    """Zero one ``length`` x ``length`` square at a uniformly drawn centre of a CHW tensor.

    DeVries & Taylor, "Improved Regularization of Convolutional Neural Networks with
    Cutout", 2017; the square is clipped at the image border, as in their code.
    """

    def __init__(self, length: int = 16) -> None:
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.length = length

    def __call__(self, img: Tensor) -> Tensor:
        """``img`` with the hole cut out (a copy)."""
        h, w = img.shape[-2:]
        cy = int(torch.randint(h, (1,)))
        cx = int(torch.randint(w, (1,)))
        half = self.length // 2
        out = img.clone()
        out[..., max(cy - half, 0):min(cy + half, h), max(cx - half, 0):min(cx + half, w)] = 0
        return out

    def __repr__(self) -> str:
        return f"Cutout(length={self.length})"


class FitSize:
    """Resize (shorter side) and centre-crop a PIL image to ``size``; no-op when it fits."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._fit = T.Compose([T.Resize(size), T.CenterCrop(size)])

    def __call__(self, img: Image.Image) -> Image.Image:
        """``img`` at ``size`` x ``size``."""
        if img.size == (self.size, self.size):
            return img
        return self._fit(img)

    def __repr__(self) -> str:
        return f"FitSize({self.size})"


def normalized_tensor(mean: Sequence[float], std: Sequence[float]) -> list[Callable]:
    """The last steps of every view: to a float tensor, normalised by ``mean`` and ``std``."""
    return [T.ToTensor(), T.Normalize(mean, std)]


def check_views(views: int) -> None:
    """Views a training sample brings: 1 (view 1) or 3 (view 1 and the contrastive pair)."""
    if views not in (1, 3):
        raise ValueError(f"views must be 1 or 3, got {views}")


#: View 1's crop padding and Cutout side in pixels (the recipe's, at 32 px); both
#: pipelines read them here.
CROP_PADDING = 4
CUTOUT = 16


def blur_kernel(size: int) -> int:
    """The optional blur's kernel side at ``size``: odd, about a tenth of the image."""
    return max(3, (size // 10) | 1)


def strong_view(
    size: int, mean: Sequence[float], std: Sequence[float], hflip: bool = True,
    cutout: int = CUTOUT, cutout_fill: str = "black",
) -> T.Compose:
    """View 1: crop with padding, flip, AutoAugment (CIFAR-10 policy), Cutout.

    ``cutout_fill`` ``black`` cuts before normalising (the published order: the hole is
    black); ``mean`` cuts after (the hole is 0 after normalising: the mean colour).
    """
    if cutout_fill not in CUTOUT_FILLS:
        raise ValueError(f"cutout_fill must be one of {CUTOUT_FILLS}, got {cutout_fill!r}")
    steps: list[Callable] = [FitSize(size), T.RandomCrop(size, padding=CROP_PADDING)]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    steps.append(T.AutoAugment(T.AutoAugmentPolicy.CIFAR10))
    steps.append(T.ToTensor())
    normalize = T.Normalize(mean, std)
    steps += [Cutout(cutout), normalize] if cutout_fill == "black" else [normalize, Cutout(cutout)]
    return T.Compose(steps)


def sim_view(
    size: int, mean: Sequence[float], std: Sequence[float], hflip: bool = True,
    crop_scale: Sequence[float] = (0.08, 1.0), blur_prob: float = 0.0,
) -> T.Compose:
    """Views 2 and 3: resized crop, flip, colour jitter p=0.8, grayscale p=0.2, blur."""
    steps: list[Callable] = [FitSize(size), T.RandomResizedCrop(size, scale=tuple(crop_scale))]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    steps.append(T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8))
    steps.append(T.RandomGrayscale(p=0.2))
    if blur_prob > 0:
        blur = T.GaussianBlur(blur_kernel(size), sigma=(0.1, 2.0))
        steps.append(T.RandomApply([blur], p=blur_prob))
    return T.Compose(steps + normalized_tensor(mean, std))


def test_view(size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """Evaluation: fit to ``size``, normalise."""
    return T.Compose([FitSize(size), *normalized_tensor(mean, std)])
