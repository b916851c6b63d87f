"""The numbers behind a run's report: confusions, feature geometry, calibration.

Each function is plain numpy over a report pass's arrays and is tested against a slow
loop written from its formula (``tests/test_report.py``):

- confusions: ``M[i, j]`` = images of true class i predicted as j; the largest
  off-diagonal pairs, each marked by direction: *tail -> head* when the predicted
  class had more training images than the true one (the long-tail bias), else
  *head -> tail*;
- feature geometry: the cosines of the class-mean features, centred by the mean of
  the class means (so each class counts once, not by its number of images), and their
  distance from a regular simplex, whose vertices all meet at cosine -1/(C-1):
  ``mean |cos_ij + 1/(C-1)|`` over ``i != j`` (Papyan et al. 2020's equiangularity,
  the geometry BCL's class-averaging aims at);
- calibration: expected calibration error over 15 equal-width confidence bins
  (Guo et al. 2017), ``sum_b |B_b| / n * |acc(B_b) - conf(B_b)|``, with the bins'
  accuracy and confidence for a reliability diagram.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from balcon.data.longtail import SHOT_GROUPS, shot_groups

__all__ = [
    "ECE_BINS",
    "Calibration",
    "calibration",
    "calibration_by_group",
    "class_mean_cosines",
    "confusion_matrix",
    "error_pairs",
    "geometry",
    "log_count_correlation",
    "most_confused_with",
    "simplex_distance",
    "top_confusions",
    "toward_head_share",
]

#: Confidence bins of the expected calibration error.
ECE_BINS = 15


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int
                     ) -> np.ndarray:
    """``M[i, j]``: the images of true class i predicted as class j, (C, C) int64."""
    flat = labels.astype(np.int64) * num_classes + predictions.astype(np.int64)
    return np.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def error_pairs(labels: np.ndarray, predictions: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (true, predicted, count) of every pair with errors, without a (C, C) matrix
    (iNaturalist's 8142 classes would make one of 66M cells)."""
    wrong = labels != predictions
    pairs, counts = np.unique(np.stack([labels[wrong], predictions[wrong]], axis=1),
                              axis=0, return_counts=True)
    pairs = pairs.reshape(-1, 2)
    return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64), counts.astype(np.int64)


def top_confusions(labels: np.ndarray, predictions: np.ndarray, class_counts: Sequence[int],
                   k: int = 20) -> list[dict[str, Any]]:
    """The ``k`` most frequent errors (true != predicted), most frequent first.

    Each is ``{"true", "predicted", "count", "share"}`` (share: of the true class's
    images) plus ``"direction"``: ``"tail -> head"`` when the predicted class had more
    training images than the true class, ``"head -> tail"`` when fewer, ``"-"`` when as
    many. Ties keep the lower (true, predicted) first.
    """
    true, pred, count = error_pairs(labels, predictions)
    totals = np.bincount(labels, minlength=len(class_counts))
    out = []
    for index in np.argsort(-count, kind="stable")[:k]:  # pairs come sorted by (true, pred)
        i, j, n = int(true[index]), int(pred[index]), int(count[index])
        ni, nj = class_counts[i], class_counts[j]
        direction = "tail -> head" if nj > ni else "head -> tail" if nj < ni else "-"
        out.append({"true": i, "predicted": j, "count": n, "share": float(n / totals[i]),
                    "direction": direction})
    return out


def most_confused_with(labels: np.ndarray, predictions: np.ndarray, num_classes: int
                       ) -> list[int | None]:
    """For each true class, the class its images are most often mistaken for (None
    without errors; ties: the lower class)."""
    true, pred, count = error_pairs(labels, predictions)
    out: list[int | None] = [None] * num_classes
    best = np.zeros(num_classes, dtype=np.int64)
    for i, j, n in zip(true.tolist(), pred.tolist(), count.tolist(), strict=True):
        if n > best[i]:
            best[i], out[i] = n, j
    return out


def toward_head_share(labels: np.ndarray, predictions: np.ndarray,
                      class_counts: Sequence[int]) -> float | None:
    """Of all errors, the share predicting a class with more training images than the
    true class (None without errors)."""
    counts = np.asarray(class_counts)
    wrong = labels != predictions
    if not wrong.any():
        return None
    return float((counts[predictions[wrong]] > counts[labels[wrong]]).mean())


def log_count_correlation(values: Sequence[float], class_counts: Sequence[int]
                          ) -> float | None:
    """Pearson correlation of per-class ``values`` with log training count (None when
    either is constant)."""
    v = np.asarray(values, dtype=np.float64)
    logs = np.log(np.maximum(np.asarray(class_counts, dtype=np.float64), 1))
    if v.std() == 0 or logs.std() == 0:
        return None
    return float(np.corrcoef(logs, v)[0, 1])


