"""Plain-text results tables: overall, many, medium and few-shot accuracy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from balcon.engine.metrics import HEADLINE_KEYS, fmt

__all__ = ["format_per_class", "format_results", "summary_rows", "text_table"]

#: (result key, column title) of the tables: "overall" is top-1.
COLUMNS = tuple((k, "overall" if k == "top1" else k) for k in HEADLINE_KEYS)


def summary_rows(summary: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The results of a run's ``summary.json`` by label, ``"last (epoch E, split)"``: the
    selection split's last and best (when the report is on another split), then the
    report's."""
    rows = {}
    sources = ([summary["selection"]] if "selection" in summary else []) + [summary]
    for source in sources:
        for key in ("last", "best"):
            if key in source:
                row = source[key]
                rows[f"{key} (epoch {row['epoch']}, {row.get('split', 'test')})"] = row
    return rows


def format_results(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """A table with one row per named result: overall, many, medium, few (percent).

    A missing or empty group prints as ``-``.
    """
    header = ["", *(title for _, title in COLUMNS)]
    body = [[name, *(fmt(r.get(key)) for key, _ in COLUMNS)] for name, r in rows.items()]
    return text_table(header, body)


def text_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """Columns two spaces apart, the first left-aligned and the rest right-aligned, with a
    rule under the header."""
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = []
    for row in [header, *body]:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                         strict=True)]
        lines.append("  ".join(cells))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_per_class(
    per_class: Sequence[float | None], class_names: Sequence[str], class_counts: Sequence[int]
) -> str:
    """Per-class accuracy with each class's training count, largest class first."""
    order = sorted(range(len(class_names)), key=lambda c: -class_counts[c])
    width = max(len("class"), *(len(n) for n in class_names))
    lines = [f"{'class'.ljust(width)}  {'train':>6}  {'acc':>6}"]
    for c in order:
        lines.append(f"{class_names[c].ljust(width)}  {class_counts[c]:>6}  "
                     f"{fmt(per_class[c]):>6}")
    return "\n".join(lines)
