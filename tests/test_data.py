"""Data: long-tailed counts and subsets, shot groups, sources, augmented views."""

from __future__ import annotations

import pickle
import random
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from balcon.config import DataConfig
from balcon.data import (
    SHOT_GROUPS,
    Cutout,
    EpochSampler,
    ImageSet,
    load_cifar,
    load_digits,
    load_image_sets,
    longtail_counts,
    longtail_indices,
    make_eval_dataset,
    make_train_dataset,
    shot_group_of,
    shot_groups,
)
from balcon.errors import BalconError

CIFAR10_LT_R100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def random_images(n: int = 4, height: int = 32, width: int = 32, seed: int = 0) -> ImageSet:
    """``n`` random RGB images in memory, labels 0, 1, 0, 1, ..."""
    rng = np.random.RandomState(seed)
    pixels = rng.randint(0, 256, size=(n, height, width, 3)).astype(np.uint8)
    return ImageSet(labels=np.arange(n, dtype=np.int64) % 2, class_names=["x", "y"],
                    pixels=pixels)


def path_set(*paths: Path) -> ImageSet:
    """An :class:`ImageSet` of image files, all of class 0."""
    return ImageSet(labels=np.zeros(len(paths), dtype=np.int64), class_names=["a"],
                    paths=[str(p) for p in paths])


def assert_one_line_naming(err: pytest.ExceptionInfo, path: Path) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message


# --- longtail_counts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_max", "num_classes", "imbalance", "total"),
    [
        (5000, 10, 10, 20431), (5000, 10, 50, 13996), (5000, 10, 100, 12406),
        (500, 100, 10, 19573), (500, 100, 50, 12608), (500, 100, 100, 10847),
    ],
)
def test_longtail_counts_cifar_totals(n_max, num_classes, imbalance, total):
    counts = longtail_counts(n_max, num_classes, imbalance)
    assert len(counts) == num_classes
    assert sum(counts) == total
    assert counts[0] == n_max
    assert counts[-1] == n_max // imbalance
    assert all(a >= b for a, b in zip(counts, counts[1:], strict=False))
    assert all(isinstance(c, int) for c in counts)


def test_longtail_counts_cifar10_r100_list():
    assert longtail_counts(5000, 10, 100) == CIFAR10_LT_R100
    assert longtail_counts(5000, 10, 100.0, profile="exp") == CIFAR10_LT_R100


def test_longtail_counts_step_profile():
    assert longtail_counts(5000, 10, 100, profile="step") == [5000] * 5 + [50] * 5
    # odd class count: the smaller half gets the extra class
    assert longtail_counts(500, 5, 10, profile="step") == [500, 500, 50, 50, 50]


def test_longtail_counts_degenerate_cases():
    assert longtail_counts(7, 4, 1) == [7, 7, 7, 7]
    assert longtail_counts(300, 1, 100) == [300]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_max": 0, "num_classes": 10, "imbalance": 10},
        {"n_max": 100, "num_classes": 0, "imbalance": 10},
        {"n_max": 100, "num_classes": 10, "imbalance": 0.5},
        {"n_max": 100, "num_classes": 10, "imbalance": 10, "profile": "linear"},
    ],
)
def test_longtail_counts_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        longtail_counts(**kwargs)


# --- longtail_indices -----------------------------------------------------------------


def reference_indices(labels: np.ndarray, counts: list[int], seed: int) -> np.ndarray:
    """The CIFAR-LT convention restated: one RandomState, classes in order, first n."""
    rng = np.random.RandomState(seed)
    keep = []
    for c, n in enumerate(counts):
        idx = np.where(labels == c)[0]
        rng.shuffle(idx)
        keep.extend(idx[:n].tolist())
    return np.array(keep)


@pytest.fixture
def shuffled_labels() -> np.ndarray:
    """50 samples of each of 10 classes, in random order."""
    labels = np.repeat(np.arange(10), 50)
    np.random.RandomState(5).shuffle(labels)
    return labels


def test_longtail_indices_picks_counts(shuffled_labels):
    counts = longtail_counts(50, 10, 10)
    idx = longtail_indices(shuffled_labels, counts, seed=0)
    assert len(idx) == sum(counts) == len(np.unique(idx))
    assert np.bincount(shuffled_labels[idx], minlength=10).tolist() == counts
    # class 0's picks first, then class 1's, ...
    assert np.all(np.diff(shuffled_labels[idx]) >= 0)