def _unit_centred_means(feature_sums: np.ndarray, feature_counts: np.ndarray) -> np.ndarray:
    """Unit vectors of the class means of the classes with images, centred by the mean
    of those class means (each class once)."""
    present = feature_counts > 0
    means = feature_sums[present] / feature_counts[present, None]
    centred = means - means.mean(0, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return centred / np.where(norms > 0, norms, 1.0)


def class_mean_cosines(feature_sums: np.ndarray, feature_counts: np.ndarray) -> np.ndarray:
    """Cosines (C', C') of the centred class-mean features of the classes with images.

    Class means are ``feature_sums / feature_counts``; they are centred by their own
    mean (each class once). Classes without images are left out (C' of them remain).
    """
    unit = _unit_centred_means(feature_sums, feature_counts)
    return unit @ unit.T


def simplex_distance(cosines: np.ndarray, members: Sequence[int] | None = None
                     ) -> float | None:
    """``mean |cos_ij + 1/(C-1)|`` over ordered pairs ``i != j`` of ``members`` (default:
    all C classes); 0 for a regular simplex. None with fewer than two members, and
    for C < 3 (two centred means are always opposite: the distance says nothing)."""
    return _simplex_distance(cosines, members)


def _simplex_distance(vectors: np.ndarray, members: Sequence[int] | None = None,
                      unit: bool = False, block: int = 1024) -> float | None:
    """:func:`simplex_distance` of a cosine matrix, or (``unit``) of the unit vectors
    whose cosines it holds, in blocks of rows (no (C, C) matrix for large C)."""
    c = vectors.shape[0]
    idx = np.arange(c) if members is None else np.asarray(members, dtype=np.int64)
    if len(idx) < 2 or c < 3:
        return None
    total = 0.0
    for start in range(0, len(idx), block):
        rows = idx[start:start + block]
        cos = vectors[rows] @ vectors[idx].T if unit else vectors[np.ix_(rows, idx)]
        dev = np.abs(cos + 1.0 / (c - 1))
        dev[np.arange(len(rows)), start + np.arange(len(rows))] = 0.0  # i == j
        total += float(dev.sum())
    return total / (len(idx) * (len(idx) - 1))


def geometry(feature_sums: np.ndarray, feature_counts: np.ndarray,
             class_counts: Sequence[int], matrix_max: int = 30) -> dict[str, Any]:
    """Distance of the class means from the simplex, overall and within each shot group
    (among the classes with report images), and their cosine matrix when there are at
    most ``matrix_max`` of them (else None)."""
    present = np.flatnonzero(feature_counts > 0)
    unit = _unit_centred_means(feature_sums, feature_counts)
    position = {int(c): p for p, c in enumerate(present)}
    groups = shot_groups(list(class_counts))
    return {"cosines": unit @ unit.T if len(present) <= matrix_max else None,
            "classes": present.tolist(),
            "distance": _simplex_distance(unit, unit=True),
            "groups": {g: _simplex_distance(unit, [position[c] for c in groups[g]
                                                   if c in position], unit=True)
                       for g in SHOT_GROUPS}}


@dataclass
class Calibration:
    """Expected calibration error (percent) and the reliability bins it came from.

    ``bin_accuracy`` and ``bin_confidence`` are percent, NaN for an empty bin;
    ``bin_count`` the images per bin.
    """

    ece: float | None
    bin_accuracy: np.ndarray
    bin_confidence: np.ndarray
    bin_count: np.ndarray


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
                ) -> Calibration:
    """ECE over ``bins`` equal-width bins of (0, 1]: bin b holds confidences in
    (b/bins, (b+1)/bins] (the first also holds 0). Non-finite confidences are left out."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    finite = np.isfinite(conf)  # NaN from a diverged run: not a confidence
    conf, hit = conf[finite], hit[finite]
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(which, weights=hit, minlength=bins) / count
        mean_conf = np.bincount(which, weights=conf, minlength=bins) / count
    if len(conf) == 0:
        return Calibration(None, acc * 100, mean_conf * 100, count)
    filled = count > 0
    ece = float((count[filled] / len(conf) * np.abs(acc[filled] - mean_conf[filled])).sum())
    return Calibration(100 * ece, 100 * acc, 100 * mean_conf, count)


def calibration_by_group(confidence: np.ndarray, correct: np.ndarray, labels: np.ndarray,
                         class_counts: Sequence[int]) -> dict[str, Calibration]:
    """:func:`calibration` over all images (``"all"``) and over each shot group's images
    (grouped by the true class)."""
    out = {"all": calibration(confidence, correct)}
    for name, members in shot_groups(class_counts).items():
        mask = np.isin(labels, members)
        out[name] = calibration(confidence[mask], correct[mask])
    return out
