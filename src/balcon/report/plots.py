"""Training curves of a run directory, drawn from its ``metrics.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["plot_curves"]


def plot_curves(run_dir: str | Path) -> Path | None:
    """Write ``curves.png`` (accuracy by shot group on the evaluated split, losses, learning
    rate) into ``run_dir``.

    Returns the path, or None when the run has no evaluation yet.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # blank, or cut short when a run was killed
            continue
    if not records:
        return None
    epochs = [r["epoch"] for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for key in ("top1", "many", "medium", "few"):
        points = [(e, r[key]) for e, r in zip(epochs, records, strict=True) if r[key] is not None]
        if points:
            axes[0].plot(*zip(*points, strict=True), marker="o", label=key)
    split = records[-1].get("split", "test")  # the model-selection split of the run
    axes[0].set(title=f"{split} accuracy (%)" + (" (training images)" if split == "train"
                                                 else ""), xlabel="epoch")
    axes[0].legend()
    for key in ("loss", "loss_cls", "loss_con"):
        points = [(e, r[key]) for e, r in zip(epochs, records, strict=True)
                  if r.get(key) is not None]
        if points:
            axes[1].plot(*zip(*points, strict=True), marker="o", label=key)
    axes[1].set(title="training loss", xlabel="epoch")
    axes[1].legend()
    axes[2].plot(epochs, [r["lr"] for r in records], marker="o")
    axes[2].set(title="learning rate", xlabel="epoch")
    fig.tight_layout()
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
