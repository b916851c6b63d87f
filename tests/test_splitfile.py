"""Split files (``relative/path label`` per line): parsing, class names, errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from balcon.data import ImageSet, load_split_file
from balcon.errors import BalconError

#: An ImageNet-LT-like train split: synset folders, one label per folder, class 1 has none.
TRAIN = [
    ("train/n01440764/n01440764_10026.JPEG", 0),
    ("train/n01440764/n01440764_10027.JPEG", 0),
    ("train/n01443537/n01443537_2.JPEG", 2),
    ("train/n01440764/n01440764_3.JPEG", 0),
    ("train/n01484850/n01484850_7.JPEG", 3),
]


def color(rel: str) -> tuple[int, int, int]:
    """A colour derived from the path, so each image can be told apart."""
    code = sum(ord(c) * (i + 1) for i, c in enumerate(rel))
    return (code % 251, (code // 251) % 251, (code // 63001) % 251)


def write_images(root: Path, rels: list[str]) -> None:
    """A 3x2 PNG of colour ``color(rel)`` at ``root/rel`` for each ``rel``."""
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (3, 2), color(rel)).save(path, format="PNG")


def write_split(root: Path, name: str, entries: list[tuple[str, int]], end: str = "\n") -> Path:
    """``name`` under ``root`` with one ``rel label`` line per entry."""
    path = root / name
    path.write_text("".join(f"{rel} {label}{end}" for rel, label in entries), encoding="utf-8",
                    newline="")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An image root holding the images of ``TRAIN`` and ``ImageNet_LT_train.txt``."""
    folder = tmp_path / "imagenet_lt"
    write_images(folder, [rel for rel, _ in TRAIN])
    write_split(folder, "ImageNet_LT_train.txt", TRAIN)
    return folder


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# --- happy path -----------------------------------------------------------------------


def test_load_train_split(root):
    train = load_split_file(root, "ImageNet_LT_train.txt")
    assert isinstance(train, ImageSet)
    assert train.pixels is None
    assert train.labels.dtype == np.int64
    assert train.labels.tolist() == [label for _, label in TRAIN]
    assert train.paths == [str(root / rel) for rel, _ in TRAIN]
    assert train.num_classes == 4  # largest label + 1
    assert train.class_names == ["n01440764", "1", "n01443537", "n01484850"]
    assert train.class_counts() == [3, 0, 1, 1]


def test_image_loads_the_listed_file(root):
    train = load_split_file(root, "ImageNet_LT_train.txt")
    for i, (rel, _) in enumerate(TRAIN):
        img = train.image(i)
        assert img.mode == "RGB" and img.size == (3, 2)
        assert img.getpixel((2, 1)) == color(rel)


def test_absolute_split_file_and_num_classes(root, tmp_path):
    elsewhere = write_split(tmp_path, "train.txt", TRAIN)
    train = load_split_file(str(root), str(elsewhere), num_classes=7)
    assert train.num_classes == 7
    assert train.class_names == ["n01440764", "1", "n01443537", "n01484850", "4", "5", "6"]
    assert train.class_counts() == [3, 0, 1, 1, 0, 0, 0]
    assert train.paths[0] == str(root / TRAIN[0][0])


def test_val_split_uses_train_class_names(root):
    train = load_split_file(root, "ImageNet_LT_train.txt", num_classes=5)
    val_entries = [("val/n01484850/ILSVRC2012_val_1.JPEG", 3),
                   ("val/mixed/ILSVRC2012_val_2.JPEG", 1),
                   ("val/mixed/ILSVRC2012_val_3.JPEG", 4)]
    write_images(root, [rel for rel, _ in val_entries])
    write_split(root, "ImageNet_LT_val.txt", val_entries)
    val = load_split_file(root, "ImageNet_LT_val.txt", class_names=train.class_names)
    assert val.class_names == train.class_names == ["n01440764", "1", "n01443537",
                                                    "n01484850", "4"]
    assert val.class_names is not train.class_names
    assert val.labels.tolist() == [3, 1, 4]
    assert val.class_counts() == [0, 1, 0, 1, 1]
    both = load_split_file(root, "ImageNet_LT_val.txt", num_classes=5,
                           class_names=train.class_names)
    assert both.class_names == train.class_names


