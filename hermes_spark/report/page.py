"""The report object: figures assembled into one self-contained HTML page (driver).

No script, stylesheet or font is loaded from anywhere: the charts are inline SVG and the
CSS is in the page, so it opens offline, in Databricks ``displayHTML`` and as an MLflow
artifact.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np
import pandas as pd

from hermes_spark import io
from hermes_spark.report import figures

log = logging.getLogger(__name__)

_CSS = """
body{font-family:sans-serif;margin:1.5em;max-width:1200px;color:#222}
.figs{display:flex;flex-wrap:wrap;gap:1em}
section.figure{border:1px solid #ddd;padding:.5em;width:580px}
section.figure h2{font-size:1em;margin:.2em 0}
section.figure p.q{color:#555;margin:.2em 0 .5em}
table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ddd;padding:2px 5px;text-align:right}
.omitted{color:#a60}
"""

#: the figures, in page order, and the input each needs
FIGURES = (
    ("rank_size", "stats"),
    ("children_entropy", "stats"),
    ("target_vs_realized", "mixture"),
    ("contraction", "mixture"),
    ("quality", "stats"),
    ("codebook_health", "fit"),
    ("evaluation", "evaluation"),
    ("centroid_map", "centroids"),
)


@dataclass
class Report:
    """One HTML report page: ``_repr_html_`` for notebooks, :meth:`save` for files."""

    title: str
    figures: list[figures.Figure] = field(default_factory=list)
    omitted: list[str] = field(default_factory=list)
    summary: str = ""

    def html(self) -> str:
        """The whole page (a full HTML document)."""
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{escape(self.title)}</title><style>{_CSS}</style></head>"
            f"<body>{self._repr_html_()}</body></html>"
        )

    def _repr_html_(self) -> str:
        parts = [f"<div class='hermes-report'><h1>{escape(self.title)}</h1>", self.summary]
        parts.append("<div class='figs'>")
        for title, question, body in self.figures:
            parts.append(
                f"<section class='figure'><h2>{escape(title)}</h2>"
                f"<p class='q'>{escape(question)}</p>{body}</section>"
            )
        parts.append("</div>")
        parts += [f"<p class='omitted'>{escape(note)}</p>" for note in self.omitted]
        parts.append("</div>")
        if not self.figures:
            return "".join(parts)
        return f"<style>{_CSS}</style>" + "".join(parts)

    def save(self, path: str, *, storage: io.Storage | None = None) -> str:
        """Write the page to ``path`` (any URI); return the path."""
        io.write_text(path, self.html(), storage=storage)
        log.info("report written to %s", path)
        return path


def _levels_table(levels: pd.DataFrame) -> str:
    cols = ("level", "cells_nonempty", "cells_total", "entropy_bits", "max_share", "imbalance")
    rows = levels.sort_values("level").to_dict(orient="records")
    return figures._table(rows, cols)


def build_page(
    stats: pd.DataFrame | None,
    levels: pd.DataFrame | None = None,
    *,
    mixture: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    fit: dict[str, Any] | None = None,
    centroids: Sequence[np.ndarray] | None = None,
    terms: dict[int, list[str]] | None = None,
    explorer: str | None = None,
    title: str = "hermes report",
) -> Report:
    """The report of small STATS rows (pandas), the JSON reports and the codebook's
    centroid arrays given (``terms``: level-1 top terms from the cards; ``explorer``: a
    link to the bucket explorer); figures whose input is missing are left out with a
    note."""
    inputs = {
        "stats": stats,
        "mixture": mixture,
        "evaluation": evaluation,
        "fit": fit,
        "centroids": centroids,
    }
    report = Report(title)
    if levels is not None and len(levels):
        report.summary = _levels_table(levels)
    if explorer:
        link = f"<p><a class='explorer' href='{escape(explorer)}'>bucket explorer</a></p>"
        report.summary = link + report.summary
    for name, need in FIGURES:
        if inputs.get(need) is None:
            report.omitted.append(f"{name}: omitted (no {need} input given)")
            continue
        if name == "rank_size":
            report.figures.append(figures.rank_size(stats, levels))
        elif name == "centroid_map" and centroids is not None:
            sizes = stats if stats is not None else pd.DataFrame(columns=["level", "bucket"])
            report.figures.append(figures.centroid_map(centroids, sizes, terms))
        else:
            report.figures.append(getattr(figures, name)(inputs[need]))
    return report
