"""Torch datasets over an :class:`~balcon.data.sources.ImageSet`, seeded per sample.

A training sample's augmentation is fixed by (seed, epoch, index): the sampler yields
``(epoch, index)`` pairs and the dataset seeds torch's default generator, python's
``random`` and numpy's global RNG (timm's RandAugment draws from the last two) from
them before running the transforms, and restores them afterwards. A run is therefore
the same with any number of data workers and after a resume.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from balcon.data.sources import ImageSet

__all__ = ["EpochSampler", "EvalDataset", "FeatureDataset", "MultiViewDataset", "sample_seed"]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that depends on all three numbers (numpy's SeedSequence)."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


@contextmanager
def _seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed torch's default generator, ``random`` and numpy's global RNG; restore them after.

    numpy's legacy seed is 32-bit: the two halves of ``seed`` folded together.
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            random.seed(seed)
            np.random.seed((seed ^ (seed >> 32)) & 0xFFFFFFFF)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class EpochSampler(DistributedSampler):
    """torch's ``DistributedSampler`` over ``range(size)`` that yields ``(epoch, index)``.

    Epoch e's permutation is drawn from :func:`sample_seed` of (seed, e), shared by all
    ranks (unlike torch's ``seed + epoch``, two seeds never share permutations). As in
    ``DistributedSampler``, rank r takes positions r, r + N, r + 2N, ... of it, padded
    by repeating its start so the N ranks get equal shares. The k-th batches of all
    ranks together are then the k-th slice of the permutation whatever N is, so the
    global batches do not depend on the number of processes. Call :meth:`set_epoch`
    before each epoch; ``shuffle=False`` keeps index order. ``set_epoch(e, skip=k)``
    starts this rank's share of epoch e at its k-th sample (a resume mid-epoch).
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True, num_replicas: int = 1,
                 rank: int = 0) -> None:
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=False)
        self.size = size
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Make the next pass epoch ``epoch``'s, without this rank's first ``skip`` samples."""
        super().set_epoch(epoch)
        self.skip = skip

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch
        if self.shuffle:
            # 2**32 - 1: an index no sample has, so the order is independent of the views.
            gen = torch.Generator().manual_seed(sample_seed(self.seed, epoch, 2**32 - 1))
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = list(range(self.size))
        padding = self.total_size - len(order)
        order += (order * (padding // max(len(order), 1) + 1))[:padding]
        mine = order[self.rank:self.total_size:self.num_replicas][self.skip:]
        return ((epoch, i) for i in mine)


class FeatureDataset(Dataset):
    """``([features[index]], label)`` for key (epoch, index): a frozen encoder's features
    of the un-augmented images, computed once, in place of the images (a linear probe)."""

    def __init__(self, features: torch.Tensor, labels: Sequence[int]) -> None:
        self.features, self.labels = features, torch.as_tensor(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, int]) -> tuple[list[torch.Tensor], torch.Tensor]:
        return [self.features[key[1]]], self.labels[key[1]]


class MultiViewDataset(Dataset):
    """Each item is ``([view(image) for view in views], label)`` for key (epoch, index).

    The views run with torch's default generator, ``random`` and numpy's global RNG
    seeded from :func:`sample_seed` ``(seed, epoch, index)``; all three are restored after.
    """

    def __init__(self, images: ImageSet, views: Sequence[Callable], seed: int = 0) -> None:
        self.images = images
        self.views = list(views)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> tuple[list[torch.Tensor], int]:
        epoch, index = key
        img = self.images.image(index)
        with _seeded_global_rngs(sample_seed(self.seed, epoch, index)):
            out = [view(img) for view in self.views]
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
