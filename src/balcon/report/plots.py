"""Training curves of a run directory, drawn from its ``metrics.jsonl``."""

from __future__ import annotations

from pathlib import Path

from balcon.runs.records import read_records

__all__ = ["plot_curves"]


def plot_curves(run_dir: str | Path) -> Path | None:
    """Write ``curves.png`` (accuracy by shot group on the evaluated split, losses, learning
    rate) into ``run_dir``.

    Returns the path, or None when the run has no evaluation yet.
    """
    from balcon.report.figures import curves_figure, plt

    records = read_records(run_dir)
    if not records:
        return None
    fig = curves_figure(records)
    out = Path(run_dir) / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
