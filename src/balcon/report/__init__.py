"""Reports of runs: results tables and training curves."""

from balcon.report.plots import plot_curves
from balcon.report.tables import format_per_class, format_results

__all__ = ["format_per_class", "format_results", "plot_curves"]
