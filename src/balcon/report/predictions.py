"""Per-image predictions as CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

from balcon.runs.checkpoint import write_text_atomic

if TYPE_CHECKING:
    from balcon.runs import Predictions

__all__ = ["write_image_predictions", "write_predictions"]


def write_predictions(predictions: Predictions, path: str | Path,
                      flag: str = "--predictions") -> Path:
    """Write one row per test image: source, true and predicted class, confidence.

    Columns: ``source`` (file path, or ``test[i]`` for in-memory data), ``label``,
    ``label_name``, ``prediction``, ``prediction_name``, ``confidence`` (softmax
    probability of the predicted class) and ``correct`` (0 or 1). The file is written
    whole or not at all (a missing folder is made); a failed write says to choose
    another ``flag``.
    """
    probs = predictions.logits.float().softmax(dim=1)
    confidence, predicted = probs.max(dim=1)
    names = predictions.class_names
    with io.StringIO(newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "label", "label_name", "prediction", "prediction_name",
                         "confidence", "correct"])
        for source, label, pred, conf in zip(predictions.sources, predictions.labels.tolist(),
                                             predicted.tolist(), confidence.tolist(),
                                             strict=True):
            writer.writerow([source, label, names[label], pred, names[pred], f"{conf:.6f}",
                             int(label == pred)])
        write_text_atomic(path, f.getvalue(), fix=f"choose another {flag}",
                          make_folders=True)
    return Path(path)


def write_image_predictions(predictions: Predictions, path: str | Path, top_k: int = 5,
                            flag: str = "--out") -> Path:
    """Write one row per unlabelled image: source, predicted class, confidence, top k.

    Columns: ``source``, ``prediction``, ``prediction_name``, ``confidence`` (softmax
    probability of the predicted class) and ``top_k`` (the k most probable classes as
    ``name:probability`` joined by ``;``, k = min(top_k, C)). Written as
    :func:`write_predictions` writes.
    """
    probs = predictions.logits.float().softmax(dim=1)
    top = probs.topk(min(top_k, probs.shape[1]), dim=1)
    names = predictions.class_names
    with io.StringIO(newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["source", "prediction", "prediction_name", "confidence", "top_k"])
        for source, values, indices in zip(predictions.sources, top.values.tolist(),
                                           top.indices.tolist(), strict=True):
            ranked = ";".join(f"{names[c]}:{v:.4f}" for c, v in zip(indices, values,
                                                                      strict=True))
            writer.writerow([source, indices[0], names[indices[0]], f"{values[0]:.6f}",
                             ranked])
        write_text_atomic(path, f.getvalue(), fix=f"choose another {flag}",
                          make_folders=True)
    return Path(path)
