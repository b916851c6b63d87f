"""The ``device`` pipeline: the training set resident on the device, views made a batch at a time.

``data.pipeline=device`` decodes the training images once into a uint8 tensor
(N, 3, S, S) on the training device (CIFAR pickles and ImageFolder copies, the digits,
any folder after its resize and centre-crop to S) and makes each batch's views there,
with the same recipe as the per-image ``workers`` views (:mod:`balcon.data.views`):

- view 1: pad-4 random crop, flip, the CIFAR-10 AutoAugment policy (each sample draws
  its own sub-policy; each of its two ops applies with its own probability; samples
  are grouped by op and magnitude, one call per group), Cutout 16, normalise;
- views 2 and 3: RandomResizedCrop (per-sample boxes, torchvision's ten tries and
  fallback), flip, ColorJitter(0.4, 0.4, 0.4, 0.1) with p = 0.8 (per-sample factors and
  order), grayscale p = 0.2, optional blur, normalise; each step on 8-bit grey levels,
  rounded as PIL rounds them, so that at the same parameters a view equals torchvision's
  PIL transforms' bit for bit (the blur, off in the recipe, within one grey level). Before
  0.9 these views kept floats, and a model trained 200 epochs on them told them from
  PIL's (BENCHMARKS.md).

Randomness is per sample and keyed by (seed, epoch, sample index), as in the per-image
pipeline, through a counter-based hash (integer arithmetic, the same bits on CPU and
CUDA): a sample's views do not depend on the batch it lands in, the number of
processes or a resume (bit for bit on the CPU; on CUDA up to the kernels' own
choices). They are not the per-image pipeline's draws (that one uses torch's generator
per sample); they follow the same distributions, which the tests
check over 10,000+ draws.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from balcon.config import DataConfig
from balcon.data import batch_ops as ops
from balcon.data.batch_ops import CIFAR10_POLICY
from balcon.data.datasets import EpochSampler
from balcon.data.sources import ImageSet
from balcon.data.views import CROP_PADDING, CUTOUT, FitSize, blur_kernel, check_views
from balcon.errors import BalconError

__all__ = [
    "DeviceLoader",
    "DeviceViews",
    "fits_on",
    "policy_table",
    "resolve_pipeline",
    "sample_keys",
    "sim_params",
    "strong_params",
    "uniforms",
]

_MASK = 0xFFFFFFFF


def _mul32(x: Tensor, c: int) -> Tensor:
    """``x * c mod 2**32`` for x in [0, 2**32) held in int64, without overflowing."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _MASK


def _mix32(x: Tensor) -> Tensor:
    """A bijective 32-bit integer hash (Wellons' "lowbias32") of int64 values < 2**32."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def sample_keys(seed: int, epoch: int, indices: Tensor) -> Tensor:
    """A 32-bit key per sample from (seed, epoch, index): (B,) int64."""
    head = _mix32(torch.tensor([(seed ^ (seed >> 32)) & _MASK], dtype=torch.int64))
    head = _mix32((head + epoch) & _MASK).to(indices.device)
    return _mix32((head + indices.long()) & _MASK)


def uniforms(keys: Tensor, stream: int, count: int) -> Tensor:
    """(B, count) float32 uniform in [0, 1): draws ``stream * 64 + j`` of each key."""
    draws = _mix32(torch.arange(stream * 64, stream * 64 + count, device=keys.device) + 1)
    bits = _mix32(keys[:, None] ^ draws[None, :])
    return (bits >> 8).to(torch.float32) * (1.0 / (1 << 24))


def _randint(u: Tensor, high: int | Tensor) -> Tensor:
    """Uniform integers in [0, high) from uniforms ``u`` (no host round trip)."""
    drawn = (u * high).long()
    return drawn.clamp(max=high - 1) if isinstance(high, int) else torch.minimum(drawn, high - 1)


def resolve_pipeline(data: DataConfig, device: torch.device) -> str:
    """``data.pipeline``, with ``auto`` made concrete: ``device`` for the 32-px cifar views
    (on CUDA, and on the CPU, where it measured faster than the workers too: BENCHMARKS.md,
    "Views made on the device"), ``workers`` for the 224-px views."""
    if data.pipeline != "auto":
        return data.pipeline
    return "device" if data.view_style == "cifar" else "workers"


def _free_bytes(device: torch.device) -> int:
    """Free memory of ``device``: the GPU's, or the host's available (page cache too)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in open("/proc/meminfo"):  # noqa: SIM115 - a few lines, read once
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def fits_on(images: ImageSet, size: int, device: torch.device) -> bool:
    """Whether the set, as uint8 at ``size``, takes at most half of the device's free memory."""
    return len(images) * 3 * size * size <= 0.5 * _free_bytes(device)


def _decode(images: ImageSet, size: int) -> np.ndarray:
    """(N, S, S, 3) uint8 of every image, resized and centre-cropped to ``size`` once."""
    if images.pixels is not None and images.pixels.shape[1:3] == (size, size):
        return images.pixels
    fit = FitSize(size)
    return np.stack([np.asarray(fit(images.image(i))) for i in range(len(images))])


