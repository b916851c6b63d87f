"""Labelled images: the :class:`ImageSet` every source gives, ImageFolder trees, and
scikit-learn's digits (CIFAR's pickles are in :mod:`balcon.data.cifar`).

Every source gives an :class:`ImageSet`: labels, class names, and the images either
as uint8 pixels in memory or as files read on demand. Every image comes out RGB,
whatever its mode on disk (grayscale, RGBA, palette, CMYK).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from balcon.data.longtail import longtail_indices
from balcon.errors import BalconError

__all__ = [
    "ImageSet",
    "find_images",
    "load_digits",
    "load_folder_splits",
    "load_image_folder",
    "to_8bit",
    "to_rgb",
    "unused_folders",
]


#: PIL modes of one channel deeper than 8 bits: 16/32-bit integers and 32-bit floats.
DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float single-channel image as 8-bit grayscale (mode L).

    The scale comes from the mode, so every image of a dataset gets the same one:
    16-bit images (``I;16``) are divided by 257 (65535 -> 255); floats (``F``) are taken
    as 0..1 and multiplied by 255. 32-bit integers (``I``) are divided by 257 when they
    fit 0..65535 (16-bit data that older Pillow opened as ``I``), kept when they fit
    0..255. Only values outside those ranges (negative, or larger) are stretched from
    the image's own minimum and maximum. NaN counts as 0. PIL's own conversion would
    clip everything above 255 instead.
    """
    values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0,
                           neginf=0.0)
    low = float(values.min()) if values.size else 0.0
    high = float(values.max()) if values.size else 0.0
    if image.mode == "F" and 0.0 <= low and high <= 1.0:
        values = values * 255.0
    elif image.mode.startswith("I;16"):
        values = values / 257.0
    elif image.mode == "I" and 0.0 <= low and high <= 255.0:
        pass
    elif image.mode == "I" and 0.0 <= low and high <= 65535.0:
        values = values / 257.0
    else:  # out of the mode's range: stretch this image's own range to 0..255
        values = (values - low) * (255.0 / max(high - low, 1e-12))
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as RGB; palette images with transparency go through RGBA first, deeper
    than 8-bit grayscale through :func:`to_8bit`."""
    if image.mode == "RGB":
        return image
    if image.mode in DEEP_MODES:
        image = to_8bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


#: What PIL raises on a file it cannot read as an image.
UNREADABLE = (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError)


@dataclass
class ImageSet:
    """Labelled images: ``pixels`` (N, H, W, 3) uint8 in memory, or ``paths`` on disk."""

    labels: np.ndarray
    class_names: list[str]
    pixels: np.ndarray | None = None
    paths: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        """Number of classes, including any without images."""
        return len(self.class_names)

    def class_counts(self) -> list[int]:
        """Images per class, in class order."""
        return np.bincount(self.labels, minlength=self.num_classes).tolist()

    def subset(self, indices: np.ndarray) -> ImageSet:
        """The images at ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        return ImageSet(
            labels=self.labels[indices],
            class_names=self.class_names,
            pixels=None if self.pixels is None else self.pixels[indices],
            paths=None if self.paths is None else [self.paths[i] for i in indices],
        )

    def without(self, indices: list[int]) -> ImageSet:
        """The images not at ``indices``, in their order."""
        dropped = set(indices)
        return self.subset(np.array([i for i in range(len(self)) if i not in dropped],
                                    dtype=np.int64))

    def image(self, index: int) -> Image.Image:
        """Image ``index`` as an RGB PIL image."""
        if self.pixels is not None:
            return Image.fromarray(self.pixels[index])
        assert self.paths is not None
        try:
            return self._read(index)
        except UNREADABLE as err:
            raise BalconError(
                f"cannot read image {self.paths[index]} ({type(err).__name__}: {err}); "
                "replace or remove the file (balcon train skips such files with --set "
                "data.on_bad_image=skip, balcon predict with --skip-unreadable)"
            ) from None

    def _read(self, index: int) -> Image.Image:
        """Image ``index`` from its file; raises what PIL raises (see ``UNREADABLE``)."""
        assert self.paths is not None
        with Image.open(self.paths[index]) as img:
            img.load()
            return to_rgb(img)

    def unreadable(self, workers: int = 8) -> list[tuple[int, str]]:
        """``(index, reason)`` of every image that cannot be read (decoded in threads)."""
        if self.paths is None:
            return []
        from concurrent.futures import ThreadPoolExecutor

        def check(index: int) -> tuple[int, str] | None:
            try:
                self._read(index)
            except UNREADABLE as err:
                return index, f"{type(err).__name__}: {err}"
            return None

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return [r for r in pool.map(check, range(len(self))) if r is not None]


