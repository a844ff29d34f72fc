"""The report's figures: each takes report data (pandas STATS rows or a JSON report dict)
and returns ``(title, question, svg_or_html)``; all on the driver, no Spark.

Large levels are aggregated before plotting (a rank-size curve keeps at most
:data:`MAX_POINTS` log-spaced ranks), so the page stays small at 131,072 leaf cells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from hermes_spark.report import svg

#: most points one curve of a figure draws (log-spaced ranks beyond that)
MAX_POINTS = 200

Figure = tuple[str, str, str]


def _thin(n: int) -> np.ndarray:
    """At most MAX_POINTS indexes of ``range(n)``, log-spaced (first and last kept)."""
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.unique(np.geomspace(1, n, MAX_POINTS).astype(np.int64) - 1)


def _num(col: pd.Series) -> list[float]:
    """A column as floats, missing values as 0."""
    values: list[float] = pd.to_numeric(col, errors="coerce").fillna(0.0).astype(float).tolist()
    return values


def rank_size(stats: pd.DataFrame, levels: pd.DataFrame | None) -> Figure:
    """Bucket share against rank, log-log, one curve per level."""
    series = {}
    for level, rows in sorted(stats.groupby("level")):
        share = np.sort(rows["share_docs"].to_numpy(dtype=np.float64))[::-1]
        idx = _thin(len(share))
        label = f"L{level}"
        if levels is not None and level in set(levels["level"]):
            lv = levels.set_index("level").loc[level]
            label += f" imbalance {lv['imbalance']:.2f} max {lv['max_share']:.3f}"
        series[label] = ((idx + 1).tolist(), share[idx].tolist())
    chart = svg.lines(
        series, title="rank-size", xlabel="rank", ylabel="share of docs", logx=True, logy=True
    )
    return "Rank-size per level", "Are a few buckets swallowing the corpus?", chart


def children_entropy(stats: pd.DataFrame) -> Figure:
    """Children per L1 bucket and their entropy (bits), L1 buckets by size."""
    l1 = stats[stats["level"] == 1].sort_values("docs", ascending=False)
    l1 = l1.iloc[_thin(len(l1))]
    labels = [str(int(b)) for b in l1["bucket"]]
    chart = svg.bars(
        labels,
        {
            "children": _num(l1["children"]),
            "child entropy bits": _num(l1["child_entropy_bits"]),
        },
        title="children per L1",
        ylabel="children / bits",
        xlabel="L1 bucket (largest first)",
    )
    return "Children per L1 bucket", "Does every L1 bucket split evenly at L2?", chart


def quality(stats: pd.DataFrame) -> Figure:
    """quality p50 and p70 per L1 bucket."""
    l1 = stats[stats["level"] == 1].sort_values("docs", ascending=False)
    l1 = l1.iloc[_thin(len(l1))]
    chart = svg.bars(
        [str(int(b)) for b in l1["bucket"]],
        {"p50": _num(l1["quality_p50"]), "p70": _num(l1["quality_p70"])},
        title="quality per L1",
        ylabel="quality",
        xlabel="L1 bucket (largest first)",
    )
    return "Quality per L1 bucket", "Where does the high-quality text sit?", chart


def target_vs_realized(mixture: dict[str, Any]) -> Figure:
    """Target vs realized share per Stage-1 bucket; a table marks the SPEC bound."""
    rows = mixture.get("stage1", [])
    chart = svg.bars(
        [str(r["bucket"]) for r in rows],
        {
            "target": [float(r["target_share"]) for r in rows],
            "realized": [float(r["realized_share"]) for r in rows],
        },
        title="target vs realized",
        ylabel="share of tokens",
        xlabel="Stage-1 bucket",
    )
    bad = sum(not r["within_bound"] for r in rows)
    note = (
        f"<p>within the SPEC bound (|realized − target| ≤ largest doc): "
        f'<b class="num" data-key="within_bound">{mixture.get("within_bound")}</b>; '
        f"{bad} of {len(rows)} buckets outside.</p>"
    )
    return "Target vs realized share (Stage 1)", "Did the sample hit the mixture?", chart + note


def contraction(mixture: dict[str, Any]) -> Figure:
    """Pool contraction L(s-1)→L(s) and the repetition histogram."""
    pc = mixture.get("pool_contraction") or {}
    reps = mixture.get("repetition_histogram") or []
    chart = svg.bars(
        [str(r["repeats"]) for r in reps],
        {"docs": [float(r["docs"]) for r in reps]},
        title="repetition",
        ylabel="docs",
        xlabel="copies of a document",
    )
    note = (
        f"<p>pool contraction L{pc.get('coarser_level')}→L{pc.get('level')}: "
        f'<b class="num" data-key="contraction">{pc.get("contraction", 0):.3f}</b>× '
        f"(doc-weighted {pc.get('doc_weighted_contraction', 0):.3f}×)</p>"
    )
    return (
        "Pool contraction and repetition",
        "How much does Stage 2 narrow and repeat?",
        (chart + note),
    )


def codebook_health(fit: dict[str, Any]) -> Figure:
    """Per stage relative MSE, perplexity/K, dead-code share and imbalance."""
    st = fit.get("stages", [])
    chart = svg.bars(
        [f"L{s['level']}" for s in st],
        {
            "relative MSE": [float(s["relative_mse"]) for s in st],
            "perplexity / K": [float(s["perplexity"]) / max(s["size"], 1) for s in st],
            "dead / K": [float(s["dead_codes"]) / max(s["size"], 1) for s in st],
        },
        title="codebook health",
        ylabel="ratio",
        xlabel="level",
    )
    return (
        "Codebook health (fit report)",
        "Is every level of the codebook used and useful?",
        (chart + _table(st, ("level", "size", "relative_mse", "perplexity", "dead_codes"))),
    )


def evaluation(ev: dict[str, Any]) -> Figure:
    """relative MSE of hermes vs each baseline, per level."""
    methods = ev.get("methods", [])
    levels = sorted({int(r["level"]) for r in methods})
    names = sorted({r["method"] for r in methods}, key=lambda n: (n != "hermes", n))
    by = {(r["method"], int(r["level"])): r for r in methods}
    groups: dict[str, Sequence[float]] = {
        n: [float(by[(n, lv)].get("relative_mse") or 0) if (n, lv) in by else 0.0 for lv in levels]
        for n in names
    }
    chart = svg.bars([f"L{lv}" for lv in levels], groups, title="evaluation", ylabel="relative MSE")
    cols = ("method", "level", "k", "relative_mse", "perplexity", "silhouette_cosine")
    return (
        "Evaluation: hermes vs baselines",
        "Are the codes at least as good as k-means?",
        (chart + _table(methods, cols)),
    )


def _table(rows: list[dict[str, Any]], cols: tuple[str, ...]) -> str:
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            text = f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
            cells.append(f'<td class="num" data-key="{c}" data-value="{v}">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


#: level-1 buckets whose dots carry a text label on the centroid map (largest first)
MAP_LABELS = 16


def _pca2(points: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``points`` projected on the two main axes of ``basis`` (both centred on its mean)."""
    mean = basis.mean(axis=0)
    _, _, vt = np.linalg.svd(basis - mean, full_matrices=False)
    axes = vt[:2] if vt.shape[0] >= 2 else np.vstack([vt, np.zeros_like(vt)])[:2]
    projected: np.ndarray = (points - mean) @ axes.T
    return projected


