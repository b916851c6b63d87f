"""Sources: CIFAR pickles, ImageFolder trees, image modes, digits, errors."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_longtail import reference_indices

from balcon.config import DataConfig
from balcon.data import (
    ImageSet,
    load_cifar,
    load_digits,
    load_image_sets,
    longtail_counts,
    make_eval_dataset,
    make_train_dataset,
)
from balcon.errors import BalconError


def path_set(*paths: Path) -> ImageSet:
    """An :class:`ImageSet` of image files, all of class 0."""
    return ImageSet(labels=np.zeros(len(paths), dtype=np.int64), class_names=["a"],
                    paths=[str(p) for p in paths])


def assert_one_line_naming(err: pytest.ExceptionInfo, path: Path) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message


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
        # deeper than 8 bits: scaled to 0..255, not clipped
        ("gray16.png", lambda: Image.new("I;16", (6, 5), 32896), (128, 128, 128)),
        ("gray32.tif", lambda: Image.new("I", (6, 5), 65535), (255, 255, 255)),
        ("float01.tif", lambda: Image.new("F", (6, 5), 0.5), (128, 128, 128)),
        ("gray32_8bit.tif", lambda: Image.new("I", (6, 5), 77), (77, 77, 77)),
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


def test_deep_images_scale_by_their_mode():
    """One scale per mode, so images of a dataset stay comparable; outliers stretched."""
    from balcon.data.sources import to_8bit

    def pixels(mode: str, values: list[float]) -> list[int]:
        array = np.array([values], dtype=np.float32 if mode == "F" else np.int32)
        img = Image.fromarray(array, mode="F") if mode == "F" else \
            Image.fromarray(array.astype(np.uint16)).convert("I;16") if mode == "I;16" else \
            Image.fromarray(array, mode="I")
        assert img.mode == mode
        return np.asarray(to_8bit(img)).ravel().tolist()

    assert pixels("I;16", [0, 257, 4095, 65535]) == [0, 1, 16, 255]  # a dark 12-bit image
    assert pixels("I", [0, 100, 200, 250]) == [0, 100, 200, 250]
    assert pixels("I", [0, 100, 200, 65535]) == [0, 0, 1, 255]
    assert pixels("I", [-1000, 0, 1000, 1000]) == [0, 128, 255, 255]  # out of range: stretch
    assert pixels("F", [0.0, 0.5, 1.0, float("nan")]) == [0, 128, 255, 0]
    assert pixels("F", [-1.0, 0.0, 1.0, 1.0]) == [0, 128, 255, 255]


def test_image_modes_train_and_eval_views(tmp_path):
    Image.new("L", (20, 24), 77).save(tmp_path / "g.png")
    Image.new("RGBA", (32, 32), (1, 2, 3, 4)).save(tmp_path / "a.png")
    images = path_set(tmp_path / "g.png", tmp_path / "a.png")
    train = make_train_dataset(images, DataConfig(), views=3, seed=0)
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
    splits = load_image_sets(data, cifar10_root)
    train, test = splits.train, splits.test
    counts = longtail_counts(100, 10, 10)
    assert counts == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    assert train.class_counts() == counts
    idx = reference_indices(full_train.labels, counts, seed=0)
    assert np.array_equal(train.pixels, full_train.pixels[idx])
    assert np.array_equal(train.labels, full_train.labels[idx])
    assert np.array_equal(test.pixels, full_test.pixels)
    assert test.class_counts() == [20] * 10


def test_load_image_sets_options(cifar10_root):
    step = load_image_sets(DataConfig(imbalance=4, profile="step"), cifar10_root).train
    assert step.class_counts() == [100] * 5 + [25] * 5
    other = load_image_sets(DataConfig(imbalance=10, subsample_seed=3), cifar10_root).train
    default = load_image_sets(DataConfig(imbalance=10), cifar10_root).train
    assert other.class_counts() == default.class_counts()
    assert not np.array_equal(other.pixels, default.pixels)
    full = load_image_sets(DataConfig(imbalance=None), cifar10_root).train
    assert full.class_counts() == [100] * 10


def test_load_image_sets_errors(cifar10_root):
    with pytest.raises(BalconError):  # the last class would get int(100 / 1000) = 0 images
        load_image_sets(DataConfig(imbalance=1000), cifar10_root)
    with pytest.raises(BalconError):
        load_image_sets(DataConfig(dataset="cifar10"), None)


@pytest.mark.parametrize("name", ["val", "valid", "validation"])
def test_validation_folder_names(image_folder_root: Path, tmp_path: Path, name: str):
    """Keras / Kaggle name the validation split valid/ or validation/: balcon reads all
    three as val (best epoch chosen on it, not on test) and names folders it skips."""
    import shutil

    from balcon.config import DataConfig
    from balcon.data import load_image_sets

    shutil.copytree(image_folder_root / "test", image_folder_root / name)
    (image_folder_root / "extra" / "a").mkdir(parents=True)
    splits = load_image_sets(DataConfig(dataset="imagefolder"), image_folder_root)
    assert splits.val is not None and len(splits.val) == 6
    assert splits.selection_split == "val" and splits.report_split == "test"
    assert splits.unused == ("extra",)


def test_two_validation_folders_are_refused(image_folder_root: Path):
    import shutil

    from balcon.data import load_folder_splits

    shutil.copytree(image_folder_root / "test", image_folder_root / "val")
    shutil.copytree(image_folder_root / "test", image_folder_root / "validation")
    with pytest.raises(BalconError, match="has both val/ and validation/; keep one"):
        load_folder_splits(image_folder_root)