def load_image_folder(root: str | Path, class_names: list[str] | None = None) -> ImageSet:
    """An ImageFolder tree (``root/<class>/<image>``) as an :class:`ImageSet`.

    Classes are the sub-folder names, sorted, unless ``class_names`` fixes them (a
    test split must use the training split's classes).
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    root = Path(root)
    if not root.is_dir():
        raise BalconError(f"image folder {root} does not exist; check --data-dir")
    try:
        found, _ = find_classes(str(root))
    except FileNotFoundError:
        raise BalconError(
            f"{root} holds no class sub-folders; expected {root}/<class>/<image files>"
        ) from None
    names = class_names if class_names is not None else found
    missing = sorted(set(found) - set(names))
    if missing:
        raise BalconError(
            f"{root} has class folders the training split lacks: {', '.join(missing[:5])}; "
            "give both splits the same classes"
        )
    class_to_idx = {name: i for i, name in enumerate(names)}
    present = {name: class_to_idx[name] for name in found}
    samples = make_dataset(str(root), present, extensions=IMG_EXTENSIONS, allow_empty=True)
    if not samples:
        raise BalconError(
            f"{root} holds no images ({', '.join(IMG_EXTENSIONS[:4])}, ...) in its class folders"
        )
    paths, labels = zip(*samples, strict=True)
    return ImageSet(labels=np.asarray(labels, dtype=np.int64), class_names=list(names),
                    paths=list(paths))


def find_images(inputs: list[str | Path]) -> list[str]:
    """Image files named by ``inputs``: files as given, folders searched recursively.

    Folders contribute the files with an image extension (torchvision's list, any
    case), sorted by path; a file given by name is taken whatever its extension.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS

    found: list[str] = []
    for item in map(Path, inputs):
        if item.is_file():
            found.append(str(item))
        elif item.is_dir():
            files = sorted(str(f) for f in item.rglob("*")
                           if f.is_file() and f.suffix.lower() in IMG_EXTENSIONS)
            if not files:
                raise BalconError(f"{item} holds no image files ({', '.join(IMG_EXTENSIONS[:4])}"
                                  ", ...); give image files or folders of them")
            found.extend(files)
        else:
            raise BalconError(f"{item} does not exist; give image files or folders of them")
    if not found:
        raise BalconError("no images given; name image files or folders of them")
    return found


#: Folder names read as the validation split (Keras and Kaggle say valid/ or validation/).
VAL_FOLDERS = ("val", "valid", "validation")


def unused_folders(root: str | Path) -> list[str]:
    """Sub-folders of an image-folder root that :func:`load_folder_splits` does not read."""
    used = {"train", "test", *VAL_FOLDERS}
    root = Path(root)
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and p.name not in used and not p.name.startswith("."))


def _val_folder(root: Path) -> Path | None:
    found = [root / name for name in VAL_FOLDERS if (root / name).is_dir()]
    if len(found) > 1:
        names = " and ".join(f"{p.name}/" for p in found)
        raise BalconError(f"{root} has both {names}; keep one validation folder (balcon reads "
                          f"{', '.join(f'{n}/' for n in VAL_FOLDERS)} as the validation split)")
    return found[0] if found else None


def load_folder_splits(root: str | Path) -> tuple[ImageSet, ImageSet | None, ImageSet | None]:
    """``root/train`` with the optional validation (``val/``, ``valid/`` or
    ``validation/``) and ``root/test`` ImageFolder trees.

    The held-out splits take the training split's classes (a class may lack images
    there). Returns ``(train, val, test)``, None for a split that is absent.
    """
    root = Path(root)
    if not root.is_dir():
        raise BalconError(f"data folder {root} does not exist; check --data-dir")
    if not (root / "train").is_dir():
        raise BalconError(
            f"{root} has no train/ folder; expected {root}/train/<class>/<image> (and "
            "optionally val/ and test/ alike), or set data.train_split to a split file"
        )
    val_dir = _val_folder(root)
    train = load_image_folder(root / "train")
    held_out = [None if folder is None or not folder.is_dir() else
                load_image_folder(folder, class_names=train.class_names)
                for folder in (val_dir, root / "test")]
    return train, held_out[0], held_out[1]


def load_digits(
    test_per_class: int = 50, size: int = 32, seed: int = 0
) -> tuple[ImageSet, ImageSet]:
    """scikit-learn's bundled handwritten digits (1,797 images, 8x8) as 32x32 RGB.

    A balanced test set of ``test_per_class`` images per class is held out (after a
    seeded shuffle); the rest is the training set. Needs no download.
    """
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    raw = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR))
                    for im in raw])
    pixels = np.repeat(big[..., None], 3, axis=3)
    labels = bunch.target.astype(np.int64)
    test = np.sort(longtail_indices(labels, [test_per_class] * 10, seed))
    train = np.setdiff1d(np.arange(len(labels)), test)
    full = ImageSet(labels=labels, class_names=[str(d) for d in range(10)], pixels=pixels)
    return full.subset(train), full.subset(test)
