"""CIFAR-10/100 as :class:`~balcon.data.sources.ImageSet` pairs: torchvision's pickle
folders (read without running code) or an ImageFolder copy with ``train/`` and ``test/``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from balcon.data.sources import ImageSet, load_image_folder
from balcon.errors import BalconError

__all__ = ["CIFAR_FOLDERS", "load_cifar"]

#: torchvision's folder name of each CIFAR variant.
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}

#: The only callables a CIFAR pickle may name: numpy's array rebuilders (numpy 1 and 2
#: module names) and the codec Python 2 pickles use for bytes. Anything else (a pickle
#: that would run code when loaded) is refused, as ``torch.load(weights_only=True)``
#: refuses it in a checkpoint.
CIFAR_PICKLE_GLOBALS = {
    *((f"numpy.{core}.multiarray", name) for core in ("core", "_core")
      for name in ("_reconstruct", "scalar")),
    *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}
#: How to get a good copy, whatever command met the bad one.
REFETCH = "re-download it (balcon train --download fetches it) or re-create it"


class _CifarUnpickler(pickle.Unpickler):
    """Loads numbers, strings, lists, dicts and numpy arrays; nothing that runs code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in CIFAR_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR file "
                                         "never does")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = _CifarUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise BalconError(
            f"{path} is missing; the CIFAR folder {path.parent} is incomplete, {REFETCH}"
        ) from None
    except pickle.UnpicklingError as err:
        raise BalconError(f"{path} is not a CIFAR pickle ({err}); {REFETCH}") from None
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise BalconError(
            f"{path} is not a CIFAR pickle ({type(err).__name__}); {REFETCH}"
        ) from None
    if not isinstance(data, dict):
        raise BalconError(f"{path} is not a CIFAR pickle (no dict inside); re-create it")
    return data


def _cifar_arrays(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    if "data" not in batch or label_key not in batch:
        raise BalconError(f"{path} lacks 'data' or '{label_key}'; it is not a CIFAR batch file")
    data = np.asarray(batch["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072 or len(batch[label_key]) != len(data):
        raise BalconError(
            f"{path}: expected N x 3072 uint8 pixels and N labels, got {data.shape}; re-create it"
        )
    pixels = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(pixels), np.asarray(batch[label_key], dtype=np.int64)


def _load_cifar_pickles(folder: Path, dataset: str, train: bool) -> ImageSet:
    if dataset == "cifar10":
        files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        label_key, meta, names_key = "labels", "batches.meta", "label_names"
    else:
        files = ["train" if train else "test"]
        label_key, meta, names_key = "fine_labels", "meta", "fine_label_names"
    parts = [_cifar_arrays(folder / f, label_key) for f in files]
    names = _unpickle(folder / meta).get(names_key)
    expected = 10 if dataset == "cifar10" else 100
    if not isinstance(names, list) or len(names) != expected:
        raise BalconError(f"{folder / meta}: expected {expected} class names under '{names_key}'")
    labels = np.concatenate([p[1] for p in parts])
    if labels.min() < 0 or labels.max() >= expected:
        raise BalconError(f"{folder}: labels outside 0..{expected - 1}; re-create the folder")
    return ImageSet(
        labels=labels, class_names=[str(n) for n in names],
        pixels=np.concatenate([p[0] for p in parts]),
    )


def _split_dirs(root: Path) -> tuple[Path, Path] | None:
    train = root / "train"
    for name in ("test", "val"):
        if train.is_dir() and (root / name).is_dir():
            return train, root / name
    return None


def _load_cifar_folders(root: str | Path) -> tuple[ImageSet, ImageSet]:
    """An ImageFolder copy of CIFAR: ``root/train`` and ``root/test`` (or ``root/val``)."""
    root = Path(root)
    if not root.is_dir():
        raise BalconError(f"data folder {root} does not exist; check --data-dir")
    dirs = _split_dirs(root)
    if dirs is None:
        raise BalconError(
            f"{root} has no train/ and test/ (or val/) folders; expected "
            f"{root}/train/<class>/<image> and {root}/test/<class>/<image>"
        )
    train = load_image_folder(dirs[0])
    return train, load_image_folder(dirs[1], class_names=train.class_names)


def load_cifar(
    data_dir: str | Path, dataset: str = "cifar10", download: bool = False
) -> tuple[ImageSet, ImageSet]:
    """CIFAR-10/100 train and test sets from ``data_dir``.

    ``data_dir`` holds torchvision's pickle folder (``cifar-10-batches-py`` or
    ``cifar-100-python``; checksums are not checked, so re-made copies load) or an
    ImageFolder tree with ``train/`` and ``test/``. With ``download`` the pickles are
    fetched by torchvision when absent.
    """
    if dataset not in CIFAR_FOLDERS:
        raise ValueError(f"dataset must be one of {', '.join(CIFAR_FOLDERS)}, got {dataset!r}")
    root = Path(data_dir)
    folder = root / CIFAR_FOLDERS[dataset]
    if not folder.is_dir() and _split_dirs(root) is not None:
        return _load_cifar_folders(root)
    if not folder.is_dir() and download:
        _download_cifar(root, dataset)
    if not folder.is_dir():
        raise BalconError(
            f"{root} holds neither {CIFAR_FOLDERS[dataset]}/ nor train/ and test/ folders; "
            "point --data-dir at the folder that holds them (balcon train --download "
            "fetches CIFAR into it)"
        )
    return (_load_cifar_pickles(folder, dataset, True),
            _load_cifar_pickles(folder, dataset, False))


def _download_cifar(root: Path, dataset: str) -> None:
    from torchvision import datasets

    cls = datasets.CIFAR10 if dataset == "cifar10" else datasets.CIFAR100
    try:
        root.mkdir(parents=True, exist_ok=True)
        cls(str(root), train=True, download=True)
    except Exception as err:  # noqa: BLE001 - network and disk failures alike
        raise BalconError(
            f"downloading {dataset} into {root} failed ({type(err).__name__}: {err}); "
            f"check the network, or place {CIFAR_FOLDERS[dataset]}/ there yourself"
        ) from None


