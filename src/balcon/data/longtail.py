"""Long-tailed subsets of balanced data, and the many/medium/few-shot groups.

The construction follows the de facto CIFAR-LT convention (Cao et al., LDAM-DRW,
NeurIPS 2019, reused by BCL's reimplementations), so balcon picks the same images
as published code: ``n_i = int(n_max * (1 / imbalance) ** (i / (C - 1)))`` and, with
one ``numpy.random.RandomState(seed)``, each class's indices are shuffled in turn,
in class order, keeping the first ``n_i``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "FEW_BELOW",
    "MANY_ABOVE",
    "SHOT_GROUPS",
    "longtail_counts",
    "longtail_indices",
    "shot_group_of",
    "shot_groups",
]

#: Group names in report order; a class's group comes from its training count.
SHOT_GROUPS = ("many", "medium", "few")
#: Many-shot: more than this many training images; few-shot: fewer than ``FEW_BELOW``.
MANY_ABOVE = 100
FEW_BELOW = 20


def longtail_counts(
    n_max: int, num_classes: int, imbalance: float, profile: str = "exp"
) -> list[int]:
    """Per-class sample counts of a long-tailed set, largest class first.

    Args:
        n_max: count of the largest class (5000 for CIFAR-10, 500 for CIFAR-100).
        num_classes: number of classes C.
        imbalance: ratio of the largest to the smallest class (>= 1).
        profile: ``"exp"`` (exponential decay over the classes) or ``"step"`` (the
            first half of the classes at ``n_max``, the rest at ``n_max / imbalance``).
    """
    if n_max < 1:
        raise ValueError(f"n_max must be >= 1, got {n_max}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if imbalance < 1:
        raise ValueError(f"imbalance must be >= 1, got {imbalance}")
    factor = 1.0 / imbalance
    if profile == "exp":
        if num_classes == 1:
            return [int(n_max)]
        return [int(n_max * factor ** (i / (num_classes - 1.0))) for i in range(num_classes)]
    if profile == "step":
        half = num_classes // 2
        return [int(n_max)] * half + [int(n_max * factor)] * (num_classes - half)
    raise ValueError(f"profile must be 'exp' or 'step', got {profile!r}")


def longtail_indices(
    labels: Sequence[int] | np.ndarray, counts: Sequence[int], seed: int = 0
) -> np.ndarray:
    """Indices of a long-tailed subset: the first ``counts[c]`` of class ``c`` after a shuffle.

    One ``RandomState(seed)`` shuffles each class's indices in turn, in class order,
    as the published CIFAR-LT code does. A class with fewer samples than asked keeps
    them all. The result lists class 0's picks, then class 1's, and so on.
    """
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    picked = []
    for cls, n in enumerate(counts):
        idx = np.where(labels == cls)[0]
        rng.shuffle(idx)
        picked.append(idx[:n])
    return np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)


def shot_group_of(count: int) -> str:
    """``"many"`` for more than ``MANY_ABOVE`` (100) training images, ``"few"`` under
    ``FEW_BELOW`` (20), else ``"medium"``."""
    if count > MANY_ABOVE:
        return "many"
    if count < FEW_BELOW:
        return "few"
    return "medium"


def shot_groups(class_counts: Sequence[int]) -> dict[str, list[int]]:
    """Class indices of each shot group (a group may be empty)."""
    groups: dict[str, list[int]] = {g: [] for g in SHOT_GROUPS}
    for cls, n in enumerate(class_counts):
        groups[shot_group_of(int(n))].append(cls)
    return groups