def test_inaturalist_category_folders(tmp_path):
    entries = [("train_val2018/Plantae/7477/3b60c9486db1d2ee875f11a669fbde4a.jpg", 2),
               ("train_val2018/Plantae/7477/ffff.jpg", 2),
               ("train_val2018/Aves/12/a.jpg", 0),
               ("train_val2018/Fungi/13/b.jpg", 1)]
    write_images(tmp_path, [rel for rel, _ in entries])
    write_split(tmp_path, "iNaturalist18_train.txt", entries)
    train = load_split_file(tmp_path, "iNaturalist18_train.txt")
    assert train.class_names == ["12", "13", "7477"]
    assert train.labels.tolist() == [2, 2, 0, 1]


@pytest.mark.parametrize(
    "entries",
    [
        # one folder holds two labels
        [("imgs/a/1.png", 0), ("imgs/a/2.png", 1), ("imgs/b/3.png", 2)],
        # one label spread over two folders
        [("imgs/a/1.png", 0), ("imgs/b/2.png", 0), ("imgs/c/3.png", 1), ("imgs/d/4.png", 2)],
        # images directly in the root
        [("1.png", 0), ("2.png", 1), ("imgs/c/3.png", 2)],
        # two folders of the same name
        [("x/a/1.png", 0), ("y/a/2.png", 1), ("z/c/3.png", 2)],
        # a folder named like the number of an imageless class (class 3)
        [("imgs/a/1.png", 0), ("imgs/3/2.png", 1), ("imgs/c/3.png", 2), ("imgs/d/4.png", 4)],
    ],
    ids=["shared-folder", "split-label", "root-level", "same-name", "number-clash"],
)
def test_class_names_are_numbers_unless_one_to_one(tmp_path, entries):
    write_images(tmp_path, [rel for rel, _ in entries])
    write_split(tmp_path, "split.txt", entries)
    images = load_split_file(tmp_path, "split.txt")
    count = max(label for _, label in entries) + 1
    assert images.class_names == [str(c) for c in range(count)]
    assert images.labels.tolist() == [label for _, label in entries]


def test_comments_blank_lines_crlf_and_spaces(tmp_path):
    rels = ["my images/class a/photo 1.png", "my images/class b/x.png", "tab\tdir/c/y.png"]
    write_images(tmp_path, rels)
    text = (
        "# ImageNet-LT-style split\r\n"
        "\r\n"
        f"{rels[0]} 0\r\n"
        "   \r\n"
        f"  {rels[1]}\t1   \r\n"
        "    # an indented comment\r\n"
        f"{rels[2]} 2"  # no final newline
    )
    (tmp_path / "split.txt").write_bytes(text.encode("utf-8"))
    images = load_split_file(tmp_path, "split.txt")
    assert images.labels.tolist() == [0, 1, 2]
    assert images.paths == [str(tmp_path / rel) for rel in rels]
    assert images.class_names == ["class a", "class b", "c"]
    assert images.image(0).getpixel((0, 0)) == color(rels[0])


def test_lf_and_bom(tmp_path):
    write_images(tmp_path, ["d/a.png", "e/b.png"])
    (tmp_path / "s.txt").write_bytes("\ufeffd/a.png 1\ne/b.png 0\n\n".encode())
    images = load_split_file(tmp_path, "s.txt")
    assert images.labels.tolist() == [1, 0]
    assert images.class_names == ["e", "d"]


# --- errors ---------------------------------------------------------------------------


