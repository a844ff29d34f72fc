"""The evaluation report: goals against the baselines, Markdown and a short text table.

Driver side, pure Python on the report dict that :func:`hermes_spark.evaluate.evaluate`
returns; nothing here touches Spark or files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["GOAL_SPACE", "goals", "summary_lines", "to_markdown"]

#: The space the goals are judged in: the embedding model's own vectors.
GOAL_SPACE = "model"

_COLUMNS = (
    ("relative_mse", "rel MSE (LST)", "{:.4f}"),
    ("cell_mse_model", "cell MSE (model)", "{:.4f}"),
    ("perplexity", "perplexity", "{:.1f}"),
    ("cells_nonempty", "non-empty", "{}"),
    ("dead_codes", "dead codes", "{}"),
    ("imbalance", "imbalance", "{:.3f}"),
    ("max_share", "max share", "{:.3f}"),
    ("collision_rate", "collisions", "{:.3f}"),
    ("silhouette_cosine", "silhouette", "{:.3f}"),
    ("davies_bouldin", "DB", "{:.3f}"),
    ("calinski_harabasz", "CH", "{:.1f}"),
    ("fit_seconds", "fit s", "{:.2f}"),
)
#: Partition metrics shown per space (``row["spaces"][space][key]``).
_SPACE_COLUMNS = (
    ("cell_mse", "cell MSE", "{:.4f}"),
    ("silhouette_cosine", "silhouette", "{:.3f}"),
    ("davies_bouldin", "DB", "{:.3f}"),
    ("calinski_harabasz", "CH", "{:.1f}"),
)


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    return spec.format(value)


def _row(methods: Sequence[Mapping[str, Any]], name: str, level: int) -> Mapping[str, Any] | None:
    for row in methods:
        if row["method"] == name and row["level"] == level:
            return row
    return None


def _ratio(ours: Mapping[str, Any], base: Mapping[str, Any], space: str) -> float:
    """Within-cell MSE of ``ours`` over ``base`` in ``space`` (``model`` or ``lst``)."""
    return float(ours["spaces"][space]["cell_mse"]) / max(
        float(base["spaces"][space]["cell_mse"]), 1e-12
    )


def goals(methods: Sequence[Mapping[str, Any]], label_cols: Sequence[str]) -> dict[str, Any]:
    """Where the codes stand on the goals (``None`` where a baseline is missing).

    Judged in the embedding model's space (``space``): the within-cell MSE of each
    partition (every cell represented by its held-out rows' mean) over flat k-means'.

    - L1: NMI of ``c1`` vs each label column >= flat k-means with K1, and within-cell MSE
      within 1% of it (``l1_mse_ratio <= 1.01``);
    - L12: within-cell MSE of ``(c1, c2)`` within 5% of flat k-means with K1*K2
      (``l12_mse_ratio <= 1.05``) at a fraction of its fit time (``l12_fit_time_ratio``).

    ``*_lst`` repeat the ratios in the codebook's LST space, for reference.
    """
    out: dict[str, Any] = {"space": GOAL_SPACE}
    ours1, km1 = _row(methods, "hermes", 1), _row(methods, "kmeans", 1)
    if ours1 and km1:
        out["l1_mse_ratio"] = _ratio(ours1, km1, GOAL_SPACE)
        out["l1_mse_ratio_lst"] = _ratio(ours1, km1, "lst")
        out["l1_mse_within_1pct"] = out["l1_mse_ratio"] <= 1.01
        out["l1_nmi"] = {
            col: {
                "hermes": ours1["labels"][col]["nmi"],
                "kmeans": km1["labels"][col]["nmi"],
                "at_least_kmeans": ours1["labels"][col]["nmi"] >= km1["labels"][col]["nmi"],
            }
            for col in label_cols
        }
    ours2, km2 = _row(methods, "hermes", 2), _row(methods, "kmeans", 2)
    if ours2 and km2:
        out["l12_kmeans_k"] = km2["k"]
        out["l12_mse_ratio"] = _ratio(ours2, km2, GOAL_SPACE)
        out["l12_mse_ratio_lst"] = _ratio(ours2, km2, "lst")
        out["l12_mse_within_5pct"] = out["l12_mse_ratio"] <= 1.05
        if ours2.get("fit_seconds") and km2.get("fit_seconds"):
            out["l12_fit_time_ratio"] = ours2["fit_seconds"] / km2["fit_seconds"]
    leaf = max((r["level"] for r in methods if r["method"] == "hermes"), default=None)
    if leaf is not None:
        ours_leaf = _row(methods, "hermes", leaf)
        assert ours_leaf is not None
        out["leaf_collision_rate"] = ours_leaf["collision_rate"]
        out["dead_codes"] = {
            r["level"]: r["dead_codes"] for r in methods if r["method"] == "hermes"
        }
    return out


def to_markdown(report: Mapping[str, Any]) -> str:
    """The whole report as Markdown: sampling, one table per level, label scores, goals."""
    s = report["sampling"]
    lines = [
        f"# hermes evaluate: codebook {report['codebook_version']}",
        "",
        f"- table `{report['table']}`, levels {report['levels']}",
        f"- held-out sample: {report['eval_rows']} documents; fitting-side sample (baselines): "
        f"{report['baseline_fit_rows']} documents",
        f"- disjoint from the fit sample: **{'yes' if s['disjoint_from_fit'] else 'NO'}** "
        f"(fit seed {s['fit_seed']}, fit sample {s['fit_sample_size']}, threshold "
        f"u_fit <= {s['fit_threshold_u']:.6g}, {s['fit_threshold_source']}; eval order "
        f"{s['eval_hash']})",
        f"- vectors: {report['vectors']}",
        "- every partition metric (cell MSE = within-cell squared distance to the cell's "
        "mean over the total; silhouette (cosine), Davies-Bouldin (DB), Calinski-Harabasz "
        "(CH)) is given in both spaces, the model's vectors and the codebook's LST space; "
        "`rel MSE (LST)` is the codewords' reconstruction error, in the LST space",
        f"- goals are judged in the **{GOAL_SPACE}** space (the embedding model's vectors)",
        "",
    ]
    methods = report["methods"]
    for level in sorted({r["level"] for r in methods}):
        rows = [r for r in methods if r["level"] == level]
        lines += [f"## Level {level}", ""]
        head = ["method", "k", *[c[1] for c in _COLUMNS]]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for r in rows:
            cells = [r["method"], str(r["k"]), *[_fmt(r.get(k), f) for k, _, f in _COLUMNS]]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "Partition metrics per space:", ""]
        head = ["method", "space", *[c[1] for c in _SPACE_COLUMNS]]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            for space, vals in (r.get("spaces") or {}).items():
                cells = [_fmt(vals.get(k), f) for k, _, f in _SPACE_COLUMNS]
                lines.append("| " + " | ".join([r["method"], space, *cells]) + " |")
        for col in report["label_cols"]:
            lines += ["", f"Labels `{col}`:", "", "| method | NMI | ARI | homog. | compl. |"]
            lines.append("|---|---|---|---|---|")
            for r in rows:
                sc = r["labels"][col]
                lines.append(
                    f"| {r['method']} | {sc['nmi']:.4f} | {sc['ari']:.4f} | "
                    f"{sc['homogeneity']:.4f} | {sc['completeness']:.4f} |"
                )
        lines.append("")
    g = report.get("goals") or {}
    if g:
        lines += ["## Goals", ""]
        space = g.get("space", GOAL_SPACE)
        lines.append(f"Judged in the {space} space; the LST-space ratio follows in brackets.")
        lines.append("")
        if "l1_mse_ratio" in g:
            lines.append(
                f"- L1 cell MSE / flat k-means K1: {g['l1_mse_ratio']:.4f} "
                f"[LST {g.get('l1_mse_ratio_lst', float('nan')):.4f}] "
                f"(goal <= 1.01: {'met' if g['l1_mse_within_1pct'] else 'not met'})"
            )
            for col, v in g["l1_nmi"].items():
                lines.append(
                    f"- L1 NMI vs `{col}`: {v['hermes']:.4f} vs k-means {v['kmeans']:.4f} "
                    f"({'met' if v['at_least_kmeans'] else 'not met'})"
                )
        if "l12_mse_ratio" in g:
            lines.append(
                f"- L12 cell MSE / flat k-means with {g['l12_kmeans_k']} centroids: "
                f"{g['l12_mse_ratio']:.4f} [LST {g.get('l12_mse_ratio_lst', float('nan')):.4f}] "
                "(goal <= 1.05: "
                f"{'met' if g['l12_mse_within_5pct'] else 'not met'})"
            )
        if "l12_fit_time_ratio" in g:
            lines.append(
                f"- fit time ratio hermes / flat k-means K1*K2: {g['l12_fit_time_ratio']:.3f}"
            )
        if "leaf_collision_rate" in g:
            lines.append(f"- leaf collision rate: {g['leaf_collision_rate']:.4f}")
            lines.append(f"- dead codes per level: {g['dead_codes']}")
    return "\n".join(lines) + "\n"


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """A short table for the terminal: one line per (level, method)."""
    s = report["sampling"]
    out = [
        f"evaluation of codebook {report['codebook_version']}: {report['eval_rows']} held-out "
        f"documents ({'disjoint from' if s['disjoint_from_fit'] else 'OVERLAPPING'} the fit "
        f"sample), baselines fitted on {report['baseline_fit_rows']}",
        f"  {'level':<5} {'method':<17} {'k':>7} {'rel MSE':>8} {'cellMSE':>8} {'perplex':>8} "
        f"{'imbal':>6} "
        f"{'dead':>6} {'silh':>6}" + "".join(f" {'NMI ' + c:>10}" for c in report["label_cols"]),
    ]
    for r in report["methods"]:
        sil = r.get("silhouette_cosine")
        line = (
            f"  L{r['level']:<4} {r['method']:<17} {r['k']:>7} {r['relative_mse']:>8.4f} "
            f"{r['cell_mse_model']:>8.4f} "
            f"{r['perplexity']:>8.1f} {r['imbalance']:>6.3f} {r['dead_codes']:>6} "
            f"{'-' if sil is None else f'{sil:.3f}':>6}"
        )
        line += "".join(
            f" {r['labels'][c]['nmi']:>{max(10, len(c) + 4)}.4f}" for c in report["label_cols"]
        )
        out.append(line)
    g = report.get("goals") or {}
    if "l12_mse_ratio" in g:
        ratio = g.get("l12_fit_time_ratio")
        out.append(
            f"  {g.get('space', GOAL_SPACE)} space: L1 cell MSE / k-means K1 "
            f"{g.get('l1_mse_ratio', float('nan')):.4f}; "
            f"L12 cell MSE / k-means K1*K2 {g['l12_mse_ratio']:.4f}"
            + (f"; fit time ratio {ratio:.3f}" if ratio else "")
        )
    return out
