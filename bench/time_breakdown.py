"""Where the time of one annotate task goes: the rows ``bench_annotate`` prints.

No project imports, so the arithmetic is testable on its own. The components measured
inside the annotate function (:data:`INNER`), the two Arrow conversions ``mapInPandas``
does around it (:data:`ARROW`), the rest of the in-process total (:data:`OTHER`) and,
when the Spark path is timed, what it adds beyond all of them (:data:`SPARK_REST`).
"""

from __future__ import annotations

#: The breakdown's rows measured inside the annotate function, in print order.
INNER = (
    "tokenize (+ token counts)",
    "model (pad + ONNX Runtime)",
    "LST",
    "RVQ assignment",
    "row checks",
    "quality",
)
ARROW = ("Arrow -> pandas, input", "pandas -> Arrow, output")
OTHER = "other, ours"
SPARK_REST = "Spark overhead"


def breakdown_rows(
    parts: dict[str, float], total: float, rest: str = OTHER
) -> list[tuple[str, float, float]]:
    """``(component, seconds, share of the total)`` for each of ``parts``, then ``rest``:
    what of ``total`` the parts do not cover, never negative. Shares are of the larger of
    ``total`` and the parts' sum, so they sum to 1 (all of it to ``rest`` when nothing
    took any time); negative part seconds count as 0."""
    clean = [(name, max(float(sec), 0.0)) for name, sec in parts.items()]
    covered = sum(sec for _, sec in clean)
    rows = [*clean, (rest, max(float(total) - covered, 0.0))]
    whole = max(float(total), covered)
    if whole <= 0:
        return [(name, sec, 1.0 if name == rest else 0.0) for name, sec in rows]
    return [(name, sec, sec / whole) for name, sec in rows]