def test_longtail_indices_seeded(shuffled_labels):
    counts = longtail_counts(50, 10, 10)
    a = longtail_indices(shuffled_labels, counts, seed=0)
    assert np.array_equal(a, longtail_indices(shuffled_labels, counts, seed=0))
    assert np.array_equal(a, longtail_indices(shuffled_labels.tolist(), counts, seed=0))
    assert not np.array_equal(a, longtail_indices(shuffled_labels, counts, seed=1))


@pytest.mark.parametrize("seed", [0, 1, 123])
def test_longtail_indices_match_convention(shuffled_labels, seed):
    counts = longtail_counts(50, 10, 25)
    got = longtail_indices(shuffled_labels, counts, seed=seed)
    assert np.array_equal(got, reference_indices(shuffled_labels, counts, seed))


def test_longtail_indices_small_class_keeps_all():
    labels = np.array([0, 0, 0, 1, 0, 1])
    idx = longtail_indices(labels, [2, 5], seed=0)
    assert sorted(idx[2:].tolist()) == [3, 5]
    assert len(idx) == 4


# --- shot groups ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "group"),
    [(5000, "many"), (101, "many"), (100, "medium"), (50, "medium"), (20, "medium"),
     (19, "few"), (1, "few"), (0, "few")],
)
def test_shot_group_boundaries(count, group):
    assert shot_group_of(count) == group


def test_shot_groups_with_empty_group():
    groups = shot_groups(CIFAR10_LT_R100)
    assert list(groups) == list(SHOT_GROUPS)
    assert groups == {"many": [0, 1, 2, 3, 4, 5, 6, 7], "medium": [8, 9], "few": []}
    assert shot_groups([19, 500, 20]) == {"many": [1], "medium": [2], "few": [0]}
    assert shot_groups(np.array([3, 4])) == {"many": [], "medium": [], "few": [0, 1]}


def test_shot_groups_partition_cifar100_lt():
    counts = longtail_counts(500, 100, 100)
    groups = shot_groups(counts)
    assert sorted(sum(groups.values(), [])) == list(range(100))
    assert all(shot_group_of(counts[c]) == g for g, cs in groups.items() for c in cs)
    assert all(groups.values())


# --- CIFAR pickles --------------------------------------------------------------------


