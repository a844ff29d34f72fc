"""The bucket explorer: a static, self-contained HTML page over the cards (driver).

The cards of every level are embedded as JSON and drawn by a small inline script: a page
of level-1 cards at a time, a search box (a code prefix such as ``12`` or ``12.3``, or a
term), and a click on a card to list its children. Nothing is loaded from anywhere, so
the page opens offline, from a Volume and in Databricks ``displayHTML``. Above
:data:`INLINE_CARDS` cards the children of each level-1 bucket go to ``parts/<c1>.js``
files beside the page, loaded when a bucket is opened, so the first screen stays small
at 131,072 leaf cells.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from html import escape
from typing import Any

import pandas as pd

from hermes_spark import io
from hermes_spark.report.explorer_js import EXPLORER_JS as _JS

log = logging.getLogger(__name__)

#: most cards embedded in the page itself (beyond: children in parts/ files)
INLINE_CARDS = 1000
#: cards per page of the list
PAGE_SIZE = 50
#: rows the notebook view shows
MAX_ROWS = 50
INDEX = "index.html"

_CSS = """
body{font-family:sans-serif;margin:1.2em;max-width:1200px;color:#222}
#q{width:28em;padding:4px}
.card{border:1px solid #ddd;margin:.4em 0;padding:.4em .6em;cursor:pointer}
.card h3{margin:.1em 0;font-size:1em}
.terms{color:#1f5fa0}
.ex{color:#444;font-size:12px;margin:.1em 0 .1em 1em}
.kids{margin-left:1.5em}
.pager button{margin:0 .3em}
"""


def _clean(value: Any) -> Any:
    """A pandas/Spark value as plain JSON (NaN → None, rows → dicts, arrays → lists)."""
    if value is None:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if hasattr(value, "asDict"):
        return {k: _clean(v) for k, v in value.asDict().items()}
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if hasattr(value, "tolist") and not isinstance(value, (int, str)):
        return _clean(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


@dataclass
class Cards:
    """The cards of one codebook version (pandas, one row per bucket and level):
    ``_repr_html_`` for notebooks, :meth:`html` and :meth:`save` for the explorer."""

    frame: pd.DataFrame
    codebook_version: str | None = None
    table: str | None = None

    def records(self, level: int) -> list[dict[str, Any]]:
        """The cards of ``level`` as JSON-ready dicts, largest first."""
        rows = self.frame[self.frame["level"] == level].sort_values(
            ["tokens", "bucket"], ascending=[False, True]
        )
        return [{k: _clean(v) for k, v in r.items()} for r in rows.to_dict(orient="records")]

    def terms(self, level: int = 1) -> dict[int, list[str]]:
        """``{bucket: top terms}`` of one level (for the centroid map's labels)."""
        rows = self.frame[self.frame["level"] == level]
        return {
            int(b): list(_clean(t) or [])
            for b, t in zip(rows["bucket"], rows["top_terms"], strict=True)
        }

    def _payload(self) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
        top = self.records(1)
        kids: dict[str, list[dict[str, Any]]] = {}
        for c in self.records(2) if (self.frame["level"] >= 2).any() else []:
            kids.setdefault(str(c["code"]).split(".")[0], []).append(c)
        inline = len(self.frame) <= INLINE_CARDS
        data = {"top": top, "children": kids if inline else {}, "page_size": PAGE_SIZE}
        return data, ({} if inline else kids)

    def html(self) -> str:
        """The explorer page (a full HTML document; children inline when small)."""
        data, _ = self._payload()
        return self._page(data)

    def _page(self, data: dict[str, Any]) -> str:
        blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
        title = f"hermes explorer — codebook {self.codebook_version}"
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{escape(title)}</h1><p>Search a code (12 or 12.3) or a term; click a "
            "level-1 card to list its children.</p>"
            "<input id='q' placeholder='code or term'> <span id='count'></span>"
            "<div class='pager'><button id='prev'>previous</button>"
            "<button id='next'>next</button></div><div id='list'></div>"
            f"<script type='application/json' id='cards-data'>{blob}</script>"
            f"<script>{_JS}</script></body></html>"
        )

    def save(self, out: str, *, storage: io.Storage | None = None) -> str:
        """Write ``out/index.html`` (and ``out/parts/*.js`` for large cards); return the
        page's path (driver, any URI)."""
        data, parts = self._payload()
        for c1, kids in parts.items():
            blob = json.dumps(kids, separators=(",", ":")).replace("</", "<\\/")
            io.write_text(
                io.join(out, "parts", f"{c1}.js"),
                f"hermesPart({json.dumps(c1)},{blob});",
                storage=storage,
            )
        path = io.join(out, INDEX)
        io.write_text(path, self._page(data), storage=storage)
        log.info("explorer written to %s (%d cards)", path, len(self.frame))
        return path

    def _repr_html_(self) -> str:
        top = self.records(1)
        head = (
            f"<p><b>bucket cards</b> of codebook {escape(str(self.codebook_version))}: "
            f"{len(top)} level-1 buckets, {len(self.frame)} cards</p>"
        )
        rows = "".join(
            f"<tr><td>{escape(str(c['code']))}</td><td>{c['docs']}</td><td>{c['tokens']}</td>"
            f"<td>{escape(', '.join(c.get('top_terms') or []))}</td></tr>"
            for c in top[:MAX_ROWS]
        )
        more = len(top) - MAX_ROWS
        tail = f"<p>… {more} more level-1 buckets</p>" if more > 0 else ""
        return (
            head
            + "<table><tr><th>code</th><th>docs</th><th>tokens</th><th>top terms</th></tr>"
            + rows
            + "</table>"
            + tail
        )
