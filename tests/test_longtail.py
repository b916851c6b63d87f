"""Long-tailed counts and subsets, shot groups."""

from __future__ import annotations

import numpy as np
import pytest

from balcon.data import (
    SHOT_GROUPS,
    longtail_counts,
    longtail_indices,
    shot_group_of,
    shot_groups,
)

CIFAR10_LT_R100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]

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


def test_longtail_indices_known_picks():
    """Indices the published code (LDAM-DRW's ``gen_imbalanced_data``: ``np.random.seed(0)``,
    then ``np.random.shuffle`` of each class's indices in class order) picks, written out."""
    labels = np.tile(np.arange(3), 6)  # class c at positions c, c + 3, c + 6, ...
    assert longtail_indices(labels, [6, 3, 1], seed=0).tolist() == [
        15, 6, 3, 9, 0, 12, 4, 10, 13, 11]
    labels = np.repeat(np.arange(10), 20)  # class-sorted, 20 a class, imbalance 10
    counts = longtail_counts(20, 10, 10)
    assert counts == [20, 15, 11, 9, 7, 5, 4, 3, 2, 2]
    assert longtail_indices(labels, counts, seed=0).tolist() == [
        18, 1, 19, 8, 10, 17, 6, 13, 4, 2, 5, 14, 9, 7, 16, 11, 3, 0, 15, 12,
        31, 21, 38, 37, 22, 32, 39, 36, 30, 20, 23, 24, 35, 28, 33,
        55, 53, 52, 45, 51, 42, 48, 46, 43, 57, 44,
        78, 60, 73, 62, 63, 77, 67, 72, 74,
        87, 81, 82, 99, 85, 98, 88,
        112, 106, 110, 108, 117,
        138, 134, 126, 124,
        145, 158, 153,
        166, 161,
        182, 196]
