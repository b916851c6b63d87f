"""Long-tailed data: sources, subsampling, shot groups, augmented views (32 and 224 px)."""

from balcon.data.build import (
    DataSplits,
    check_data_dir,
    data_dir_for,
    load_image_sets,
    make_eval_dataset,
    make_train_dataset,
    train_views,
)
from balcon.data.cifar import load_cifar
from balcon.data.datasets import (
    EpochSampler,
    EvalDataset,
    FeatureDataset,
    MultiViewDataset,
    sample_seed,
)
from balcon.data.longtail import (
    SHOT_GROUPS,
    longtail_counts,
    longtail_indices,
    shot_group_of,
    shot_groups,
)
from balcon.data.sources import (
    ImageSet,
    find_images,
    load_digits,
    load_folder_splits,
    load_image_folder,
    to_rgb,
)
from balcon.data.splitfile import load_split_file
from balcon.data.views import Cutout, sim_view, strong_view, test_view
from balcon.data.views_imagenet import (
    imagenet_contrastive_views,
    imagenet_rand_view,
    imagenet_randaugment,
    imagenet_randstack_view,
    imagenet_sim_view,
    imagenet_test_view,
    imagenet_train_views,
)

__all__ = [
    "SHOT_GROUPS",
    "Cutout",
    "DataSplits",
    "EpochSampler",
    "EvalDataset",
    "FeatureDataset",
    "ImageSet",
    "MultiViewDataset",
    "check_data_dir",
    "data_dir_for",
    "find_images",
    "imagenet_contrastive_views",
    "imagenet_rand_view",
    "imagenet_randaugment",
    "imagenet_randstack_view",
    "imagenet_sim_view",
    "imagenet_test_view",
    "imagenet_train_views",
    "load_cifar",
    "load_digits",
    "load_folder_splits",
    "load_image_folder",
    "load_image_sets",
    "load_split_file",
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
