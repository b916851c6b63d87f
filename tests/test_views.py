"""Augmented views, per-sample seeding, samplers."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from balcon.config import DataConfig
from balcon.data import (
    Cutout,
    EpochSampler,
    ImageSet,
    load_image_sets,
    make_eval_dataset,
    make_train_dataset,
)


def random_images(n: int = 4, height: int = 32, width: int = 32, seed: int = 0) -> ImageSet:
    """``n`` random RGB images in memory, labels 0, 1, 0, 1, ..."""
    rng = np.random.RandomState(seed)
    pixels = rng.randint(0, 256, size=(n, height, width, 3)).astype(np.uint8)
    return ImageSet(labels=np.arange(n, dtype=np.int64) % 2, class_names=["x", "y"],
                    pixels=pixels)


# --- views ----------------------------------------------------------------------------


def test_contrastive_train_views():
    images = random_images()
    ds = make_train_dataset(images, DataConfig(), contrastive=True, seed=0)
    views, label = ds[(0, 3)]
    assert label == 1 and isinstance(label, int)
    assert len(views) == 3
    for v in views:
        assert isinstance(v, torch.Tensor)
        assert v.dtype == torch.float32 and v.shape == (3, 32, 32)
    for a in range(3):
        for b in range(a + 1, 3):
            assert not torch.equal(views[a], views[b])


def test_train_views_deterministic_per_key():
    images = random_images()
    ds = make_train_dataset(images, DataConfig(), contrastive=True, seed=0)
    first, _ = ds[(2, 1)]
    torch.manual_seed(999)  # the global generators do not matter
    random.seed(999)
    again, _ = ds[(2, 1)]
    fresh, _ = make_train_dataset(images, DataConfig(), contrastive=True, seed=0)[(2, 1)]
    for a, b, c in zip(first, again, fresh, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    other_epoch, _ = ds[(3, 1)]
    other_seed, _ = make_train_dataset(images, DataConfig(), contrastive=True, seed=1)[(2, 1)]
    for a, b, c in zip(first, other_epoch, other_seed, strict=True):
        assert not torch.equal(a, b) and not torch.equal(a, c)


def test_train_views_leave_global_rng_alone():
    ds = make_train_dataset(random_images(), DataConfig(), contrastive=True, seed=0)
    torch_state, py_state = torch.get_rng_state(), random.getstate()
    ds[(0, 0)]
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == py_state


def test_single_view_without_contrastive():
    ds = make_train_dataset(random_images(), DataConfig(), contrastive=False, seed=0)
    views, label = ds[(0, 0)]
    assert len(views) == 1 and views[0].shape == (3, 32, 32) and label == 0


def test_views_fit_other_sizes():
    data = DataConfig()
    for height, width in ((40, 48), (20, 16)):
        images = random_images(2, height, width)
        views, _ = make_train_dataset(images, data, contrastive=True, seed=0)[(0, 0)]
        assert [tuple(v.shape) for v in views] == [(3, 32, 32)] * 3
        x, _ = make_eval_dataset(images, data)[1]
        assert x.shape == (3, 32, 32)


@pytest.mark.parametrize("seed", range(12))
def test_cutout_zeroes_one_square(seed):
    torch.manual_seed(seed)
    img = torch.rand(3, 32, 32) + 0.5  # no zeros to start with
    out = Cutout(16)(img)
    assert out.shape == img.shape and torch.all(img >= 0.5)  # input left as it was
    hole = out == 0
    assert torch.equal(hole[0], hole[1]) and torch.equal(hole[0], hole[2])
    rows, cols = hole[0].any(dim=1), hole[0].any(dim=0)
    assert 8 <= int(rows.sum()) <= 16 and 8 <= int(cols.sum()) <= 16
    assert torch.equal(hole[0], rows[:, None] & cols[None, :])  # a rectangle
    r = torch.nonzero(rows).flatten()
    assert int(r[-1] - r[0]) + 1 == len(r)  # contiguous
    assert torch.equal(out[~hole], img[~hole])


def test_cutout_bad_length():
    with pytest.raises(ValueError):
        Cutout(0)


def test_eval_dataset_deterministic_and_normalised():
    images = random_images()
    data = DataConfig()
    ds = make_eval_dataset(images, data)
    x, label = ds[2]
    assert label == 0 and x.dtype == torch.float32 and x.shape == (3, 32, 32)
    assert torch.equal(x, ds[2][0])
    raw = torch.from_numpy(images.pixels[2]).permute(2, 0, 1).float() / 255
    mean = torch.tensor(data.mean)[:, None, None]
    std = torch.tensor(data.std)[:, None, None]
    assert torch.allclose(x, (raw - mean) / std, atol=1e-5)
    assert len(ds) == 4


def test_epoch_sampler():
    sampler = EpochSampler(50, seed=0)
    assert len(sampler) == 50
    epoch0 = list(sampler)
    assert all(e == 0 for e, _ in epoch0)
    order0 = [i for _, i in epoch0]
    assert sorted(order0) == list(range(50)) and order0 != list(range(50))
    assert list(sampler) == epoch0
    assert [i for _, i in EpochSampler(50, seed=0)] == order0
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert all(e == 1 for e, _ in epoch1)
    assert [i for _, i in epoch1] != order0
    assert [i for _, i in EpochSampler(50, seed=1)] != order0
    plain = EpochSampler(5, shuffle=False)
    plain.set_epoch(4)
    assert list(plain) == [(4, i) for i in range(5)]


def test_loader_with_epoch_sampler():
    images = random_images(6)
    ds = make_train_dataset(images, DataConfig(), contrastive=True, seed=0)
    sampler = EpochSampler(len(ds), seed=0)
    sampler.set_epoch(2)
    views, labels = next(iter(DataLoader(ds, batch_size=4, sampler=sampler)))
    assert len(views) == 3 and all(v.shape == (4, 3, 32, 32) for v in views)
    first = [i for _, i in sampler][:4]
    assert labels.tolist() == [int(images.labels[i]) for i in first]
    expected, _ = ds[(2, first[0])]
    assert torch.equal(views[1][0], expected[1])


def test_long_tailed_cifar_feeds_views(cifar10_root):
    """A loaded long-tailed CIFAR set goes through the views with its labels."""
    train, _ = load_image_sets(DataConfig(imbalance=100), cifar10_root)
    assert Counter(train.labels.tolist())[9] == 1
    views, label = make_train_dataset(train, DataConfig(), True, seed=0)[(0, len(train) - 1)]
    assert label == 9 and len(views) == 3
