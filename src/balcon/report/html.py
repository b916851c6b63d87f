"""Self-contained HTML: escaped text, tables, and figures embedded as ``data:`` URIs.

A page made from these loads nothing: no external ``src`` or ``href`` (links are
``#anchors`` within the page), the style inline, each picture a base64 PNG.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

__all__ = ["STYLE", "details", "figure", "page", "section", "table", "value"]

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1150px; padding: 1.5em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em;
     margin-top: 2em; }
h3 { font-size: 1.05em; }
.sub { color: #666; margin-top: 0; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.65em; text-align: right; }
td { white-space: nowrap; }
.wide { overflow-x: auto; }
th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; }
tr.mean td { font-weight: 600; background: #fafafa; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0; }
.note { color: #555; font-size: 0.92em; }
.tag-tail { color: #b00; } .tag-head { color: #06c; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.15em 1.2em; }
dt { color: #555; } dd { margin: 0; }
details { margin: 0.8em 0; } summary { cursor: pointer; font-weight: 600; }
"""


def value(x: Any, spec: str = ".2f") -> str:
    """A number formatted by ``spec``; ``-`` for None; other values as text (escaped)."""
    if x is None:
        return "-"
    if isinstance(x, float | int) and not isinstance(x, bool):
        return format(x, spec)
    return html.escape(str(x))


def table(header: Sequence[str], rows: Sequence[Sequence[Any]],
          row_classes: Sequence[str] | None = None) -> str:
    """A table; cells are escaped text, or numbers (2 decimals; None shows ``-``)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{value(c)}</td>" for c in row) + "</tr>")
    return (f'<div class="wide"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def figure(fig: Figure, alt: str, dpi: int = 90) -> str:
    """The figure as an ``<img>`` with a base64 PNG ``data:`` URI; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def section(anchor: str, title: str, *parts: str) -> str:
    """An ``<h2>`` section with an anchor for the page's navigation."""
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{"".join(parts)}</section>'


def details(summary: str, *parts: str) -> str:
    """A collapsed block: ``summary`` shown, ``parts`` on a click."""
    return f"<details><summary>{html.escape(summary)}</summary>{''.join(parts)}</details>"


def page(title: str, subtitle: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    """A whole HTML document: the title, a line under it, links to the sections."""
    links = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in nav)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=\"sub\">{html.escape(subtitle)}</p>"
            f"<nav>{links}</nav>{body}</body></html>\n")