def read_batch(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def test_load_cifar10_pickles(cifar10_root):
    train, test = load_cifar(cifar10_root, "cifar10")
    folder = cifar10_root / "cifar-10-batches-py"
    assert train.pixels.shape == (1000, 32, 32, 3) and train.pixels.dtype == np.uint8
    assert test.pixels.shape == (200, 32, 32, 3)
    assert train.paths is None
    assert train.class_names == read_batch(folder / "batches.meta")["label_names"]
    assert train.class_names == test.class_names and train.num_classes == 10
    labels = sum((read_batch(folder / f"data_batch_{i}")["labels"] for i in range(1, 6)), [])
    assert train.labels.tolist() == labels
    assert test.labels.tolist() == read_batch(folder / "test_batch")["labels"]
    assert train.class_counts() == [100] * 10
    assert test.class_counts() == [20] * 10


def test_cifar_pixel_layout_becomes_hwc(cifar10_root):
    """A row is the R plane, then G, then B, each 32x32 row-major."""
    train, _ = load_cifar(cifar10_root, "cifar10")
    raw = read_batch(cifar10_root / "cifar-10-batches-py" / "data_batch_2")["data"]
    offset = 200  # data_batch_1 holds 200 images
    for i in (0, 7, 199):
        img = train.pixels[offset + i]
        for y, x, ch in ((0, 0, 0), (0, 1, 0), (1, 0, 0), (0, 0, 1), (0, 0, 2), (31, 5, 2)):
            assert img[y, x, ch] == raw[i, ch * 1024 + y * 32 + x]
        rows, cols = np.indices((32, 32))
        for ch in range(3):
            assert np.array_equal(img[..., ch], raw[i, ch * 1024 + rows * 32 + cols])
        pil = train.image(offset + i)
        assert pil.mode == "RGB" and pil.size == (32, 32)
        rgb = tuple(int(raw[i, ch * 1024 + 31 * 32 + 5]) for ch in range(3))
        assert pil.getpixel((5, 31)) == rgb  # (x, y) = (column 5, row 31)


def test_load_cifar100_pickles(cifar100_root):
    train, test = load_cifar(cifar100_root, "cifar100")
    folder = cifar100_root / "cifar-100-python"
    assert train.pixels.shape == (500, 32, 32, 3) and test.pixels.shape == (200, 32, 32, 3)
    assert train.labels.tolist() == read_batch(folder / "train")["fine_labels"]
    assert test.labels.tolist() == read_batch(folder / "test")["fine_labels"]
    assert train.class_names == [f"fine{i:02d}" for i in range(100)]
    assert train.class_counts() == [5] * 100 and test.class_counts() == [2] * 100
    raw = read_batch(folder / "test")["data"]
    assert np.array_equal(test.pixels[3].transpose(2, 0, 1).reshape(-1), raw[3])


def test_load_cifar_unknown_dataset(cifar10_root):
    with pytest.raises(ValueError):
        load_cifar(cifar10_root, "cifar1000")


def test_load_cifar_image_folder_auto_detected(image_folder_root):
    train, test = load_cifar(image_folder_root, "cifar10")
    assert train.class_names == test.class_names == ["a", "b", "c"]
    assert train.pixels is None and len(train.paths) == 9
    assert train.class_counts() == [4, 3, 2] and test.class_counts() == [2, 2, 2]
    for path, label in zip(train.paths, train.labels, strict=True):
        assert Path(path).parent.name == "abc"[label]
        assert Path(path).parent.parent.name == "train"
    img = test.image(0)
    assert img.mode == "RGB" and img.size == (40, 36)


# --- image modes ----------------------------------------------------------------------


def _palette_image(transparency: int | bytes | None) -> Image.Image:
    img = Image.new("P", (6, 5), 1)
    img.putpalette([0, 0, 0, 200, 30, 60] + [0] * (3 * 254))
    if transparency is not None:
        img.info["transparency"] = transparency
    return img


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("gray.png", lambda: Image.new("L", (6, 5), 100), (100, 100, 100)),
        ("rgba.png", lambda: Image.new("RGBA", (6, 5), (10, 20, 30, 0)), (10, 20, 30)),
        ("palette.png", lambda: _palette_image(None), (200, 30, 60)),
        ("palette_index.png", lambda: _palette_image(1), (200, 30, 60)),
        ("palette_alphas.png", lambda: _palette_image(b"\xff\x80"), (200, 30, 60)),
        ("palette.gif", lambda: _palette_image(1), (200, 30, 60)),
        ("cmyk.tif", lambda: Image.new("CMYK", (6, 5), (255, 0, 0, 0)), (0, 255, 255)),
        ("cmyk.jpg", lambda: Image.new("CMYK", (6, 5), (0, 0, 0, 0)), (255, 255, 255)),
    ],
)
def test_image_modes_load_as_rgb(tmp_path, name, make, expected):
    path = tmp_path / name
    source = make()
    source.save(path)
    with Image.open(path) as check:  # the file really holds that mode
        assert check.mode == source.mode
        assert ("transparency" in check.info) == ("transparency" in source.info)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. PIL's "Palette images with Transparency"
        img = path_set(path).image(0)
    assert img.mode == "RGB" and img.size == (6, 5)
    arr = np.asarray(img)
    assert arr.shape == (5, 6, 3)
    assert np.abs(arr.astype(int) - expected).max() <= 2  # JPEG may be off by a little


def test_image_modes_train_and_eval_views(tmp_path):
    Image.new("L", (20, 24), 77).save(tmp_path / "g.png")
    Image.new("RGBA", (32, 32), (1, 2, 3, 4)).save(tmp_path / "a.png")
    images = path_set(tmp_path / "g.png", tmp_path / "a.png")
    train = make_train_dataset(images, DataConfig(), contrastive=True, seed=0)
    evals = make_eval_dataset(images, DataConfig())
    for i in range(2):
        views, _ = train[(0, i)]
        assert all(v.shape == (3, 32, 32) for v in views)
        assert evals[i][0].shape == (3, 32, 32)


# --- errors ---------------------------------------------------------------------------


def test_missing_data_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(BalconError) as err:
        load_cifar(missing, "cifar10")
    assert_one_line_naming(err, missing)
    with pytest.raises(BalconError) as err:
        load_cifar(tmp_path, "cifar100")  # exists, but holds nothing
    assert_one_line_naming(err, tmp_path)


