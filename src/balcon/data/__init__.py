"""Long-tailed data: sources, subsampling, shot groups, augmented views."""

from balcon.data.build import (
    load_image_sets,
    make_eval_dataset,
    make_train_dataset,
    train_views,
)
from balcon.data.datasets import EpochSampler, EvalDataset, MultiViewDataset, sample_seed
from balcon.data.longtail import (
    SHOT_GROUPS,
    longtail_counts,
    longtail_indices,
    shot_group_of,
    shot_groups,
)
from balcon.data.sources import (
    ImageSet,
    load_cifar,
    load_digits,
    load_image_folder,
    load_split_folders,
    to_rgb,
)
from balcon.data.views import Cutout, sim_view, strong_view, test_view

__all__ = [
    "SHOT_GROUPS",
    "Cutout",
    "EpochSampler",
    "EvalDataset",
    "ImageSet",
    "MultiViewDataset",
    "load_cifar",
    "load_digits",
    "load_image_folder",
    "load_image_sets",
    "load_split_folders",
    "longtail_counts",
    "longtail_indices",
    "make_eval_dataset",
    "make_train_dataset",
    "sample_seed",
    "shot_group_of",
    "shot_groups",
    "sim_view",
    "strong_view",
    "test_view",
    "to_rgb",
    "train_views",
]
