"""Each batched view operation at fixed parameters against torchvision on the same images.

Tolerances (grey levels of 255): the AutoAugment ops equal torchvision's tensor ops
exactly (AutoContrast within 1: v2 and v1 round differently) and its PIL ops within 1.
The contrastive views' ops (resized crop, brightness, contrast, saturation, hue,
grayscale) equal torchvision's PIL path exactly, 8-bit rounding included, on random and
smooth images, every crop size and image sizes from 8 to 100; the blur equals it within
1 level on 1 pixel in 10,000 (torchvision blurs a PIL image through its uint8 tensor
path).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import noise_and_walks
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TV
from torchvision.transforms.autoaugment import _apply_op

from balcon.data import batch_ops as ops


def images(n: int = 8) -> np.ndarray:
    """(n, 32, 32, 3) uint8: colour gradients plus noise (edges, flats and every hue)."""
    out = []
    for seed in range(n):
        rng = np.random.RandomState(seed)
        ramp = np.linspace(0, 255, 32)
        base = ramp[None, :, None] * rng.rand(1, 1, 3) + ramp[:, None, None] * rng.rand(1, 1, 3)
        out.append(np.clip(0.6 * base + rng.randint(0, 80, (32, 32, 3)), 0, 255))
    return np.stack(out).astype(np.uint8)


PIXELS = images()
UINT8 = torch.from_numpy(PIXELS).permute(0, 3, 1, 2).contiguous()


def levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Absolute differences in grey levels (uint8 or [0, 1] floats)."""
    scale = 1.0 if a.dtype == torch.uint8 else 255.0
    return (a.float() - b.float()).abs() * scale


SPACE = ops.autoaugment_magnitudes(32, 32)
CASES = [(op, sign * (mags[5] if len(mags) > 1 else 0.0))
         for op, (mags, signed) in SPACE.items() for sign in ((1, -1) if signed else (1,))]


@pytest.mark.parametrize("op,magnitude", CASES)
def test_autoaugment_ops_equal_torchvisions(op: str, magnitude: float):
    ours = ops.autoaugment_op(UINT8.clone(), op, magnitude)
    tensor = torch.stack([_apply_op(x, op, magnitude, InterpolationMode.NEAREST, None)
                          for x in UINT8])
    pil = torch.stack([TV.pil_to_tensor(_apply_op(Image.fromarray(a), op, magnitude,
                                                  InterpolationMode.NEAREST, None))
                       for a in PIXELS])
    assert levels(ours, tensor).max() <= (1 if op == "AutoContrast" else 0)
    assert levels(ours, pil).max() <= 1


def test_the_policy_is_torchvisions_cifar10_policy():
    from torchvision.transforms import AutoAugment, AutoAugmentPolicy

    assert ops.CIFAR10_POLICY == AutoAugment(AutoAugmentPolicy.CIFAR10).policies
    assert len(ops.CIFAR10_POLICY) == 25 and all(len(s) == 2 for s in ops.CIFAR10_POLICY)
    assert {op for sub in ops.CIFAR10_POLICY for op, _, _ in sub} <= set(ops.AUTOAUGMENT_OPS)


def test_padded_crop_flip_and_cutout_equal_torchvisions():
    top, left = torch.tensor([0, 8, 3, 5, 1, 7, 4, 2]), torch.tensor([8, 0, 5, 3, 2, 6, 4, 1])
    ours = ops.padded_crop(UINT8, top, left, padding=4)
    padded = TV.pad(UINT8, [4])
    ref = torch.stack([TV.crop(p, int(t), int(u), 32, 32)
                       for p, t, u in zip(padded, top, left, strict=True)])
    assert torch.equal(ours, ref)
    flip = torch.tensor([True, False] * 4)
    flipped = ops.hflip_where(UINT8, flip)
    assert torch.equal(flipped[0], TV.hflip(UINT8[0])) and torch.equal(flipped[1], UINT8[1])
    from balcon.data.views import Cutout

    cy, cx = torch.tensor([0, 31, 16, 5, 8, 20, 3, 28]), torch.tensor([16, 2, 31, 0, 8, 9, 30, 7])
    mask = ops.cutout_mask(32, 32, cy, cx, 16)
    for b in range(8):  # the reference draws its centre; give it ours
        centre = iter([int(cy[b]), int(cx[b])])
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(torch, "randint", lambda *a, it=centre, **k: torch.tensor([next(it)]))
            ref = Cutout(16)(torch.ones(3, 32, 32))
        assert torch.equal(mask[b, 0], ref[0] == 0)


MANY = noise_and_walks(48, seed=1)
MANY_LEVELS = torch.from_numpy(MANY).permute(0, 3, 1, 2).float()
DRAWS = torch.Generator().manual_seed(2)


