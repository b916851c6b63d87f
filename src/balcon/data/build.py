"""From a :class:`~balcon.config.DataConfig` to the training and held-out sets of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torchvision import transforms as T

from balcon.config import REPORT_ORDER, SPLITS, DataConfig
from balcon.data.cifar import CIFAR_FOLDERS, load_cifar
from balcon.data.datasets import EvalDataset, MultiViewDataset
from balcon.data.longtail import longtail_counts, longtail_indices
from balcon.data.sources import (
    ImageSet,
    load_digits,
    load_folder_splits,
    unused_folders,
)
from balcon.data.splitfile import load_split_file
from balcon.data.views import check_views, sim_view, strong_view, test_view
from balcon.data.views_imagenet import imagenet_test_view, imagenet_train_views
from balcon.errors import BalconError

__all__ = [
    "DataSplits",
    "check_data_dir",
    "data_dir_for",
    "load_image_sets",
    "make_eval_dataset",
    "make_train_dataset",
    "train_views",
]


@dataclass
class DataSplits:
    """The images of a run: the (long-tailed) training set and whichever held-out splits exist.

    Model selection (``best.pt``) uses val, else test, else the training set itself;
    the final report uses test, else val, else the training set.
    """

    train: ImageSet
    val: ImageSet | None = None
    test: ImageSet | None = None
    #: folders beside train/ that were not read (named in the run's log)
    unused: tuple[str, ...] = ()
    #: per split, the unreadable images skipped (``data.on_bad_image=skip``): (path, reason)
    skipped: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def get(self, name: str) -> ImageSet:
        """The split called ``name`` (train, val or test); a BalconError if absent."""
        split = {"train": self.train, "val": self.val, "test": self.test}.get(name)
        if split is None:
            present = ", ".join(n for n in SPLITS if getattr(self, n) is not None)
            raise BalconError(f"this data has no {name} split; choose one it has: {present}")
        return split

    @property
    def selection_split(self) -> str:
        """Name of the split that picks the best epoch."""
        return "val" if self.val is not None else "test" if self.test is not None else "train"

    @property
    def report_split(self) -> str:
        """Name of the split of the final report: the first present of REPORT_ORDER."""
        return next(n for n in REPORT_ORDER if getattr(self, n) is not None)


def _split_file_sets(data: DataConfig, root: Path) -> DataSplits:
    assert data.train_split is not None
    train = load_split_file(root, data.train_split, num_classes=data.num_classes)
    held_out = [None if name is None else load_split_file(
        root, name, class_names=train.class_names,
        missing_hint=f"set data.{split}_split=null to run without a {split} split",
    ) for split, name in (("val", data.val_split), ("test", data.test_split))]
    return DataSplits(train, held_out[0], held_out[1])


def load_image_sets(
    data: DataConfig, data_dir: str | Path | None, download: bool = False
) -> DataSplits:
    """The (long-tailed) training set and the held-out splits that ``data`` describes;
    a folder or file the OS will not let balcon read is a one-line error naming it."""
    try:
        return _load_image_sets(data, data_dir, download)
    except OSError as err:
        where = err.filename or data_dir
        raise BalconError(f"cannot read {where} ({err.strerror or type(err).__name__}); check "
                          "that it exists and that this user may read it") from None


def data_dir_for(data: DataConfig, given: str | Path | None,
                 stored: str | Path | None = None) -> str | Path | None:
    """The folder the data of ``data`` is read from: ``given`` (a ``--data-dir``), else
    ``stored`` (the run's own). None for the bundled digits, which read no folder: one
    given there is refused in one line (it would be ignored), a stored one ignored."""
    if data.dataset == "digits":
        if given is not None:
            raise BalconError(f"--data-dir {given}: the digits are bundled with "
                              "scikit-learn and read no folder; drop --data-dir")
        return None
    return given if given is not None else stored


#: The error of a run that reads a folder and was given none.
NO_DATA_DIR = ("no --data-dir: this run reads its images from a folder; give it with "
               "--data-dir DIR")


def check_data_dir(data: DataConfig, data_dir: str | Path | None,
                   download: bool = False) -> None:
    """Refuse, before a run writes anything, a data folder that cannot hold its images:
    none given, or one that does not exist (a CIFAR folder that ``download`` makes is
    fine). What is inside is checked when the images are read."""
    if data.dataset == "digits" or (download and data.dataset in CIFAR_FOLDERS):
        return
    if data_dir is None:
        raise BalconError(NO_DATA_DIR)
    if not Path(data_dir).is_dir():
        fetch = (" (or add --download: torchvision fetches CIFAR into it)"
                 if data.dataset in CIFAR_FOLDERS else "")
        raise BalconError(f"data folder {data_dir} does not exist; check --data-dir{fetch}")


def _load_image_sets(
    data: DataConfig, data_dir: str | Path | None, download: bool = False
) -> DataSplits:
    """The (long-tailed) training set and the held-out splits that ``data`` describes.

    ``data_dir`` is unused for the bundled ``digits``. With ``data.imbalance`` set,
    the training set is subsampled to the long-tailed counts (largest class =
    the largest class on disk); held-out splits are left as they are.
    """
    if data.dataset == "digits":
        train, test = load_digits(size=data.image_size)
        splits = DataSplits(train, test=test)
    elif data_dir is None:
        raise BalconError(NO_DATA_DIR)
    elif data.dataset in CIFAR_FOLDERS:
        train, test = load_cifar(data_dir, data.dataset, download=download)
        splits = DataSplits(train, test=test)
    elif data.train_split is not None:
        splits = _split_file_sets(data, Path(data_dir))
    else:
        splits = DataSplits(*load_folder_splits(data_dir),
                            unused=tuple(unused_folders(data_dir)))
    train = splits.train
    if data.imbalance is not None:
        counts = longtail_counts(
            max(train.class_counts()), train.num_classes, data.imbalance, data.profile
        )
        train = train.subset(longtail_indices(train.labels, counts, data.subsample_seed))
        splits.train = train
    if data.on_bad_image == "skip":
        _skip_unreadable(splits, data)
        train = splits.train
    if train.num_classes < 2:
        raise BalconError(
            f"{data_dir} holds {train.num_classes} class; a classifier needs at least 2"
        )
    empty = [train.class_names[c] for c, n in enumerate(train.class_counts()) if n == 0]
    if empty:
        if data.train_split is not None:
            fix = ("set data.num_classes to the number of classes the split files use "
                   "(null: largest label + 1)")
        elif data.imbalance is not None:
            fix = "lower data.imbalance or add images"
        else:
            fix = "add images to it or remove its folder"
        more = f" ({len(empty)} such classes)" if len(empty) > 1 else ""
        raise BalconError(
            f"class {empty[0]!r} has no training images{more}; every class needs at least "
            f"one: {fix}"
        )
    return splits


def _skip_unreadable(splits: DataSplits, data: DataConfig) -> None:
    """Read every image once; drop the unreadable ones from their split, noting them.
    More than ``data.max_bad_images`` (else 0.1% of the split, at least 1) stops."""
    for name in SPLITS:
        images = getattr(splits, name)
        if images is None:
            continue
        bad = images.unreadable()
        limit = data.max_bad_images
        if limit is None:
            limit = max(1, len(images) // 1000)
        if len(bad) > limit:
            path, reason = images.paths[bad[0][0]], bad[0][1]
            raise BalconError(
                f"{len(bad)} of the {len(images)} {name} images are unreadable (first: {path}, "
                f"{reason}), more than data.max_bad_images={limit}; fix the data or raise it"
            )
        if bad:
            setattr(splits, name, images.without([i for i, _ in bad]))
            splits.skipped[name] = [(images.paths[i], reason) for i, reason in bad]


def train_views(data: DataConfig, views: int) -> list[T.Compose]:
    """The ``views`` views of a training sample: 1 (view 1) or 3 (view 1 and the
    contrastive pair), as the run's method (``balcon.methods``) trains on.

    ``view_style`` ``cifar``: strong view, then two "sim" views. ``imagenet``: the "rand"
    view, then the pair of ``view_strategy`` (``sim-sim``, ``sim-rand``, ``rand-rand``).
    """
    check_views(views)
    if data.view_style == "imagenet":
        return imagenet_train_views(
            data.image_size, data.mean, data.std, data.hflip, data.randaugment,
            strategy=data.view_strategy if views == 3 else None,
        )
    args = (data.image_size, data.mean, data.std, data.hflip)
    made = [strong_view(*args, cutout_fill=data.cutout_fill)]
    if views == 3:
        sim = sim_view(*args, crop_scale=data.sim_crop_scale, blur_prob=data.sim_blur_prob)
        made += [sim, sim]
    return made


def make_train_dataset(
    images: ImageSet, data: DataConfig, views: int, seed: int
) -> MultiViewDataset:
    """Training dataset yielding 1 or 3 views per sample, seeded by (seed, epoch, index)."""
    return MultiViewDataset(images, train_views(data, views), seed=seed)


def make_eval_dataset(images: ImageSet, data: DataConfig) -> EvalDataset:
    """Deterministic test dataset (fit to size, or ``imagenet``: resize and centre-crop)."""
    view = imagenet_test_view if data.view_style == "imagenet" else test_view
    return EvalDataset(images, view(data.image_size, data.mean, data.std))
