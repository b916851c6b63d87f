"""Each batched view operation at fixed parameters against torchvision on the same images.

Tolerances (grey levels of 255): the AutoAugment ops equal torchvision's tensor ops
exactly (AutoContrast within 1: v2 and v1 round differently) and its PIL ops within 1;
the resized crop, brightness, contrast, saturation, grayscale and blur equal
torchvision's float tensor path within 0.05 and its PIL path (which rounds to 8 bits
after each step) within 1.1; the hue equals the tensor path within 0.05 and the PIL
path (8-bit HSV) within 7, 0.6 on average.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
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
FLOAT = UINT8.float() / 255


def levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Absolute differences in grey levels (uint8 or [0, 1] floats)."""
    scale = 1.0 if a.dtype == torch.uint8 else 255.0
    return (a.float() - b.float()).abs() * scale


def pil_each(fn) -> torch.Tensor:
    """``fn`` on each image as PIL, back as a [0, 1] float batch."""
    return torch.stack([TV.to_tensor(fn(Image.fromarray(a), i)) for i, a in enumerate(PIXELS)])


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


def test_resized_crop_equals_torchvisions():
    boxes = torch.tensor([[0, 0, 32, 32], [3, 5, 10, 12], [10, 2, 20, 30], [0, 0, 5, 5],
                          [7, 7, 25, 25], [1, 2, 31, 30], [4, 4, 16, 8], [0, 20, 32, 12]])
    ours = ops.resized_crop(FLOAT, boxes, 32)
    tensor = torch.stack([TV.resized_crop(x, *b.tolist(), [32, 32], InterpolationMode.BILINEAR,
                                          antialias=True)
                          for x, b in zip(FLOAT, boxes, strict=True)])
    pil = pil_each(lambda im, i: TV.resized_crop(im, *boxes[i].tolist(), [32, 32],
                                                 InterpolationMode.BILINEAR))
    assert levels(ours, tensor).max() <= 0.05
    assert levels(ours, pil).max() <= 1.1
    assert torch.equal(ours[0], FLOAT[0])  # the whole image is itself


FACTORS = torch.tensor([0.6, 0.8, 1.0, 1.2, 1.4, 0.7, 1.3, 0.9])


@pytest.mark.parametrize("name", ["brightness", "contrast", "saturation"])
def test_colour_adjustments_equal_torchvisions(name: str):
    ours = getattr(ops, f"adjust_{name}")(FLOAT.clone(), FACTORS)
    ref_fn = getattr(TV, f"adjust_{name}")
    tensor = torch.stack([ref_fn(x, float(f)) for x, f in zip(FLOAT, FACTORS, strict=True)])
    pil = pil_each(lambda im, i: ref_fn(im, float(FACTORS[i])))
    assert levels(ours, tensor).max() <= 0.05
    assert levels(ours, pil).max() <= 1.1
    assert torch.equal(getattr(ops, f"adjust_{name}")(FLOAT, torch.ones(8)), FLOAT)


def test_hue_grayscale_and_blur_equal_torchvisions():
    hue = torch.tensor([-0.1, -0.05, 0.0, 0.02, 0.05, 0.1, -0.07, 0.08])
    ours = ops.adjust_hue(FLOAT.clone(), hue)
    tensor = torch.stack([TV.adjust_hue(x, float(h)) for x, h in zip(FLOAT, hue, strict=True)])
    pil = pil_each(lambda im, i: TV.adjust_hue(im, float(hue[i])))
    assert levels(ours, tensor).max() <= 0.05
    assert levels(ours, pil).max() <= 7 and levels(ours, pil).mean() <= 0.6
    gray = ops.grayscale(FLOAT).expand_as(FLOAT)
    assert levels(gray, pil_each(lambda im, i: TV.rgb_to_grayscale(im, 3))).max() <= 1.1
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 0.3, 0.8, 1.9])
    blurred = ops.gaussian_blur(FLOAT, 3, sigma)
    tensor = torch.stack([TV.gaussian_blur(x, [3, 3], [float(s)] * 2)
                          for x, s in zip(FLOAT, sigma, strict=True)])
    assert levels(blurred, tensor).max() <= 0.05
    pil = pil_each(lambda im, i: TV.gaussian_blur(im, [3, 3], [float(sigma[i])] * 2))
    assert levels(blurred, pil).max() <= 1.1