class DeviceViews:
    """The training set on ``device`` as uint8 and the views of any batch of its samples.

    Args:
        images: the training images.
        data: the data config (size, normalisation, flips, crop scale, blur, Cutout fill).
        views: 1 (view 1) or 3 (view 1 and the contrastive pair).
        seed: the run's seed; a sample's views depend on (seed, epoch, index) only.
        device: where the set lives and the views are made.
    """

    def __init__(self, images: ImageSet, data: DataConfig, views: int, seed: int,
                 device: torch.device) -> None:
        check_views(views)
        if data.view_style != "cifar":
            raise BalconError("data.pipeline=device makes the 32-px cifar views only; set "
                              "data.pipeline=workers for data.view_style=imagenet")
        size = data.image_size
        if not fits_on(images, size, device):
            need = len(images) * 3 * size * size
            raise BalconError(
                f"the training set needs {need / 2**30:.1f} GiB as uint8 on {device}, more "
                f"than half its free memory; set data.pipeline=workers"
            )
        pixels = torch.from_numpy(np.ascontiguousarray(_decode(images, size)))
        self.pixels = pixels.permute(0, 3, 1, 2).contiguous().to(device)
        self.labels = torch.as_tensor(images.labels, dtype=torch.int64).to(device)
        self.data, self.views, self.seed, self.device = data, views, seed, device
        self.mean = torch.tensor(data.mean, device=device)[:, None, None]
        self.std = torch.tensor(data.std, device=device)[:, None, None]
        self._policy = policy_table(size, size, device)

    def __call__(self, epoch: int, indices: Tensor) -> tuple[list[Tensor], Tensor]:
        """The views (each (B, 3, S, S) float32, normalised) and labels of ``indices``."""
        indices = indices.to(self.device)
        keys = sample_keys(self.seed, epoch, indices)
        images = self.pixels[indices]
        size = images.shape[-1]
        out = [self.strong(images, strong_params(uniforms(keys, 0, 10), size, self._policy))]
        for stream in range(1, self.views):
            params = sim_params(uniforms(keys, stream, 35), size, self.data.sim_crop_scale,
                                self.data.sim_blur_prob)
            out.append(self.sim(images, params))
        return out, self.labels[indices]

    def _normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def strong(self, images: Tensor, p: dict[str, Tensor]) -> Tensor:
        """View 1 of uint8 ``images`` with the parameters of :func:`strong_params`."""
        size = images.shape[-1]
        x = ops.padded_crop(images, p["top"], p["left"], padding=CROP_PADDING)
        if self.data.hflip:
            x = ops.hflip_where(x, p["flip"])
        combos = self._policy[0]
        for slot in (0, 1):  # one call per (op, magnitude) group; on CUDA a sync each
            for c in p["ops"][:, slot].unique().tolist():
                if c >= 0:
                    chosen = (p["ops"][:, slot] == c).nonzero().squeeze(1)
                    x[chosen] = ops.autoaugment_op(x[chosen], *combos[c])
        x = ops.to_unit(x)
        hole = ops.cutout_mask(size, size, p["cy"], p["cx"], CUTOUT)
        if self.data.cutout_fill == "black":  # cut, then normalise: the hole is black
            return self._normalize(x.masked_fill(hole, 0.0))
        return self._normalize(x).masked_fill_(hole, 0.0)  # the hole is the mean colour

    def sim(self, images: Tensor, p: dict[str, Tensor]) -> Tensor:
        """View 2 or 3 of uint8 ``images`` with the parameters of :func:`sim_params`: every
        step on 8-bit grey levels as PIL computes them (:mod:`balcon.data.batch_ops`)."""
        size = images.shape[-1]
        x = ops.resized_crop(images, p["boxes"], size)
        if self.data.hflip:
            x = ops.hflip_where(x, p["flip"])
        x = _color_jitter(x, p)
        x = torch.where(p["gray"][:, None, None, None], ops.grayscale(x).expand_as(x), x)
        if self.data.sim_blur_prob > 0:
            blurred = ops.gaussian_blur(x, blur_kernel(size), p["sigma"])
            x = torch.where(p["blur"][:, None, None, None], blurred, x)
        return self._normalize(ops.to_unit(x))


def strong_params(u: Tensor, size: int,
                  policy: tuple[list[tuple[str, float]], dict[str, Tensor]]) -> dict[str, Tensor]:
    """View 1's parameters from 10 uniforms per sample: crop offsets (0 to twice the
    padding), flip (p 0.5), the AutoAugment sub-policy (one of 25), each slot's op
    applied when its draw <= p and negated (signed ops) with probability 1/2, as ``ops``
    (B, 2) indices of the policy's (op, magnitude) pairs or -1, and the Cutout centre."""
    _, table = policy
    sub = _randint(u[:, 3], len(CIFAR10_POLICY))
    chosen = []
    for slot in (0, 1):
        combo = table["combo"][sub, slot, (u[:, 6 + slot] < 0.5).long()]
        chosen.append(torch.where(u[:, 4 + slot] <= table["prob"][sub, slot], combo, -1))
    offsets = 2 * CROP_PADDING + 1
    return {"top": _randint(u[:, 0], offsets), "left": _randint(u[:, 1], offsets),
            "flip": u[:, 2] < 0.5,
            "sub": sub, "ops": torch.stack(chosen, dim=1),
            "cy": _randint(u[:, 8], size), "cx": _randint(u[:, 9], size)}


