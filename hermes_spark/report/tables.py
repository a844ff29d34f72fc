"""Notebook views (``_repr_html_``) of the sample plan, the mixture report and the
evaluation report: small HTML tables plus the matching figure of the page (driver).

:class:`MixtureReport` and :class:`EvaluationReport` are plain ``dict`` subclasses, so
the reports stay JSON as before and a notebook cell that ends with one shows a table.
"""

from __future__ import annotations

from html import escape
from typing import Any

import pandas as pd

from hermes_spark.report import figures

#: most table rows a notebook view shows (the rest is counted, not drawn)
MAX_ROWS = 50


def _frame_html(frame: pd.DataFrame, what: str) -> str:
    more = len(frame) - MAX_ROWS
    tail = f"<p>… {more} more {what} (see the JSON)</p>" if more > 0 else ""
    html: str = frame.head(MAX_ROWS).to_html(index=False, float_format=lambda x: f"{x:.4g}")
    return html + tail


def plan_html(plan: Any) -> str:
    """A :class:`~hermes_spark.sampling.plan.SamplePlan` as a header and its Stage-1 table."""
    s = plan.settings
    head = (
        f"<p><b>sample plan</b> of codebook {escape(str(plan.codebook_version))}: "
        f"budget {float(s.get('budget_tokens', 0)):.4g} tokens, Stage 1 at L{plan.weights_level} "
        f"({escape(str(s.get('weights')))}), Stage 2 at L{plan.stage2_level} "
        f"({escape(str(s.get('stage2')))}), seed {s.get('seed')}</p>"
    )
    cols = [
        c for c in ("bucket", "weight", "supply", "cap", "target", "allocated") if c in plan.stage1
    ]
    return head + _frame_html(plan.stage1[cols], "Stage-1 buckets")


class MixtureReport(dict[str, Any]):
    """The mixture report of ``hermes sample`` (a dict), shown as a table in notebooks."""

    def _repr_html_(self) -> str:
        t = self.get("totals", {})
        head = (
            f"<p><b>mixture report</b> of codebook {escape(str(self.get('codebook_version')))}: "
            f"realized {float(t.get('realized_tokens', 0)):.4g} of "
            f"{float(t.get('budget_tokens', 0)):.4g} tokens, {t.get('docs')} docs; within the "
            f"SPEC bound: {self.get('within_bound')}</p>"
        )
        rows = pd.DataFrame(self.get("stage1", []))
        cols = [
            c
            for c in ("bucket", "key", "target_share", "realized_share", "within_bound")
            if c in rows
        ]
        _, _, chart = figures.target_vs_realized(self)
        return head + chart + _frame_html(rows[cols], "Stage-1 buckets")


class EvaluationReport(dict[str, Any]):
    """The report of ``hermes evaluate`` (a dict), shown as a table in notebooks."""

    def _repr_html_(self) -> str:
        head = (
            f"<p><b>evaluation</b> of codebook {escape(str(self.get('codebook_version')))} on "
            f"{self.get('eval_rows')} held-out documents</p>"
        )
        _, _, body = figures.evaluation(self)
        return head + body
