"""Reports of runs: results tables, training curves, per-image predictions."""

from balcon.report.plots import plot_curves
from balcon.report.predictions import write_image_predictions, write_predictions
from balcon.report.tables import format_per_class, format_results, summary_rows

__all__ = [
    "format_per_class",
    "format_results",
    "plot_curves",
    "summary_rows",
    "write_image_predictions",
    "write_predictions",
]