def pil_many(fn) -> torch.Tensor:
    """``fn(image, i)`` on each of ``MANY`` as PIL, back as (B, 3, H, W) grey levels."""
    return torch.stack([TV.pil_to_tensor(fn(Image.fromarray(a), i))
                        for i, a in enumerate(MANY)]).float()


def test_resized_crop_equals_pils():
    """Every box shape from 1 x 1 to the whole image: PIL's two 8-bit passes, exactly."""
    n = len(MANY)
    h = torch.randint(1, 33, (n,), generator=DRAWS)
    w = torch.randint(1, 33, (n,), generator=DRAWS)
    top = (torch.rand(n, generator=DRAWS) * (33 - h)).long()
    left = (torch.rand(n, generator=DRAWS) * (33 - w)).long()
    boxes = torch.stack([top, left, h, w], 1)
    boxes[0] = torch.tensor([0, 0, 32, 32])
    ours = ops.resized_crop(MANY_LEVELS.to(torch.uint8), boxes, 32)
    pil = pil_many(lambda im, i: TV.resized_crop(im, *boxes[i].tolist(), [32, 32],
                                                 InterpolationMode.BILINEAR))
    assert torch.equal(ours, pil)
    assert torch.equal(ours[0], MANY_LEVELS[0])  # the whole image is itself


@pytest.mark.parametrize("size", [8, 28, 48, 100])
def test_resized_crop_equals_pils_at_other_sizes(size: int):
    """Sizes whose scale is not a power of two: PIL's fixed-point weights, not floats."""
    pixels = noise_and_walks(12, seed=size, size=size)
    g = torch.Generator().manual_seed(size)
    h, w = torch.randint(1, size + 1, (24,), generator=g), torch.randint(1, size + 1, (24,),
                                                                       generator=g)
    top = (torch.rand(24, generator=g) * (size + 1 - h)).long()
    left = (torch.rand(24, generator=g) * (size + 1 - w)).long()
    boxes = torch.stack([top, left, h, w], 1)
    ours = ops.resized_crop(torch.from_numpy(pixels).permute(0, 3, 1, 2), boxes, size)
    pil = torch.stack([TV.pil_to_tensor(TV.resized_crop(
        Image.fromarray(a), *boxes[i].tolist(), [size, size], InterpolationMode.BILINEAR))
        for i, a in enumerate(pixels)]).float()
    assert torch.equal(ours, pil)


def test_levels_to_unit_is_to_tensors_division():
    every = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(ops.to_unit(every), TV.to_tensor(every.numpy()[:, None, None]).flatten())
    assert torch.equal(ops.to_unit(every.float()), ops.to_unit(every))


@pytest.mark.parametrize("name", ["brightness", "contrast", "saturation"])
def test_colour_adjustments_equal_pils(name: str):
    factors = 0.6 + 0.8 * torch.rand(len(MANY), generator=DRAWS)
    factors[:3] = torch.tensor([1.0, 0.6, 1.4])
    ours = getattr(ops, f"adjust_{name}")(MANY_LEVELS.clone(), factors)
    ref_fn = getattr(TV, f"adjust_{name}")
    assert torch.equal(ours, pil_many(lambda im, i: ref_fn(im, float(factors[i]))))
    assert torch.equal(ours[0], MANY_LEVELS[0])  # factor 1 keeps the image
    assert torch.equal(getattr(ops, f"adjust_{name}")(MANY_LEVELS.clone(), factors.double()),
                       ours)  # float32 arithmetic, as PIL's, whatever the factors' dtype


@pytest.mark.parametrize("low,high", [(-0.1, 0.1), (-0.5, 0.5)])
def test_hue_equals_pils_8_bit_hsv(low: float, high: float):
    hue = low + (high - low) * torch.rand(len(MANY), generator=DRAWS)
    ours = ops.adjust_hue(MANY_LEVELS.clone(), hue)
    assert torch.equal(ours, pil_many(lambda im, i: TV.adjust_hue(im, float(hue[i]))))


def test_grayscale_and_blur_equal_pils():
    gray = ops.grayscale(MANY_LEVELS).expand_as(MANY_LEVELS)
    assert torch.equal(gray, pil_many(lambda im, i: TV.rgb_to_grayscale(im, 3)))
    sigma = 0.1 + 1.9 * torch.rand(len(MANY), generator=DRAWS)
    blurred = ops.gaussian_blur(MANY_LEVELS, 3, sigma)
    pil = pil_many(lambda im, i: TV.gaussian_blur(im, [3, 3], [float(sigma[i])] * 2))
    assert (blurred - pil).abs().max() <= 1 and (blurred != pil).float().mean() < 1e-4
