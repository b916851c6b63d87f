"""Split files: one ``relative/path label`` line per image, paths relative to an image root.

This is the format of the ImageNet-LT and iNaturalist 2018 splits released with OLTR
(Liu et al., CVPR 2019) and used by BCL (Zhu et al., CVPR 2022):
``ImageNet_LT_{train,val,test}.txt`` and ``iNaturalist18_{train,val}.txt``, e.g.::

    train/n01440764/n01440764_10026.JPEG 0
    train_val2018/Plantae/7477/3b60c9486db1d2ee875f11a669fbde4a.jpg 7477

The label is the last whitespace-separated field, so paths may contain spaces. Blank
lines and lines starting with ``#`` are skipped; CRLF line ends are fine. Every listed
file must exist when the split is loaded, so a typo fails at start, not in epoch 37.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from balcon.data.sources import ImageSet
from balcon.errors import BalconError

__all__ = ["load_split_file"]

#: The most classes inferred from the labels alone (a stray huge label would otherwise
#: ask for billions of classes); ``num_classes`` may set more.
MAX_INFERRED_CLASSES = 1_000_000

_LABEL = re.compile(r"-?[0-9]+")
_EXPECTED = "expected 'relative/path label' (e.g. 'train/n01440764/img.JPEG 0')"


def _quote(line: str, limit: int = 120) -> str:
    """``line`` in quotes, shortened to about ``limit`` characters."""
    return repr(line if len(line) <= limit else line[:limit] + "...")


def _read_text(path: Path, root: Path, missing_hint: str | None = None) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BalconError(
            f"split file {path} not found; a relative split file is looked up relative to "
            f"--data-dir ({root}): fix the path or --data-dir"
            + (f", or {missing_hint}" if missing_hint else "")
        ) from None
    except IsADirectoryError:
        raise BalconError(
            f"split file {path} is a folder; point it at the 'relative/path label' text file"
        ) from None
    except OSError as err:
        raise BalconError(
            f"cannot read split file {path} ({type(err).__name__}: {err.strerror or err})"
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise BalconError(
            f"{path}:{line}: not UTF-8 text (byte {data[err.start]:#04x}); "
            "save the split file as UTF-8"
        ) from None


def _parse(path: Path, text: str) -> tuple[list[str], list[int], list[int]]:
    """Relative paths, labels and 1-based line numbers of the image lines of ``text``."""
    rels: list[str] = []
    labels: list[int] = []
    linenos: list[int] = []
    # Universal newlines: \r\n and \r end a line as \n does; a missing final newline is fine.
    for lineno, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.rsplit(maxsplit=1)
        if len(fields) != 2:
            raise BalconError(
                f"{path}:{lineno}: {_quote(line)} has one field; {_EXPECTED}: "
                "fix or remove that line"
            )
        rel, label = fields
        if not _LABEL.fullmatch(label):
            raise BalconError(
                f"{path}:{lineno}: label {label!r} in {_quote(line)} is not an integer; "
                f"{_EXPECTED}: fix or remove that line"
            )
        rels.append(rel)
        labels.append(int(label))
        linenos.append(lineno)
    return rels, labels, linenos


def _num_classes(
    path: Path, labels: list[int], linenos: list[int],
    num_classes: int | None, class_names: list[str] | None,
) -> tuple[int, str]:
    """C, and a note on where it comes from and how to change it."""
    if num_classes is not None:
        return num_classes, f"C = data.num_classes = {num_classes}; raise it if there are more"
    if class_names is not None:
        return len(class_names), (
            f"C = {len(class_names)}, the training split's classes; "
            "data.num_classes sets C if classes lack training images"
        )
    top = max(max(labels), 0)
    if top + 1 > MAX_INFERRED_CLASSES:
        line = linenos[labels.index(top)]
        raise BalconError(
            f"{path}:{line}: label {top} would make {top + 1:,} classes (C = largest label + 1); "
            "fix that label, or set data.num_classes if that many classes is right"
        )
    return top + 1, f"C = largest label + 1 = {top + 1} unless data.num_classes sets C"


def _check_labels(
    path: Path, labels: list[int], linenos: list[int], num_classes: int, note: str
) -> None:
    bad = [i for i, y in enumerate(labels) if not 0 <= y < num_classes]
    if bad:
        first = bad[0]
        label = labels[first]
        what = "is negative" if label < 0 else f"is outside 0..{num_classes - 1}"
        more = f" ({len(bad):,} such lines in all)" if len(bad) > 1 else ""
        raise BalconError(
            f"{path}:{linenos[first]}: label {label} {what}{more}; labels must lie in "
            f"0..C-1 ({note}): fix the label"
        )


def _check_files(
    path: Path, root: Path, rels: list[str], paths: list[str], linenos: list[int]
) -> None:
    # A plain loop of stat calls; the whole load takes ~0.47 s per 100k lines (BENCHMARKS.md).
    missing = [i for i, p in enumerate(paths) if not os.path.isfile(p)]
    if missing:
        first = missing[0]
        raise BalconError(
            f"{path}:{linenos[first]}: image {rels[first]} not found under {root} "
            f"({len(missing):,} of the {len(paths):,} listed files are missing); "
            "fix --data-dir (the image root) or the split file's paths"
        )


def _folder_names(rels: list[str], labels: list[int], num_classes: int) -> list[str]:
    """Parent folder names as class names when folders and labels match one-to-one.

    Every label's images must sit in one folder, and every such folder hold one label;
    classes without images are then named by their number. Otherwise every class is.
    """
    numbers = [str(c) for c in range(num_classes)]
    folder_of: dict[int, str] = {}
    label_of: dict[str, int] = {}
    normal: dict[str, str] = {}
    for rel, label in zip(rels, labels, strict=True):
        parent = os.path.dirname(rel)
        folder = normal.get(parent)
        if folder is None:
            folder = normal[parent] = os.path.normpath(parent)
        if folder_of.setdefault(label, folder) != folder:
            return numbers
        if label_of.setdefault(folder, label) != label:
            return numbers
    names = list(numbers)
    for label, folder in folder_of.items():
        names[label] = os.path.basename(folder)
    if {"", ".", ".."} & set(names) or len(set(names)) != num_classes:
        return numbers  # images at the root, or two folders (or a number) sharing a name
    return names


def load_split_file(
    root: str | Path,
    split_file: str | Path,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    missing_hint: str | None = None,
) -> ImageSet:
    """The images listed in a ``relative/path label`` split file, as an :class:`ImageSet`.

    ``split_file`` is absolute or relative to ``root``, the folder the listed paths are
    relative to (``--data-dir``). The number of classes C is ``num_classes`` if given,
    else ``len(class_names)`` if given, else the largest label + 1; labels must lie in
    0..C-1. Class names are ``class_names`` when given (pass the training split's names
    for val and test), else the parent folder of each class's images when folders and
    labels match one-to-one (ImageNet-LT's synsets, iNaturalist's category ids), else the
    label numbers. Every listed file must exist; problems raise :class:`BalconError`
    naming the split file and line; ``missing_hint`` ends the message for a split file
    that does not exist (e.g. how to run without that split).
    """
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if num_classes is not None and class_names is not None and len(class_names) != num_classes:
        raise ValueError(
            f"{len(class_names)} class names given for num_classes={num_classes}"
        )
    root = Path(root)
    path = root / split_file
    rels, labels, linenos = _parse(path, _read_text(path, root, missing_hint))
    if not rels:
        raise BalconError(
            f"split file {path} lists no images (only blank or # lines); "
            "expected one 'relative/path label' line per image"
        )
    count, note = _num_classes(path, labels, linenos, num_classes, class_names)
    _check_labels(path, labels, linenos, count, note)
    paths = [os.path.join(root, rel) for rel in rels]
    _check_files(path, root, rels, paths, linenos)
    if class_names is not None:
        names = list(class_names)
    else:
        names = _folder_names(rels, labels, count)
    return ImageSet(labels=np.asarray(labels, dtype=np.int64), class_names=names, paths=paths)
