"""The CIFAR-LT views' operations on whole batches, each sample with its own parameters.

The per-image views (:mod:`balcon.data.views`) run torchvision's transforms on one PIL
image at a time. Here every function takes a batch (B, 3, H, W) and per-sample
parameters (tensors of length B) and calls torchvision's (or kornia's) batched kernels;
what is written here is only the bookkeeping that gives each sample its own parameters.
Randomness is not drawn here: :mod:`balcon.data.device_views` draws the parameters.

How they were checked (``tests/test_batch_ops.py``): at fixed parameters each operation
equals torchvision's on the same image: exactly for the AutoAugment operations against
torchvision's tensor implementation, within a stated tolerance against its PIL
implementation (which rounds to 8 bits after every step).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import AutoAugment, AutoAugmentPolicy, InterpolationMode
from torchvision.transforms.v2 import functional as TF

__all__ = [
    "AUTOAUGMENT_OPS",
    "autoaugment_op",
    "blend",
    "cutout_mask",
    "gaussian_blur",
    "grayscale",
    "hflip_where",
    "padded_crop",
    "resized_crop",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "CIFAR10_POLICY",
    "autoaugment_magnitudes",
]

#: torchvision's CIFAR-10 AutoAugment policy: 25 sub-policies of two
#: ``(op name, probability, magnitude bin or None)`` each.
CIFAR10_POLICY: list[tuple[tuple[str, float, int | None], ...]] = list(
    AutoAugment(AutoAugmentPolicy.CIFAR10).policies)


def autoaugment_magnitudes(height: int, width: int) -> dict[str, tuple[list[float], bool]]:
    """torchvision's AutoAugment magnitude bins per op (10 bins) and whether it is signed."""
    space = AutoAugment(AutoAugmentPolicy.CIFAR10)._augmentation_space(10, (height, width))
    return {name: (mags.flatten().tolist(), signed) for name, (mags, signed) in space.items()}


def _shear(img: Tensor, shear: list[float]) -> Tensor:
    return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=shear,
                     interpolation=InterpolationMode.NEAREST, center=[0, 0])


def _translate(img: Tensor, translate: list[int]) -> Tensor:
    return TF.affine(img, angle=0.0, translate=translate, scale=1.0, shear=[0.0, 0.0],
                     interpolation=InterpolationMode.NEAREST)


#: AutoAugment's ops as torchvision applies them (``torchvision.transforms.autoaugment.
#: _apply_op``, NEAREST interpolation, fill 0): ``op(batch uint8, magnitude)``.
AUTOAUGMENT_OPS = {
    "ShearX": lambda x, m: _shear(x, [math.degrees(math.atan(m)), 0.0]),
    "ShearY": lambda x, m: _shear(x, [0.0, math.degrees(math.atan(m))]),
    "TranslateX": lambda x, m: _translate(x, [int(m), 0]),
    "TranslateY": lambda x, m: _translate(x, [0, int(m)]),
    "Rotate": lambda x, m: TF.rotate(x, m, interpolation=InterpolationMode.NEAREST),
    "Brightness": lambda x, m: TF.adjust_brightness(x, 1.0 + m),
    "Color": lambda x, m: TF.adjust_saturation(x, 1.0 + m),
    "Contrast": lambda x, m: TF.adjust_contrast(x, 1.0 + m),
    "Sharpness": lambda x, m: TF.adjust_sharpness(x, 1.0 + m),
    "Posterize": lambda x, m: TF.posterize(x, int(m)),
    "Solarize": lambda x, m: TF.solarize(x, m),
    "AutoContrast": lambda x, m: TF.autocontrast(x),
    "Equalize": lambda x, m: TF.equalize(x),
    "Invert": lambda x, m: TF.invert(x),
}


def autoaugment_op(images: Tensor, op: str, magnitude: float) -> Tensor:
    """AutoAugment op ``op`` at ``magnitude`` on a uint8 batch (B, 3, H, W)."""
    return AUTOAUGMENT_OPS[op](images, magnitude)


