"""Augmented 224-px views of the ImageNet-LT / iNaturalist 2018 recipe of BCL.

Built from torchvision transforms and timm's RandAugment, as the official BCL code:

- "rand" (view 1, classifier): RandomResizedCrop(size, scale 0.08-1), flip,
  ColorJitter(0.4, 0.4, 0.4, 0) always, RandAugment (``rand-n2-m10-mstd0.5``), filled
  with the dataset mean;
- "sim" (contrastive branch, SimCLR / MoCo v2 style): RandomResizedCrop(size, scale
  0.08-1), flip, ColorJitter(0.4, 0.4, 0.4, 0.1) with p = 0.8, RandomGrayscale p = 0.2;
- "randstack": the "sim" steps followed by the same RandAugment;
- test: Resize(size * 256 / 224), CenterCrop(size) (Resize(256), CenterCrop(224) at 224).

The contrastive pair (view 2, view 3) follows a strategy: ``sim-sim`` = (sim, sim),
``sim-rand`` = (randstack, sim), ``rand-rand`` = (randstack, randstack).

Randomness: torchvision draws from torch's generator; timm's RandAugment draws the ops
from numpy's global RNG and their magnitudes, signs and resampling filters from
python's ``random``. :class:`~balcon.data.datasets.MultiViewDataset` seeds all three
per sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from timm.data.auto_augment import RandAugment, rand_augment_transform
from torchvision import transforms as T

from balcon.config.sections import VIEW_STRATEGY_PAIRS, DataConfig
from balcon.data.views import normalized_tensor

__all__ = [
    "imagenet_contrastive_views",
    "imagenet_rand_view",
    "imagenet_randaugment",
    "imagenet_randstack_view",
    "imagenet_sim_view",
    "imagenet_test_view",
    "imagenet_train_views",
]

#: RandomResizedCrop's area range in every 224-px training view.
CROP_SCALE = (0.08, 1.0)


def imagenet_randaugment(config_str: str, size: int, mean: Sequence[float]) -> RandAugment:
    """timm's RandAugment for ``config_str`` (e.g. ``rand-n2-m10-mstd0.5``), as BCL builds it.

    hparams as in the official code: ``translate_const = int(size * 0.45)`` and the fill
    colour of the geometric ops (``img_mean``) is the dataset ``mean`` in 0-255. timm's
    default op set translates by a fraction of the image (``translate_pct``, 0.45), which
    is the same shift at ``size``; ``translate_const`` matters for the absolute ops only.
    """
    hparams = {
        "translate_const": int(size * 0.45),
        "img_mean": tuple(min(255, round(255 * m)) for m in mean),
    }
    try:
        return rand_augment_transform(config_str, hparams)
    except AssertionError:  # timm rejects bad strings with bare asserts
        raise ValueError(
            f"not a timm RandAugment string: {config_str!r} (e.g. rand-n2-m10-mstd0.5)"
        ) from None


def _crop_flip(size: int, hflip: bool) -> list[Callable]:
    steps: list[Callable] = [T.RandomResizedCrop(size, scale=CROP_SCALE)]
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    return steps


def _sim_steps(size: int, hflip: bool) -> list[Callable]:
    return _crop_flip(size, hflip) + [
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
    ]


def imagenet_rand_view(
    size: int, mean: Sequence[float], std: Sequence[float], hflip: bool = True,
    randaugment: str = DataConfig.randaugment,
) -> T.Compose:
    """The "rand" view (view 1): resized crop, flip, colour jitter, RandAugment."""
    steps = _crop_flip(size, hflip) + [
        T.ColorJitter(0.4, 0.4, 0.4, 0.0),
        imagenet_randaugment(randaugment, size, mean),
    ]
    return T.Compose(steps + normalized_tensor(mean, std))


def imagenet_sim_view(
    size: int, mean: Sequence[float], std: Sequence[float], hflip: bool = True
) -> T.Compose:
    """The "sim" view: resized crop, flip, colour jitter p=0.8, grayscale p=0.2."""
    return T.Compose(_sim_steps(size, hflip) + normalized_tensor(mean, std))


def imagenet_randstack_view(
    size: int, mean: Sequence[float], std: Sequence[float], hflip: bool = True,
    randaugment: str = DataConfig.randaugment,
) -> T.Compose:
    """The "randstack" view: the "sim" view's steps, then RandAugment."""
    steps = _sim_steps(size, hflip) + [imagenet_randaugment(randaugment, size, mean)]
    return T.Compose(steps + normalized_tensor(mean, std))


def imagenet_test_view(size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """Evaluation: Resize(round(size * 256 / 224)) (shorter side), CenterCrop(size)."""
    return T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size),
                      *normalized_tensor(mean, std)])


def imagenet_contrastive_views(
    strategy: str, size: int, mean: Sequence[float], std: Sequence[float],
    hflip: bool = True, randaugment: str = DataConfig.randaugment,
) -> tuple[T.Compose, T.Compose]:
    """(view 2, view 3) for ``strategy``: ``sim-sim``, ``sim-rand`` or ``rand-rand``."""
    if strategy not in VIEW_STRATEGY_PAIRS:
        raise ValueError(
            f"strategy must be one of {', '.join(VIEW_STRATEGY_PAIRS)}, got {strategy!r}"
        )
    kinds = VIEW_STRATEGY_PAIRS[strategy]
    built: dict[str, T.Compose] = {}
    if "sim" in kinds:
        built["sim"] = imagenet_sim_view(size, mean, std, hflip)
    if "randstack" in kinds:
        built["randstack"] = imagenet_randstack_view(size, mean, std, hflip, randaugment)
    return built[kinds[0]], built[kinds[1]]


def imagenet_train_views(
    size: int, mean: Sequence[float], std: Sequence[float], hflip: bool = True,
    randaugment: str = DataConfig.randaugment, strategy: str | None = "sim-sim",
) -> list[T.Compose]:
    """[rand] alone (``strategy=None``), or [rand, view 2, view 3] for a contrastive method."""
    views = [imagenet_rand_view(size, mean, std, hflip, randaugment)]
    if strategy is not None:
        views += imagenet_contrastive_views(strategy, size, mean, std, hflip, randaugment)
    return views
