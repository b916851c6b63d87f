"""From a :class:`~balcon.config.DataConfig` to the train and test sets of a run."""

from __future__ import annotations

from pathlib import Path

from torchvision import transforms as T

from balcon.config import DataConfig
from balcon.data.datasets import EvalDataset, MultiViewDataset
from balcon.data.longtail import longtail_counts, longtail_indices
from balcon.data.sources import (
    CIFAR_FOLDERS,
    ImageSet,
    load_cifar,
    load_digits,
    load_split_folders,
)
from balcon.data.views import sim_view, strong_view, test_view
from balcon.errors import BalconError

__all__ = ["load_image_sets", "make_eval_dataset", "make_train_dataset", "train_views"]


def load_image_sets(
    data: DataConfig, data_dir: str | Path | None, download: bool = False
) -> tuple[ImageSet, ImageSet]:
    """The (long-tailed) training set and the test set that ``data`` describes.

    ``data_dir`` is unused for the bundled ``digits``. With ``data.imbalance`` set,
    the training set is subsampled to the long-tailed counts (largest class =
    the largest class on disk); the test set is left as it is.
    """
    if data.dataset == "digits":
        train, test = load_digits(size=data.image_size)
    elif data_dir is None:
        raise BalconError(f"dataset {data.dataset} needs --data-dir DIR")
    elif data.dataset in CIFAR_FOLDERS:
        train, test = load_cifar(data_dir, data.dataset, download=download)
    else:
        train, test = load_split_folders(data_dir)
    if data.imbalance is not None:
        counts = longtail_counts(
            max(train.class_counts()), train.num_classes, data.imbalance, data.profile
        )
        train = train.subset(longtail_indices(train.labels, counts, data.subsample_seed))
    if train.num_classes < 2:
        raise BalconError(
            f"{data_dir} holds {train.num_classes} class; a classifier needs at least 2"
        )
    empty = [train.class_names[c] for c, n in enumerate(train.class_counts()) if n == 0]
    if empty:
        raise BalconError(
            f"class {empty[0]!r} has no training images ({len(empty)} such classes); "
            "every class needs at least one, add images or lower data.imbalance"
        )
    return train, test


def train_views(data: DataConfig, contrastive: bool) -> list[T.Compose]:
    """View 1 alone, or view 1 and two "sim" views for the contrastive methods."""
    args = (data.image_size, data.mean, data.std, data.hflip)
    views = [strong_view(*args)]
    if contrastive:
        sim = sim_view(*args, crop_scale=data.sim_crop_scale, blur_prob=data.sim_blur_prob)
        views += [sim, sim]
    return views


def make_train_dataset(
    images: ImageSet, data: DataConfig, contrastive: bool, seed: int
) -> MultiViewDataset:
    """Training dataset yielding 1 or 3 views per sample, seeded by (seed, epoch, index)."""
    return MultiViewDataset(images, train_views(data, contrastive), seed=seed)


def make_eval_dataset(images: ImageSet, data: DataConfig) -> EvalDataset:
    """Deterministic test dataset."""
    return EvalDataset(images, test_view(data.image_size, data.mean, data.std))