def sim_params(u: Tensor, size: int, scale: list[float], blur_prob: float) -> dict[str, Tensor]:
    """Views 2 and 3's parameters from 35 uniforms per sample: the crop box (22), flip,
    colour jitter (applied with p 0.8, a random order of the four adjustments, factors
    in [0.6, 1.4], hue in [-0.1, 0.1]), grayscale (p 0.2), blur (p ``blur_prob``, sigma
    in [0.1, 2])."""
    return {
        "boxes": _resized_crop_boxes(size, size, scale, u[:, :22]), "flip": u[:, 22] < 0.5,
        "jitter": u[:, 23] <= 0.8, "order": u[:, 24:28].argsort(dim=1),
        "factors": 0.6 + 0.8 * u[:, 28:31], "hue": -0.1 + 0.2 * u[:, 31],
        "gray": u[:, 32] < 0.2, "blur": u[:, 33] < blur_prob, "sigma": 0.1 + 1.9 * u[:, 34],
    }


def policy_table(height: int, width: int, device: torch.device | None = None,
                 ) -> tuple[list[tuple[str, float]], dict[str, Tensor]]:
    """The distinct (op, signed magnitude) pairs of the CIFAR-10 policy, and per
    (sub-policy, slot) tensors on ``device``: its probability and, for each sign, the
    index of its pair."""
    space = ops.autoaugment_magnitudes(height, width)
    combos: list[tuple[str, float]] = []
    index = torch.zeros(len(CIFAR10_POLICY), 2, 2, dtype=torch.long)
    prob = torch.zeros(len(CIFAR10_POLICY), 2)
    for s, sub in enumerate(CIFAR10_POLICY):
        for slot, (op, p, bin_) in enumerate(sub):
            mags, signed = space[op]
            magnitude = float(mags[bin_]) if bin_ is not None else 0.0
            for negative in (0, 1):
                pair = (op, -magnitude if signed and negative else magnitude)
                if pair not in combos:
                    combos.append(pair)
                index[s, slot, negative] = combos.index(pair)
            prob[s, slot] = p
    return combos, {"combo": index.to(device), "prob": prob.to(device)}


def _resized_crop_boxes(height: int, width: int, scale: list[float], u: Tensor) -> Tensor:
    """torchvision's ``RandomResizedCrop.get_params`` per sample, from 22 uniforms: ten
    tries of (area, log-ratio), the position of the first that fits, else the centre
    fallback. Returns (B, 4) (top, left, height, width)."""
    area = height * width
    ratio = (3.0 / 4.0, 4.0 / 3.0)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[:, 0:20:2])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1:20:2])
    w = torch.sqrt(target * aspect).round().long()
    h = torch.sqrt(target / aspect).round().long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.long().argmax(dim=1, keepdim=True)  # the first try that fits
    any_fit = fits.any(dim=1)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    # the fallback: the whole image cropped to the nearest allowed ratio
    in_ratio = width / height
    fw = width if in_ratio <= ratio[1] else int(round(height * ratio[1]))
    fh = height if in_ratio >= ratio[0] else int(round(width / ratio[0]))
    w = torch.where(any_fit, w, fw)
    h = torch.where(any_fit, h, fh)
    top = torch.where(any_fit, _randint(u[:, 20], height - h + 1), (height - h) // 2)
    left = torch.where(any_fit, _randint(u[:, 21], width - w + 1), (width - w) // 2)
    return torch.stack([top, left, h, w], dim=1)


def _color_jitter(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    """The four adjustments of grey levels ``x`` in each sample's order: at each of the
    four positions, each adjustment runs on the samples that take it there (about a fifth
    of the batch) and the others keep their pixels."""
    adjust = (ops.adjust_brightness, ops.adjust_contrast, ops.adjust_saturation,
              ops.adjust_hue)
    factors = (*p["factors"].unbind(1), p["hue"])
    for position in range(4):
        for op, fn in enumerate(adjust):
            rows = (p["jitter"] & (p["order"][:, position] == op)).nonzero().squeeze(1)
            if len(rows):
                x[rows] = fn(x[rows], factors[op][rows])
    return x


class DeviceLoader:
    """Batches of :class:`DeviceViews` over an :class:`EpochSampler`'s (epoch, index)
    keys: what a DataLoader with ``batch_size`` and ``drop_last=False`` would yield."""

    def __init__(self, views: DeviceViews, sampler: EpochSampler, batch_size: int) -> None:
        self.views, self.sampler, self.batch_size = views, sampler, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[list[Tensor], Tensor]]:
        keys = list(self.sampler)
        for start in range(0, len(keys), self.batch_size):
            chunk = keys[start:start + self.batch_size]
            yield self.views(chunk[0][0], torch.tensor([i for _, i in chunk]))