def centroid_map(
    books: Sequence[np.ndarray], stats: pd.DataFrame, terms: dict[int, list[str]] | None = None
) -> Figure:
    """The level-1 centroids (and the largest level-2 ones: level-1 centroid plus its
    residual centroid) on the two main axes of the level-1 centroids, dot area ∝ tokens,
    ``books[1]`` holding one residual centroid per level-2 bucket (``K1 * K2`` rows),
    labelled with top terms when ``terms`` (``{bucket1: terms}``) is given. Driver; at
    most K1 + MAX_POINTS dots."""
    c1 = np.asarray(books[0], dtype=np.float64)
    share = {
        (int(r.level), int(r.bucket)): float(r.share_tokens)
        for r in stats[stats["level"] <= 2].itertuples()
    }
    xy1 = _pca2(c1, c1)
    order = sorted(range(len(c1)), key=lambda b: -share.get((1, b), 0.0))
    labelled = set(order[:MAP_LABELS])
    points = []
    for b in range(len(c1)):
        s = share.get((1, b), 0.0)
        words = (terms or {}).get(b, [])
        tip = f"L1 {b}: share of tokens {s:.3g}" + (f"; {', '.join(words)}" if words else "")
        label = ", ".join(words[:2]) if words else str(b)
        points.append((*xy1[b], 4 + 30 * math.sqrt(s), 0, label if b in labelled else "", tip))
    if len(books) > 1:
        k2 = int(np.asarray(books[1]).shape[0]) // len(c1)
        cells = sorted((k for k in share if k[0] == 2), key=lambda k: -share[k])[:MAX_POINTS]
        if cells:
            idx = np.array([b for _, b in cells])
            xyz = c1[idx // k2] + np.asarray(books[1], dtype=np.float64)[idx]
            xy2 = _pca2(xyz, c1)
            for (_, b), (px, py) in zip(cells, xy2, strict=True):
                s = share[(2, b)]
                tip = f"L2 {b // k2}.{b % k2}: share of tokens {s:.3g}"
                points.append((px, py, 2 + 20 * math.sqrt(s), 1, "", tip))
    chart = svg.scatter(
        points,
        title="centroid map",
        xlabel="first principal axis of the L1 centroids",
        ylabel="second axis",
        series=["L1 (area ∝ tokens)", f"L2 (largest {MAX_POINTS})"] if len(books) > 1 else [],
    )
    return "Centroid map (L1, L2)", "Which buckets are neighbours, and how big?", chart