def test_missing_split_file(root, tmp_path):
    with pytest.raises(BalconError, match="relative to --data-dir") as err:
        load_split_file(root, "ImageNet_LT_test.txt")
    assert str(root / "ImageNet_LT_test.txt") in one_line(err)
    with pytest.raises(BalconError, match=re.escape(str(tmp_path / "nope.txt"))):
        load_split_file(root, tmp_path / "nope.txt")
    with pytest.raises(BalconError, match="is a folder"):
        load_split_file(root, "train")


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("train/n01440764/n01440764_3.JPEG", r"'train/n01440764/n01440764_3\.JPEG' has one field"),
        ("7", "'7' has one field"),
        ("train/n01440764/n01440764_3.JPEG zero", "label 'zero' .* is not an integer"),
        ("train/n01440764/n01440764_3.JPEG 1.5", r"label '1\.5' .* is not an integer"),
        ("train/n01440764/n01440764_3.JPEG,0", "has one field"),
    ],
    ids=["no-label", "no-path", "word", "float", "comma"],
)
def test_malformed_line(root, line, match):
    path = root / "ImageNet_LT_train.txt"
    path.write_text(f"# header\n{TRAIN[0][0]} 0\n\n{line}\n{TRAIN[1][0]} 0\n")
    with pytest.raises(BalconError, match=match) as err:
        load_split_file(root, path.name)
    message = one_line(err)
    assert message.startswith(f"{path}:4: ")
    assert "'relative/path label'" in message


def test_label_out_of_range_with_num_classes(root):
    with pytest.raises(BalconError, match=r"label 3 is outside 0\.\.2; .*data\.num_classes") as err:
        load_split_file(root, "ImageNet_LT_train.txt", num_classes=3)
    assert one_line(err).startswith(f"{root / 'ImageNet_LT_train.txt'}:5: ")


def test_label_out_of_range_against_train_names(root):
    with pytest.raises(BalconError, match=r":3: label 2 is outside 0\.\.1 \(2 such lines in all\)"
                                          r".*data\.num_classes"):
        load_split_file(root, "ImageNet_LT_train.txt", class_names=["a", "b"])


def test_negative_label(root):
    path = write_split(root, "neg.txt", TRAIN[:2] + [(TRAIN[2][0], -1)])
    with pytest.raises(BalconError, match=r"neg\.txt:3: label -1 is negative.*0\.\.C-1") as err:
        load_split_file(root, "neg.txt")
    assert str(path) in one_line(err)


def test_huge_label_without_num_classes(root):
    write_split(root, "huge.txt", TRAIN[:1] + [(TRAIN[1][0], 10**12)])
    with pytest.raises(BalconError, match=r"huge\.txt:2: label 1000000000000 .*data\.num_classes"):
        load_split_file(root, "huge.txt")
    with pytest.raises(BalconError, match=r"huge\.txt:2: label 1000000000000 is outside 0\.\.9"):
        load_split_file(root, "huge.txt", num_classes=10)


def test_missing_images(root):
    (root / TRAIN[2][0]).unlink()
    (root / TRAIN[4][0]).unlink()
    (root / "train/n01440764/n01440764_3.JPEG").unlink()
    (root / "train/n01440764/n01440764_3.JPEG").mkdir()  # a folder is no image file
    with pytest.raises(BalconError) as err:
        load_split_file(root, "ImageNet_LT_train.txt")
    message = one_line(err)
    assert message.startswith(f"{root / 'ImageNet_LT_train.txt'}:3: ")
    assert f"image {TRAIN[2][0]} not found under {root} " in message
    assert "3 of the 5 listed files are missing" in message
    assert "--data-dir" in message


def test_wrong_root(root, tmp_path):
    with pytest.raises(BalconError, match=r":1: image .* not found .*5 of the 5"):
        load_split_file(tmp_path, root / "ImageNet_LT_train.txt")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\r\n\r\n   \n"])
def test_empty_split_file(root, text):
    path = root / "empty.txt"
    path.write_text(text)
    with pytest.raises(BalconError, match="lists no images") as err:
        load_split_file(root, "empty.txt")
    assert str(path) in one_line(err)


def test_not_utf8(root):
    (root / "latin.txt").write_bytes(b"# ok\ntrain/caf\xe9/1.png 0\n")
    with pytest.raises(BalconError, match=r"latin\.txt:2: not UTF-8"):
        load_split_file(root, "latin.txt")


def test_bad_arguments(root):
    with pytest.raises(ValueError):
        load_split_file(root, "ImageNet_LT_train.txt", num_classes=0)
    with pytest.raises(ValueError):
        load_split_file(root, "ImageNet_LT_train.txt", num_classes=5, class_names=["a"])