@pytest.mark.parametrize("name", ["data_batch_3", "test_batch", "batches.meta"])
def test_missing_batch_file(cifar10_root, name):
    path = cifar10_root / "cifar-10-batches-py" / name
    path.unlink()
    with pytest.raises(BalconError) as err:
        load_cifar(cifar10_root, "cifar10")
    assert_one_line_naming(err, path)


@pytest.mark.parametrize(
    "content",
    [b"this is not a pickle\n", b"", pickle.dumps([1, 2, 3]),
     pickle.dumps({"data": np.zeros((4, 100), np.uint8), "labels": [0, 1, 2, 3]}),
     pickle.dumps({"data": np.zeros((4, 3072), np.uint8)})],
    ids=["garbage", "empty", "not-a-dict", "bad-shape", "no-labels"],
)
def test_corrupt_pickle(cifar10_root, content):
    path = cifar10_root / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(content)
    with pytest.raises(BalconError) as err:
        load_cifar(cifar10_root, "cifar10")
    assert_one_line_naming(err, path)


def test_corrupt_cifar100_pickle(cifar100_root):
    path = cifar100_root / "cifar-100-python" / "train"
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    with pytest.raises(BalconError) as err:
        load_cifar(cifar100_root, "cifar100")
    assert_one_line_naming(err, path)


@pytest.mark.parametrize("how", ["garbage", "truncated", "empty"])
def test_corrupt_image_file(tmp_path, how):
    path = tmp_path / "bad.png"
    Image.fromarray(np.full((32, 32, 3), 9, np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes({"garbage": b"definitely not a PNG", "truncated": data[: len(data) // 2],
                      "empty": b""}[how])
    with pytest.raises(BalconError) as err:
        path_set(path).image(0)
    assert_one_line_naming(err, path)


# --- digits and load_image_sets -------------------------------------------------------


def test_load_digits():
    from sklearn.datasets import load_digits as sk_digits

    train, test = load_digits()
    for part in (train, test):
        assert part.num_classes == 10
        assert part.pixels.dtype == np.uint8 and part.pixels.shape[1:] == (32, 32, 3)
        assert np.array_equal(part.pixels[..., 0], part.pixels[..., 2])  # gray as RGB
    assert test.class_counts() == [50] * 10
    target = sk_digits().target
    assert len(train) + len(test) == len(target)
    total = np.add(train.class_counts(), test.class_counts())
    assert total.tolist() == np.bincount(target).tolist()
    train_keys = {p.tobytes() for p in train.pixels}
    assert len(train_keys) == len(train)  # the 1,797 images are all distinct
    assert not train_keys & {p.tobytes() for p in test.pixels}
    assert train.pixels.max() == 255 and train.pixels.min() == 0


def test_load_image_sets_subsamples_cifar(cifar10_root):
    full_train, full_test = load_cifar(cifar10_root, "cifar10")
    data = DataConfig(dataset="cifar10", imbalance=10)
    train, test = load_image_sets(data, cifar10_root)
    counts = longtail_counts(100, 10, 10)
    assert counts == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    assert train.class_counts() == counts
    idx = reference_indices(full_train.labels, counts, seed=0)
    assert np.array_equal(train.pixels, full_train.pixels[idx])
    assert np.array_equal(train.labels, full_train.labels[idx])
    assert np.array_equal(test.pixels, full_test.pixels)
    assert test.class_counts() == [20] * 10


def test_load_image_sets_options(cifar10_root):
    step, _ = load_image_sets(DataConfig(imbalance=4, profile="step"), cifar10_root)
    assert step.class_counts() == [100] * 5 + [25] * 5
    other, _ = load_image_sets(DataConfig(imbalance=10, subsample_seed=3), cifar10_root)
    default, _ = load_image_sets(DataConfig(imbalance=10), cifar10_root)
    assert other.class_counts() == default.class_counts()
    assert not np.array_equal(other.pixels, default.pixels)
    full, _ = load_image_sets(DataConfig(imbalance=None), cifar10_root)
    assert full.class_counts() == [100] * 10


def test_load_image_sets_errors(cifar10_root):
    with pytest.raises(BalconError):  # the last class would get int(100 / 1000) = 0 images
        load_image_sets(DataConfig(imbalance=1000), cifar10_root)
    with pytest.raises(BalconError):
        load_image_sets(DataConfig(dataset="cifar10"), None)


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
