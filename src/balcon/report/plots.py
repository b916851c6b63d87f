"""Training curves of a run directory, drawn from its ``metrics.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["plot_curves", "read_metrics"]


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The evaluation records of ``run_dir/metrics.jsonl`` (a line cut short by a kill,
    or a blank one, is skipped); [] when there is none."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_curves(run_dir: str | Path) -> Path | None:
    """Write ``curves.png`` (accuracy by shot group on the evaluated split, losses, learning
    rate) into ``run_dir``.

    Returns the path, or None when the run has no evaluation yet.
    """
    from balcon.report.figures import curves_figure, plt

    records = read_metrics(run_dir)
    if not records:
        return None
    fig = curves_figure(records)
    out = Path(run_dir) / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