def padded_crop(images: Tensor, top: Tensor, left: Tensor, padding: int) -> Tensor:
    """``RandomCrop(size, padding)``: zero-pad by ``padding``, crop H x W at (top, left)."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = top[:, None] + torch.arange(height, device=images.device)
    cols = left[:, None] + torch.arange(width, device=images.device)
    b = torch.arange(batch, device=images.device)[:, None, None]
    # advanced indices around the channel slice: the result is (B, H, W, C)
    return padded[b, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def hflip_where(images: Tensor, flip: Tensor) -> Tensor:
    """Mirror the samples where ``flip`` (B,) is true."""
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def cutout_mask(height: int, width: int, cy: Tensor, cx: Tensor, length: int) -> Tensor:
    """(B, 1, H, W) true inside each sample's ``length`` square centred at (cy, cx),
    clipped at the border (DeVries & Taylor's Cutout, as :class:`~balcon.data.views.Cutout`)."""
    half = length // 2
    rows = torch.arange(height, device=cy.device)[None, :]
    cols = torch.arange(width, device=cx.device)[None, :]
    in_rows = (rows >= cy[:, None] - half) & (rows < cy[:, None] + half)
    in_cols = (cols >= cx[:, None] - half) & (cols < cx[:, None] + half)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def resized_crop(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Crop each sample's box ``(top, left, height, width)`` (B, 4) and resize it to
    ``size`` x ``size``, bilinear: torchvision's ``resized_crop`` (crop, then resize) for
    boxes no larger than ``size`` (the views' case: the images are ``size`` already).

    Each output pixel centre maps to ``top + (q + 0.5) * height / size - 0.5`` in the
    source (half-pixel convention, as PIL and ``interpolate(align_corners=False)``),
    clamped to the box so that only the crop's own pixels count; ``grid_sample`` then
    interpolates every sample's grid in one call.
    """
    batch, _, height, width = images.shape
    top, left, box_h, box_w = boxes.to(images.dtype).unbind(1)
    q = torch.arange(size, device=images.device, dtype=images.dtype) + 0.5
    ys = (top[:, None] + q * (box_h / size)[:, None] - 0.5)
    ys = torch.minimum(torch.maximum(ys, top[:, None]), (top + box_h - 1)[:, None])
    xs = (left[:, None] + q * (box_w / size)[:, None] - 0.5)
    xs = torch.minimum(torch.maximum(xs, left[:, None]), (left + box_w - 1)[:, None])
    grid = torch.stack([
        (2 * xs / max(width - 1, 1) - 1)[:, None, :].expand(batch, size, size),
        (2 * ys / max(height - 1, 1) - 1)[:, :, None].expand(batch, size, size),
    ], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                         align_corners=True)


def blend(a: Tensor, b: Tensor, ratio: Tensor) -> Tensor:
    """``ratio * a + (1 - ratio) * b`` clamped to [0, 1] (torchvision's ``_blend``),
    ``ratio`` (B,) per sample, for float images in [0, 1]."""
    r = ratio[:, None, None, None]
    return (r * a + (1.0 - r) * b).clamp_(0.0, 1.0)


def grayscale(images: Tensor) -> Tensor:
    """ITU-R 601 luma of float RGB images, (B, 1, H, W) (torchvision's weights)."""
    r, g, b = images.unbind(-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    """torchvision's brightness: blend with black by ``factor`` (B,)."""
    return blend(images, torch.zeros_like(images), factor)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """torchvision's contrast: blend with the image's mean grey level by ``factor`` (B,)."""
    mean = grayscale(images).mean(dim=(-3, -2, -1), keepdim=True)
    return blend(images, mean, factor)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    """torchvision's saturation: blend with the grey image by ``factor`` (B,)."""
    return blend(images, grayscale(images), factor)


def adjust_hue(images: Tensor, factor: Tensor) -> Tensor:
    """torchvision's hue: rotate the HSV hue by ``factor`` (B,) turns (in [-0.5, 0.5]);
    kornia's batched kernel, which takes the angle in radians."""
    from kornia.enhance import adjust_hue as kornia_adjust_hue

    return kornia_adjust_hue(images, factor * (2.0 * math.pi)).clamp_(0.0, 1.0)


def gaussian_blur(images: Tensor, kernel: int, sigma: Tensor) -> Tensor:
    """Gaussian blur with a ``kernel`` x ``kernel`` window and per-sample ``sigma`` (B,),
    reflecting at the border (torchvision's ``GaussianBlur``; kornia's batched kernel)."""
    from kornia.filters import gaussian_blur2d

    return gaussian_blur2d(images, (kernel, kernel), torch.stack([sigma, sigma], dim=1),
                           border_type="reflect")
