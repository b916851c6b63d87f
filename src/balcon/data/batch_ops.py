"""The CIFAR-LT views' operations on whole batches, each sample with its own parameters.

The per-image views (:mod:`balcon.data.views`) run torchvision's transforms on one PIL
image at a time. Here every function takes a batch (B, 3, H, W) and per-sample
parameters (tensors of length B). View 1's AutoAugment ops are torchvision's own uint8
tensor kernels. The contrastive views' ops (resized crop, brightness, contrast,
saturation, hue, grayscale) are PIL's 8-bit arithmetic written for a batch: they take
and give float32 grey levels (integers in [0, 255]) rounded or truncated where PIL
does, so that a view made here equals the PIL pipeline's. Randomness is not drawn here:
:mod:`balcon.data.device_views` draws the parameters.

How they were checked (``tests/test_batch_ops.py``): at fixed parameters each operation
equals torchvision's on the same images: the AutoAugment ops its tensor implementation
exactly and its PIL implementation within 1 grey level; the contrastive views' ops its
PIL implementation exactly, on noise and on smooth images, every crop size and hue shift;
the blur (kornia's kernel, rounded) within 1 grey level on 1 pixel in 10,000.
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
    "CIFAR10_POLICY",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "autoaugment_magnitudes",
    "autoaugment_op",
    "blend",
    "cutout_mask",
    "gaussian_blur",
    "grayscale",
    "hflip_where",
    "padded_crop",
    "resized_crop",
    "to_unit",
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


def _round_half_up(x: Tensor) -> Tensor:
    """Nearest integer, halves up (C's ``round`` and ``int(x + 0.5)`` for x >= 0)."""
    return torch.floor(x + 0.5)


def to_unit(levels: Tensor) -> Tensor:
    """Grey levels (uint8, or float32 integers in [0, 255]) as float32 in [0, 1]: each
    level is exactly ``ToTensor``'s ``level / 255``, on any device. (A table made on the
    CPU: CUDA divides by a number as a multiplication by its reciprocal, which is 1 ulp
    off for about half the levels.)"""
    table = torch.arange(256, dtype=torch.float32).div_(255.0).to(levels.device)
    return table[levels.long()]


#: PIL's fixed-point precision for 8-bit resampling (``PRECISION_BITS`` in Resample.c).
_PRECISION = 22


def _axis_taps(start: Tensor, length: Tensor, size: int) -> tuple[Tensor, ...]:
    """PIL's bilinear taps along one axis for each sample's crop ``[start, start + length)``
    resized to ``size`` (no larger than ``size``, so two taps): (B, size) indices of the
    two source pixels and their fixed-point weights.

    As PIL computes them: output pixel q's centre ``c = (q + 0.5) * length / size`` (in
    float64, the crop's own coordinates), first tap ``int(c - 0.5)`` clipped at 0, the
    second the next pixel if the crop has it; weights ``1 - |j + 0.5 - c|`` clipped at 0,
    divided by their sum, scaled to ``2**22`` and rounded.
    """
    d = torch.float64
    span = length.to(d)[:, None]
    centre = (torch.arange(size, device=start.device, dtype=d) + 0.5) * (span / size)
    j0 = (centre - 0.5).trunc().clamp(min=0.0)
    j1 = torch.minimum(j0 + 1.0, span - 1.0)
    w0 = 1.0 - (j0 + 0.5 - centre).abs()
    w1 = torch.where(j1 > j0, (1.0 - (j1 + 0.5 - centre).abs()).clamp(min=0.0), 0.0)
    total = w0 + w1
    k0, k1 = ((w / total * (1 << _PRECISION) + 0.5).floor().long() for w in (w0, w1))
    first = start.long()[:, None]
    return j0.long() + first, j1.long() + first, k0, k1


def _resample_pass(levels: Tensor, dim: int, taps: tuple[Tensor, ...]) -> Tensor:
    """One of PIL's resampling passes over int64 grey levels (B, C, H, W) along ``dim``
    (3: each row's pixels, 2: each column's) with :func:`_axis_taps`' taps, rounded and
    clipped to 8 bits as PIL's fixed point does."""
    i0, i1, k0, k1 = (t[:, None, None, :] if dim == 3 else t[:, None, :, None] for t in taps)
    shape = list(levels.shape)
    shape[dim] = i0.shape[dim]

    def tap(index: Tensor) -> Tensor:
        return levels.gather(dim, index.expand(shape))

    summed = (1 << (_PRECISION - 1)) + tap(i0) * k0 + tap(i1) * k1
    return (summed >> _PRECISION).clamp_(0, 255)


def resized_crop(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Crop each sample's box ``(top, left, height, width)`` (B, 4) of the uint8 batch and
    resize it to ``size`` x ``size``, bilinear, as PIL does in torchvision's
    ``RandomResizedCrop``: a horizontal pass in PIL's fixed point, rounded to 8 bits, then
    a vertical pass, rounded again. Returns float32 grey levels (integers in [0, 255]);
    boxes no larger than ``size`` (the views' case: the images are ``size`` already).
    """
    top, left, box_h, box_w = boxes.unbind(1)
    rows = _resample_pass(images.long(), 3, _axis_taps(left, box_w, size))
    return _resample_pass(rows, 2, _axis_taps(top, box_h, size)).float()


def blend(image: Tensor, degenerate: Tensor, factor: Tensor) -> Tensor:
    """PIL's ``Image.blend(degenerate, image, factor)`` on grey levels, ``factor`` (B,) per
    sample: ``degenerate + factor * (image - degenerate)`` in float32, clipped to
    [0, 255] and truncated to an integer (ImageEnhance's brightness, contrast, colour)."""
    f = factor.float()[:, None, None, None]
    return (degenerate + f * (image - degenerate)).clamp_(0.0, 255.0).floor_()


def grayscale(levels: Tensor) -> Tensor:
    """PIL's ``convert("L")`` of RGB grey levels, (B, 1, H, W): ITU-R 601 luma in 16-bit
    fixed point, ``(19595 R + 38470 G + 7471 B + 2**15) >> 16``."""
    r, g, b = levels.to(torch.int32).unbind(-3)
    return ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16).unsqueeze(-3).float()


def adjust_brightness(levels: Tensor, factor: Tensor) -> Tensor:
    """PIL's brightness: blend with black by ``factor`` (B,)."""
    return blend(levels, torch.zeros_like(levels), factor)


def adjust_contrast(levels: Tensor, factor: Tensor) -> Tensor:
    """PIL's contrast: blend with the image's mean luma, rounded to a grey level."""
    mean = _round_half_up(grayscale(levels).mean(dim=(-3, -2, -1), keepdim=True,
                                                 dtype=torch.float64)).float()
    return blend(levels, mean, factor)


def adjust_saturation(levels: Tensor, factor: Tensor) -> Tensor:
    """PIL's colour (saturation): blend with the image's luma by ``factor`` (B,)."""
    return blend(levels, grayscale(levels), factor)


def _rgb_to_hsv(levels: Tensor) -> Tensor:
    """PIL's RGB -> HSV on grey levels: (B, 3, H, W) 8-bit H, S, V. The arithmetic is
    PIL's: float32 where it stores a float, float64 where a double literal takes part,
    hue and saturation truncated to 8 bits."""
    r, g, b = levels.unbind(-3)
    maxc = torch.maximum(torch.maximum(r, g), b)
    span = maxc - torch.minimum(torch.minimum(r, g), b)
    safe = torch.where(span > 0, span, 1.0)
    sat = span / torch.where(maxc > 0, maxc, 1.0)
    rc, gc, bc = ((maxc - c) / safe for c in (r, g, b))
    d = torch.float64
    hue = torch.where(r == maxc, (bc - gc).to(d),
                      torch.where(g == maxc, 2.0 + rc.to(d) - bc.to(d),
                                  4.0 + gc.to(d) - rc.to(d))).float()
    hue = torch.fmod(hue.to(d) / 6.0 + 1.0, 1.0).float()
    h = (hue.to(d) * 255.0).trunc().clamp(0, 255)
    s = (sat.to(d) * 255.0).trunc().clamp(0, 255)
    grey = span == 0
    return torch.stack([h.masked_fill(grey, 0.0), s.masked_fill(grey, 0.0), maxc.to(d)], -3)


def _hsv_to_rgb(hsv: Tensor) -> Tensor:
    """PIL's HSV -> RGB of 8-bit H, S, V (float64), as float32 grey levels."""
    h, s, v = hsv.unbind(-3)
    sector = torch.floor(h * 6.0 / 255.0)
    frac = (h * 6.0 / 255.0 - sector).float()
    fs = (s / 255.0).float()
    p = _round_half_up(v * (1.0 - fs.double()))
    q = _round_half_up(v * (1.0 - (fs * frac).double()))
    t = _round_half_up(v * (1.0 - fs.double() * (1.0 - frac.double())))
    p, q, t = (c.clamp(0, 255) for c in (p, q, t))
    # (R, G, B) of each sector 0..5, as PIL's switch on sector % 6
    table = torch.stack([torch.stack(c, -3) for c in (
        (v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], 0)
    index = (sector.long() % 6)[None, :, None].expand(1, *table.shape[1:])
    rgb = table.gather(0, index).squeeze(0)
    return torch.where((s == 0)[:, None], v[:, None].expand_as(rgb), rgb).float()


def adjust_hue(levels: Tensor, factor: Tensor) -> Tensor:
    """torchvision's hue adjustment of a PIL image: to PIL's 8-bit HSV, hue shifted by
    ``int(factor * 255)`` modulo 256 (``factor`` (B,) in [-0.5, 0.5]), back to RGB."""
    hsv = _rgb_to_hsv(levels)
    shift = torch.remainder((factor.double() * 255.0).trunc(), 256.0)[:, None, None]
    hsv[:, 0] = torch.remainder(hsv[:, 0] + shift, 256.0)
    return _hsv_to_rgb(hsv)


def gaussian_blur(levels: Tensor, kernel: int, sigma: Tensor) -> Tensor:
    """Gaussian blur of grey levels with a ``kernel`` x ``kernel`` window and per-sample
    ``sigma`` (B,), reflecting at the border, rounded to grey levels: torchvision's
    ``GaussianBlur`` of a PIL image (its uint8 tensor path; kornia's batched kernel)."""
    from kornia.filters import gaussian_blur2d

    return gaussian_blur2d(levels, (kernel, kernel), torch.stack([sigma, sigma], dim=1),
                           border_type="reflect").round_()
