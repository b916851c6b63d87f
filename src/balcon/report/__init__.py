"""Reports of runs: results tables, training curves, per-image predictions."""

from balcon.report.plots import plot_curves
from balcon.report.predictions import write_image_predictions, write_predictions
from balcon.report.tables import format_per_class, format_results

__all__ = [
    "format_per_class",
    "format_results",
    "plot_curves",
    "write_image_predictions",
    "write_predictions",
]
