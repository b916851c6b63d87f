"""The report's pictures, each a matplotlib Figure drawn from plain numbers.

Every function returns a Figure (Agg backend) for the caller to save or embed; none
reads files or models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from balcon.data.longtail import FEW_BELOW, MANY_ABOVE  # noqa: E402
from balcon.engine.metrics import HEADLINE_KEYS  # noqa: E402

__all__ = [
    "calibration_figure",
    "confusion_figure",
    "cosine_figure",
    "curves_figure",
    "overlay_curves_figure",
    "per_class_figure",
    "weight_norm_figure",
]

def _text(label: str) -> str:
    """A class name or label as plain text: its ``$`` would start mathtext (which fails
    to parse ``r$\\frac$`` and prints ``x$y$z`` in italics)."""
    return str(label).replace("$", r"\$")


GROUP_COLOURS = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:red",
                 "all": "black"}


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
    return ([p[0] for p in points], [p[1] for p in points]) if points else ([], [])


def curves_figure(records: Sequence[dict[str, Any]]) -> Figure:
    """Accuracy by shot group on the evaluated split, the losses and the lr per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for key in HEADLINE_KEYS:
        xs, ys = _series(records, key)
        if xs:
            axes[0].plot(xs, ys, marker="o", label=key)
    split = records[-1].get("split", "test") if records else "test"
    axes[0].set(title=f"{split} accuracy (%)" + (" (training images)" if split == "train"
                                                 else ""), xlabel="epoch")
    for key in ("loss", "loss_cls", "loss_con"):
        xs, ys = _series(records, key)
        if xs:
            axes[1].plot(xs, ys, marker="o", label=key)
    axes[1].set(title="training loss", xlabel="epoch")
    xs, ys = _series(records, "lr")
    axes[2].plot(xs, ys, marker="o")
    axes[2].set(title="learning rate", xlabel="epoch")
    for ax in axes[:2]:
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    return fig


def _thresholds(ax: Any) -> None:
    """The shot-group boundaries on a training-count axis."""
    for x, text in ((FEW_BELOW, f"few < {FEW_BELOW}"), (MANY_ABOVE, f"many > {MANY_ABOVE}")):
        ax.axvline(x, color="grey", linestyle="--", linewidth=1)
        ax.text(x, 1.0, f" {text}", transform=ax.get_xaxis_transform(), va="top",
                fontsize=8, color="grey")


def _name_points(ax: Any, xs: Sequence[float], ys: Sequence[float],
                 names: Sequence[str] | None) -> None:
    """Each point's class name beside it (for up to 30 classes)."""
    if names is None or len(names) > 30:
        return
    for x, y, name in zip(xs, ys, names, strict=True):
        ax.annotate(_text(name), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                    color="#444")


def per_class_figure(series: Sequence[tuple[str, Sequence[int], Sequence[float | None]]],
                     names: Sequence[str] | None = None) -> Figure:
    """Per-class accuracy against training count (log axis), one series per run or
    group: ``(label, counts, accuracies)``; classes sorted by count are joined by a line.
    With ``names`` (one series), each point is labelled with its class."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, counts, accs in series:
        pts = sorted((c, a, i) for i, (c, a) in enumerate(zip(counts, accs, strict=True))
                     if a is not None)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=_text(label),
                    alpha=0.85)
            if len(series) == 1 and names is not None:
                _name_points(ax, [p[0] for p in pts], [p[1] for p in pts],
                             [names[p[2]] for p in pts])
    ax.set_xscale("log")
    _thresholds(ax)
    ax.set(xlabel="training images of the class (log)", ylabel="accuracy (%)",
           ylim=(-2, 102), title="per-class accuracy against training count")
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def confusion_figure(matrix: np.ndarray, names: Sequence[str], order: Sequence[int]) -> Figure:
    """Row-normalised confusion matrix (percent of each true class), classes in ``order``
    (largest training class first); cells annotated when C <= 15."""
    m = matrix[np.ix_(order, order)].astype(np.float64)
    rows = m.sum(1, keepdims=True)
    pct = 100 * m / np.where(rows > 0, rows, 1)
    c = len(order)
    size = min(4 + 0.35 * c, 12)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    labels = [_text(names[i]) for i in order]
    ax.set_xticks(range(c), labels, rotation=90, fontsize=8)
    ax.set_yticks(range(c), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true (most training images first)",
           title="confusions (% of each true class)")
    if c <= 15:
        for i in range(c):
            for j in range(c):
                ax.text(j, i, f"{pct[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if pct[i, j] > 50 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def weight_norm_figure(counts: Sequence[int], norms: Sequence[float], classifier: str,
                       names: Sequence[str] | None = None) -> Figure:
    """Classifier weight norm per class against training count (log axis)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(counts, norms)
    _name_points(ax, counts, norms, names)
    ax.set_xscale("log")
    _thresholds(ax)
    note = " (a cosine classifier's logits ignore it)" if classifier == "cosine" else ""
    ax.set(xlabel="training images of the class (log)", ylabel="||w_c||",
           title=f"classifier weight norm{note}")
    fig.tight_layout()
    return fig


def cosine_figure(cosines: np.ndarray, names: Sequence[str], order: Sequence[int],
                  space: str = "features") -> Figure:
    """Cosines of the centred class means, classes in ``order`` (largest training class
    first); the regular simplex has -1/(C-1) off the diagonal."""
    cosines = cosines[np.ix_(order, order)]
    names = [_text(names[i]) for i in order]
    c = len(names)
    size = min(4 + 0.35 * c, 12)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(cosines, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(c), names, rotation=90, fontsize=8)
    ax.set_yticks(range(c), names, fontsize=8)
    ax.set(title=f"cosine of class-mean {_text(space)} (simplex: {-1 / max(c - 1, 1):.3f})")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def calibration_figure(calibrations: dict[str, Any]) -> Figure:
    """Reliability diagram: accuracy against mean confidence per bin, one line per shot
    group and all images, beside the diagonal of perfect calibration."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 100], [0, 100], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for name, cal in calibrations.items():
        filled = cal.bin_count > 0
        if filled.any():
            ece = "-" if cal.ece is None else f"{cal.ece:.2f}"
            ax.plot(cal.bin_confidence[filled], cal.bin_accuracy[filled], marker="o",
                    color=GROUP_COLOURS.get(name), label=f"{name} (ECE {ece})",
                    linewidth=2 if name == "all" else 1)
    ax.set(xlabel="confidence (%)", ylabel="accuracy (%)", xlim=(0, 100), ylim=(0, 100),
           title="reliability")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def overlay_curves_figure(runs: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> Figure:
    """Top-1 and few-shot (else medium) accuracy and the training loss per epoch, one
    line per run ``(group, records)``, one colour per group."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colours: dict[str, Any] = {}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    seen: set[str] = set()
    for group, records in runs:
        colour = colours.setdefault(group, cycle[len(colours) % len(cycle)])
        for ax, key in zip(axes, ("top1", "tail", "loss"), strict=True):
            if key == "tail":
                key = "few" if any(r.get("few") is not None for r in records) else "medium"
                ax.set_title(f"{key}-shot accuracy (%)")
            xs, ys = _series(records, key)
            ax.plot(xs, ys, marker="o", color=colour, alpha=0.8,
                    label=_text(group) if group not in seen else None)
        seen.add(group)
    axes[0].set_title("top-1 accuracy (%)")
    axes[2].set_title("training loss")
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
