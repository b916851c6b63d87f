"""Augmented views, per-sample seeding, samplers."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data.auto_augment import RandAugment
from torch.utils.data import DataLoader
from torchvision import transforms as T

from balcon.config import DataConfig
from balcon.data import (
    Cutout,
    EpochSampler,
    ImageSet,
    imagenet_randaugment,
    imagenet_test_view,
    load_image_sets,
    make_eval_dataset,
    make_train_dataset,
    strong_view,
    train_views,
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
    ds = make_train_dataset(images, DataConfig(), views=3, seed=0)
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
    ds = make_train_dataset(images, DataConfig(), views=3, seed=0)
    first, _ = ds[(2, 1)]
    torch.manual_seed(999)  # the global generators do not matter
    random.seed(999)
    again, _ = ds[(2, 1)]
    fresh, _ = make_train_dataset(images, DataConfig(), views=3, seed=0)[(2, 1)]
    for a, b, c in zip(first, again, fresh, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    other_epoch, _ = ds[(3, 1)]
    other_seed, _ = make_train_dataset(images, DataConfig(), views=3, seed=1)[(2, 1)]
    for a, b, c in zip(first, other_epoch, other_seed, strict=True):
        assert not torch.equal(a, b) and not torch.equal(a, c)


def test_train_views_leave_global_rng_alone():
    ds = make_train_dataset(random_images(), DataConfig(), views=3, seed=0)
    torch_state, py_state = torch.get_rng_state(), random.getstate()
    ds[(0, 0)]
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == py_state


def test_single_view_without_contrastive():
    ds = make_train_dataset(random_images(), DataConfig(), views=1, seed=0)
    views, label = ds[(0, 0)]
    assert len(views) == 1 and views[0].shape == (3, 32, 32) and label == 0


def test_views_fit_other_sizes():
    data = DataConfig()
    for height, width in ((40, 48), (20, 16)):
        images = random_images(2, height, width)
        views, _ = make_train_dataset(images, data, views=3, seed=0)[(0, 0)]
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
    ds = make_train_dataset(images, DataConfig(), views=3, seed=0)
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
    train = load_image_sets(DataConfig(imbalance=100), cifar10_root).train
    assert Counter(train.labels.tolist())[9] == 1
    views, label = make_train_dataset(train, DataConfig(), 3, seed=0)[(0, len(train) - 1)]
    assert label == 9 and len(views) == 3


# --- 224-px views (ImageNet-LT / iNaturalist recipe), run at 64 px to stay fast -------

STRATEGIES = ("sim-sim", "sim-rand", "rand-rand")
#: (view 2, view 3) kinds per strategy, as RECIPES.md and the official code define them.
EXPECTED_PAIRS = {
    "sim-sim": ("sim", "sim"),
    "sim-rand": ("randstack", "sim"),
    "rand-rand": ("randstack", "randstack"),
}
STEPS = {
    "rand": [T.RandomResizedCrop, T.RandomHorizontalFlip, T.ColorJitter, RandAugment,
             T.ToTensor, T.Normalize],
    "sim": [T.RandomResizedCrop, T.RandomHorizontalFlip, T.RandomApply, T.RandomGrayscale,
            T.ToTensor, T.Normalize],
    "randstack": [T.RandomResizedCrop, T.RandomHorizontalFlip, T.RandomApply,
                  T.RandomGrayscale, RandAugment, T.ToTensor, T.Normalize],
}


def imagenet_config(strategy: str = "sim-sim", size: int = 64) -> DataConfig:
    return DataConfig(view_style="imagenet", view_strategy=strategy, image_size=size,
                      mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


def wide_images(n: int = 4) -> ImageSet:
    """``n`` random 80x60 (width x height) images."""
    return random_images(n, height=60, width=80)


def view_kind(view: T.Compose) -> str:
    """``rand``, ``sim`` or ``randstack``, read off the Compose steps."""
    steps = [type(t) for t in view.transforms]
    for kind, expected in STEPS.items():
        if steps == expected:
            return kind
    raise AssertionError(f"unknown view: {steps}")


def randaugment_of(view: T.Compose) -> RandAugment:
    (ra,) = [t for t in view.transforms if isinstance(t, RandAugment)]
    return ra


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_imagenet_views_shapes(strategy):
    data = imagenet_config(strategy)
    views, label = make_train_dataset(wide_images(), data, views=3, seed=0)[(0, 3)]
    assert label == 1 and len(views) == 3
    for v in views:
        assert v.dtype == torch.float32 and v.shape == (3, 64, 64)
    single, _ = make_train_dataset(wide_images(), data, views=1, seed=0)[(0, 3)]
    assert len(single) == 1 and single[0].shape == (3, 64, 64)
    x, _ = make_eval_dataset(wide_images(), data)[0]
    assert x.dtype == torch.float32 and x.shape == (3, 64, 64)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_imagenet_strategy_builds_view_kinds(strategy):
    views = train_views(imagenet_config(strategy), views=3)
    assert [view_kind(v) for v in views] == ["rand", *EXPECTED_PAIRS[strategy]]
    assert [view_kind(v) for v in train_views(imagenet_config(strategy), 1)] == ["rand"]


def test_imagenet_view_steps():
    rand, sim, _ = train_views(imagenet_config("sim-rand"), views=3)
    crop = rand.transforms[0]
    assert crop.size == (64, 64) and crop.scale == (0.08, 1.0)
    jitter = rand.transforms[2]  # always applied, no hue
    assert jitter.brightness == jitter.contrast == jitter.saturation == (0.6, 1.4)
    assert jitter.hue is None
    apply = sim.transforms[2]
    assert apply.p == 0.8 and apply.transforms[0].hue == (-0.1, 0.1)
    assert sim.transforms[3].p == 0.2 and sim.transforms[0].scale == (0.08, 1.0)
    assert list(sim.transforms[-1].mean) == [0.485, 0.456, 0.406]
    no_flip = train_views(DataConfig(view_style="imagenet", hflip=False), views=3)
    assert not any(isinstance(t, T.RandomHorizontalFlip) for v in no_flip for t in v.transforms)


def test_rand_view_randaugment_config():
    data = imagenet_config("sim-rand")
    fill = (124, 116, 104)  # round(255 * ImageNet mean)
    for view in (train_views(data, 3)[0], train_views(data, 3)[1]):  # rand, randstack
        ra = randaugment_of(view)
        assert ra.num_layers == 2 and ra.choice_weights is None and len(ra.ops) == 15
        for op in ra.ops:
            assert op.magnitude == 10 and op.magnitude_std == 0.5 and op.prob == 0.5
            assert op.hparams["translate_const"] == int(64 * 0.45)
            assert op.kwargs["fillcolor"] == fill
    ra = randaugment_of(train_views(imagenet_config(size=224), 3)[0])
    assert ra.ops[0].hparams["translate_const"] == 100
    other = imagenet_randaugment("rand-n3-m7", 224, [0.5, 0.5, 0.5])
    assert other.num_layers == 3 and other.ops[0].magnitude == 7
    assert other.ops[0].magnitude_std == 0 and other.ops[0].kwargs["fillcolor"] == (128,) * 3


def test_randaugment_fills_with_the_mean():
    ra = imagenet_randaugment("rand-n2-m10-mstd0.5", 64, [0.485, 0.456, 0.406])
    (shift,) = [op for op in ra.ops if op.name == "TranslateXRel"]
    white = Image.new("RGB", (64, 64), (255, 255, 255))
    out = np.asarray(shift.aug_fn(white, 0.25, **shift.kwargs))  # content moves left
    assert (out[:, -10:] == (124, 116, 104)).all() and (out[:, :40] == 255).all()


def test_randaugment_bad_config():
    with pytest.raises(ValueError, match="RandAugment"):
        imagenet_randaugment("rand-q5", 64, [0.5, 0.5, 0.5])


def test_rand_view_applies_randaugment():
    """Dropping RandAugment from view 1 changes its output (same seeds otherwise)."""
    images = wide_images()
    data = imagenet_config()
    ds = make_train_dataset(images, data, views=1, seed=0)
    plain = make_train_dataset(images, data, views=1, seed=0)
    steps = plain.views[0].transforms
    plain.views[0] = T.Compose([t for t in steps if not isinstance(t, RandAugment)])
    keys = [(e, i) for e in range(2) for i in range(4)]
    changed = [not torch.equal(ds[k][0][0], plain[k][0][0]) for k in keys]
    assert sum(changed) >= len(keys) // 2


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_imagenet_views_deterministic_per_key(strategy):
    images = wide_images()
    data = imagenet_config(strategy)
    ds = make_train_dataset(images, data, views=3, seed=0)
    np.random.seed(1)
    first, _ = ds[(2, 1)]
    for _ in range(3):  # the global generators do not matter
        torch.manual_seed(999)
        random.seed(999)
        np.random.seed(999)
        again, _ = ds[(2, 1)]
        for a, b in zip(first, again, strict=True):
            assert torch.equal(a, b)
        ds[(0, 0)]
    fresh, _ = make_train_dataset(images, data, views=3, seed=0)[(2, 1)]
    other_epoch, _ = ds[(3, 1)]
    other_index, _ = ds[(2, 2)]
    other_seed, _ = make_train_dataset(images, data, views=3, seed=1)[(2, 1)]
    for a, b in zip(first, fresh, strict=True):
        assert torch.equal(a, b)
    for other in (other_epoch, other_index, other_seed):
        for a, b in zip(first, other, strict=True):
            assert not torch.equal(a, b)


def test_imagenet_views_leave_global_rng_alone():
    ds = make_train_dataset(wide_images(), imagenet_config("rand-rand"), 3, seed=0)
    torch_state, py_state = torch.get_rng_state(), random.getstate()
    np_state = np.random.get_state()
    ds[(0, 0)]
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert random.getstate() == py_state
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]


def test_imagenet_test_view_resizes_and_centre_crops():
    assert [type(t) for t in imagenet_test_view(224, [0.5] * 3, [0.5] * 3).transforms] == [
        T.Resize, T.CenterCrop, T.ToTensor, T.Normalize]
    assert imagenet_test_view(224, [0.5] * 3, [0.5] * 3).transforms[0].size == 256
    images = random_images(2, height=60, width=72)
    data = imagenet_config(size=56)  # Resize(64): 72x60 -> 76x64, crop 56 at (10, 4)
    ds = make_eval_dataset(images, data)
    x, label = ds[1]
    assert label == 1 and x.shape == (3, 56, 56) and torch.equal(x, ds[1][0])
    img = Image.fromarray(images.pixels[1]).resize((76, 64), Image.BILINEAR)
    centre = T.ToTensor()(img.crop((10, 4, 66, 60)))
    mean = torch.tensor(data.mean)[:, None, None]
    std = torch.tensor(data.std)[:, None, None]
    assert torch.allclose(x, (centre - mean) / std, atol=1e-5)


def test_imagenet_loader_same_with_workers():
    images = wide_images(6)
    ds = make_train_dataset(images, imagenet_config("sim-rand"), views=3, seed=0)
    batches = []
    for workers in (0, 2):
        sampler = EpochSampler(len(ds), seed=0)
        sampler.set_epoch(1)
        loader = DataLoader(ds, batch_size=3, sampler=sampler, num_workers=workers)
        batches.append(list(loader))
    assert len(batches[0]) == len(batches[1]) == 2
    for (views_a, labels_a), (views_b, labels_b) in zip(*batches, strict=True):
        assert torch.equal(labels_a, labels_b)
        for a, b in zip(views_a, views_b, strict=True):
            assert a.shape == (3, 3, 64, 64) and torch.equal(a, b)


def test_strong_view_cutout_fill_orders_cutout_and_normalize():
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    black = [type(t).__name__ for t in strong_view(32, mean, std).transforms]
    assert black[-2:] == ["Cutout", "Normalize"]  # published: the hole is black
    after = strong_view(32, mean, std, cutout_fill="mean").transforms
    assert [type(t).__name__ for t in after][-2:] == ["Normalize", "Cutout"]
    # cut after normalising, the hole is 0: the mean colour
    torch.manual_seed(0)
    img = torch.ones(3, 32, 32)
    out = after[-1](after[-2](img))
    assert (out == 0).any() and out.max() == pytest.approx((1 - 0.5) / 0.25)
    with pytest.raises(ValueError, match="cutout_fill"):
        strong_view(32, mean, std, cutout_fill="white")
