"""Torch datasets over an :class:`~balcon.data.sources.ImageSet`, seeded per sample.

A training sample's augmentation is fixed by (seed, epoch, index): the sampler yields
``(epoch, index)`` pairs and the dataset seeds torch's generator from them before
running the transforms. A run is therefore the same with any number of data
workers and after a resume.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from balcon.data.sources import ImageSet

__all__ = ["EpochSampler", "EvalDataset", "MultiViewDataset", "sample_seed"]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that depends on all three numbers (numpy's SeedSequence)."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` for a permutation drawn from (seed, epoch).

    Call :meth:`set_epoch` before each epoch. ``shuffle=False`` keeps index order.
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True) -> None:
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation and augmentations come next."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            # 2**32 - 1: an index no sample has, so the order is independent of the views.
            gen = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, 2**32 - 1))
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = range(self.size)
        return ((self.epoch, i) for i in order)


class MultiViewDataset(Dataset):
    """Each item is ``([view(image) for view in views], label)`` for key (epoch, index)."""

    def __init__(self, images: ImageSet, views: Sequence[Callable], seed: int = 0) -> None:
        self.images = images
        self.views = list(views)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> tuple[list[torch.Tensor], int]:
        epoch, index = key
        img = self.images.image(index)
        seed = sample_seed(self.seed, epoch, index)
        py_state = random.getstate()
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            random.seed(seed)
            out = [view(img) for view in self.views]
        random.setstate(py_state)
        return out, int(self.images.labels[index])


class EvalDataset(Dataset):
    """Each item is ``(transform(image), label)``; deterministic."""

    def __init__(self, images: ImageSet, transform: Callable) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images.image(index)), int(self.images.labels[index])
