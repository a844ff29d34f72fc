"""The mixture report of a sample (JSON next to the manifest) and readable plan/report text.

Driver only, over per-bucket rows: the plan, the realized tokens per Stage-2 bucket and
the repetition histogram (small aggregations of the manifest done by the caller).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from hermes_spark.io import jsonable
from hermes_spark.report.tables import MixtureReport
from hermes_spark.sampling.carried_weights import carried_line

if TYPE_CHECKING:
    from hermes_spark.sampling.plan import SamplePlan

REPORT_KIND = "hermes-mixture-report"
#: Realized tokens of a Stage-1 bucket must be within max(BOUND_SHARE · target, largest doc).
BOUND_SHARE = 0.02
_SHOWN = 40


def entropy_bits(values: Any) -> float:
    """Shannon entropy (bits) of the distribution proportional to ``values``."""
    v = np.asarray(values, dtype=np.float64)
    total = v.sum()
    if not total > 0:
        return 0.0
    p = v[v > 0] / total
    return float(-(p * np.log2(p)).sum())


def _num(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _largest_docs(plan: SamplePlan, windows: pd.DataFrame | None) -> pd.Series:
    """Largest document per Stage-1 bucket: from the codes aggregation when the plan has
    it, else the largest pool document seen by the selection histogram."""
    kids = plan.children
    known = kids.groupby("parent")["max_tokens"].max()
    if windows is not None and not windows.empty and "M" in windows:
        seen = windows.groupby("parent")["M"].max()
        known = known.combine_first(seen) if known.notna().any() else seen
    return known


def _stage1_rows(
    plan: SamplePlan,
    real_parent: pd.Series,
    docs_parent: pd.Series,
    largest: pd.Series,
    realized_total: float,
    target_total: float,
) -> list[dict[str, Any]]:
    """Per Stage-1 bucket: target vs realized tokens and whether it is within the bound."""
    w = plan.weights_level
    rows = []
    for b, row in plan.stage1.set_index("bucket").iterrows():
        alloc = float(row["allocated"])
        real = float(real_parent[b])
        dev = real - alloc
        big = largest.get(b)
        big = float(big) if big is not None and np.isfinite(big) else 0.0
        bound = max(BOUND_SHARE * alloc, big)
        rows.append(
            {
                "bucket": int(b),
                "key": plan.key(b, w),
                "weight": _num(row["weight"]),
                "supply_tokens": _num(row["supply"]),
                "cap_tokens": _num(row["cap"]),
                "capped": bool(row["capped"]),
                "target_tokens": _num(row["target"]),
                "allocated_tokens": alloc,
                "stage2_unmet_tokens": _num(max(float(row["stage2_unmet"]), 0.0)),
                "realized_tokens": real,
                "target_share": _num(row["target"] / target_total if target_total else 0.0),
                "realized_share": _num(real / realized_total if realized_total else 0.0),
                "deviation_tokens": dev,
                "bound_tokens": bound,
                "largest_doc_tokens": big,
                "within_bound": bool(abs(dev) <= bound + 1e-6),
                "docs": int(row["docs"]),
                "selected_docs": int(docs_parent[b]),
                "children": int(row["children"]),
                **{
                    k: _num(row[k])
                    for k in ("threshold", "steepness", "scale")
                    if k in plan.stage1.columns
                },
            }
        )
    return rows


def _stage2_frame(plan: SamplePlan, real_child: pd.Series, docs_child: pd.Series) -> pd.DataFrame:
    """Per Stage-2 bucket: pool, allocation and realized tokens."""
    w, s = plan.weights_level, plan.stage2_level
    kids = plan.children.set_index("child")
    return pd.DataFrame(
        {
            "bucket": kids.index.to_numpy(dtype=np.int64),
            "key": [plan.key(c, s) for c in kids.index],
            "parent_key": [plan.key(b, w) for b in kids["parent"]],
            "docs": kids["docs"].to_numpy(dtype=np.int64),
            "tokens": kids["tokens"].to_numpy(dtype=np.float64),
            "pool_docs": kids["pool_docs"].to_numpy(dtype=np.int64),
            "pool_tokens": kids["pool_tokens"].to_numpy(dtype=np.float64),
            "no_quality_docs": kids["no_quality_docs"].to_numpy(dtype=np.float64),
            "quality_threshold": kids["threshold"].to_numpy(dtype=np.float64),
            "alloc_tokens": kids["alloc"].to_numpy(dtype=np.float64),
            "full_passes": kids["full_passes"].to_numpy(dtype=np.int64),
            "expected_repeats": kids["expected_repeats"].to_numpy(dtype=np.float64),
            "realized_tokens": real_child.to_numpy(),
            "selected_docs": docs_child.to_numpy(),
        }
    )


def build_report(
    plan: SamplePlan,
    per_child: pd.DataFrame,
    repetition: pd.DataFrame,
    windows: pd.DataFrame | None,
    *,
    manifest: str,
    table: str,
) -> dict[str, Any]:
    """The mixture report (JSON-able) of a sample of ``plan``.

    Args:
        per_child: ``stage1_bucket, stage2_bucket, docs, copies, tokens`` realized per child
            (``tokens`` counts every copy).
        repetition: ``repeats, docs, tokens`` (the repetition histogram).
        windows: the selection's per-child summary (for the largest documents), optional.
    """
    w, s = plan.weights_level, plan.stage2_level
    st1 = plan.stage1.set_index("bucket")
    kids = plan.children.set_index("child")
    got = (
        per_child.set_index("stage2_bucket")
        if not per_child.empty
        else pd.DataFrame(columns=["docs", "copies", "tokens"])
    )
    real_child = got["tokens"].reindex(kids.index).fillna(0).astype(np.float64)
    docs_child = got["docs"].reindex(kids.index).fillna(0).astype(np.int64)
    real_parent = real_child.groupby(kids["parent"]).sum().reindex(st1.index).fillna(0.0)
    docs_parent = docs_child.groupby(kids["parent"]).sum().reindex(st1.index).fillna(0)
    largest = _largest_docs(plan, windows).reindex(st1.index)
    realized_total = float(real_parent.sum())
    target_total = float(st1["target"].sum())
    stage1_rows = _stage1_rows(
        plan, real_parent, docs_parent, largest, realized_total, target_total
    )
    all_ok = all(r["within_bound"] for r in stage1_rows)
    stage2 = _stage2_frame(plan, real_child, docs_child)
    stage2_rows = stage2.to_dict(orient="records")
    reps = [
        {"repeats": int(r["repeats"]), "docs": int(r["docs"]), "tokens": int(r["tokens"])}
        for _, r in repetition.iterrows()
    ]
    budget = float(plan.settings["budget_tokens"])
    allocated = float(plan.info.get("allocated_tokens", kids["alloc"].sum()))
    info = plan.info
    totals = {
        "budget_tokens": budget,
        "target_tokens": target_total,
        "allocated_tokens": allocated,
        "realized_tokens": realized_total,
        "unmet_tokens": max(budget - realized_total, 0.0),
        "stage1_shortfall_tokens": float(info.get("stage1_shortfall_tokens", 0.0)),
        "stage2_unmet_tokens": float(info.get("stage2_unmet_tokens", 0.0)),
        "rounding_tokens": allocated - realized_total,
        "docs": int(docs_child.sum()),
        "copies": int(got["copies"].sum()) if len(got) else 0,
    }
    return MixtureReport(
        jsonable(
            {
                "kind": REPORT_KIND,
                "format": 1,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "manifest": manifest,
                "codes_table": table,
                "codebook_version": plan.codebook_version,
                "levels": list(plan.levels),
                "settings": dict(plan.settings),
                "weights": dict(info.get("weights") or {}),
                "totals": totals,
                "within_bound": bool(all_ok),
                "entropy_bits": {
                    f"level{w}": {
                        "corpus": entropy_bits(st1["supply"]),
                        "target": entropy_bits(st1["target"]),
                        "realized": entropy_bits(real_parent),
                    },
                    f"level{s}": {
                        "corpus": entropy_bits(kids["tokens"]),
                        "target": entropy_bits(kids["alloc"]),
                        "realized": entropy_bits(real_child),
                    },
                },
                "pool_contraction": info.get("pool_contraction", {}),
                "docs_without_quality": int(info.get("docs_without_quality", 0)),
                **({"target_top": info["target_top"]} if info.get("target_top") else {}),
                "unlisted_buckets": list((info.get("weights") or {}).get("unlisted_buckets", [])),
                "repetition_histogram": reps,
                "stage1": stage1_rows,
                "stage2": stage2_rows,
            }
        )
    )


# ------------------------------------------------------------------------ text


def _tok(x: float) -> str:
    x = float(x)
    for unit, div in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def _header(settings: dict[str, Any], version: str) -> list[str]:
    return [
        f"  codebook {version}: Stage 1 at level {settings['weights_level']} "
        f"(weights {settings['weights']}), Stage 2 at level {settings['stage2_level']} "
        f"({settings['stage2']}), max epochs {settings['max_epochs']:g}, seed {settings['seed']}",
    ]


def _contraction_line(pc: dict[str, Any]) -> str:
    if not pc:
        return ""
    line = (
        f"  pool contraction L{pc['coarser_level']}->L{pc['level']}: mean pool "
        f"{pc['coarser_mean_pool_docs']:.1f} -> {pc['mean_pool_docs']:.1f} docs "
        f"({pc['contraction']:.1f}x); per document {pc['coarser_doc_weighted_pool_docs']:.1f} "
        f"-> {pc['doc_weighted_pool_docs']:.1f} ({pc['doc_weighted_contraction']:.1f}x)"
    )
    if "mean_candidate_pool_docs" in pc:
        line += f"; quality pool {pc['mean_candidate_pool_docs']:.1f} docs"
    return line


def _target_line(tt: dict[str, Any] | None) -> str:
    """One line about ``target-top``'s centroids, vectors and pool thresholds."""
    if not tt:
        return ""
    vec = tt.get("vectors") or {}
    where = vec.get("table") or (
        f"corpus {(vec.get('corpus') or {}).get('input')}" if vec else "the given scores"
    )
    thr = tt.get("similarity_thresholds") or {}
    line = (
        f"  target-top: {tt.get('target_docs')} target examples, {tt.get('centroids')} "
        f"centroids, vectors from {where}"
    )
    if thr.get("median") is not None:
        line += (
            f"; similarity thresholds min {thr['min']:.3f} / median {thr['median']:.3f} / "
            f"max {thr['max']:.3f}"
        )
    if tt.get("docs_without_similarity"):
        line += f"; {tt['docs_without_similarity']} documents without a vector (never selected)"
    return line


def format_plan(plan: SamplePlan) -> str:
    """A readable table of a plan (Stage-1 targets, caps, expected repetition)."""
    w = plan.weights_level
    st1 = plan.stage1.sort_values("target", ascending=False, kind="stable")
    kids = plan.children
    rep = (kids["alloc"] * kids["expected_repeats"]).groupby(kids["parent"]).sum() / kids[
        "alloc"
    ].groupby(kids["parent"]).sum().replace(0, np.nan)
    info = plan.info
    lines = [
        f"sample plan: {_tok(plan.settings['budget_tokens'])} budget tokens, "
        f"{_tok(info['allocated_tokens'])} allocated"
    ]
    lines += _header(plan.settings, plan.codebook_version)
    lines.append(
        f"  {'bucket':>10} {'weight':>8} {'supply':>9} {'target':>9} {'share':>7} "
        f"{'capped':>6} {'children':>8} {'unmet':>8} {'exp.rep':>7}"
    )
    total = float(st1["target"].sum()) or 1.0
    for _, r in st1.head(_SHOWN).iterrows():
        lines.append(
            f"  {plan.key(r['bucket'], w):>10} {r['weight']:>8.4f} {_tok(r['supply']):>9} "
            f"{_tok(r['target']):>9} {r['target'] / total:>7.2%} {'yes' if r['capped'] else '':>6} "
            f"{int(r['children']):>8} {_tok(max(r['stage2_unmet'], 0.0)):>8} "
            f"{rep.get(r['bucket'], float('nan')):>7.2f}"
        )
    if len(st1) > _SHOWN:
        lines.append(f"  ... and {len(st1) - _SHOWN} more buckets")
    lines.append(
        f"  unmet: Stage-1 caps {_tok(info['stage1_shortfall_tokens'])}, Stage-2 pools "
        f"{_tok(info['stage2_unmet_tokens'])}; expected repetition "
        f"{info['expected_repeats_token_weighted']:.2f} (max {info['max_expected_repeats']:.2f})"
    )
    te, ce = info["target_entropy_bits"], info["corpus_entropy_bits"]
    lines.append(
        f"  entropy (bits): L{w} corpus {ce['stage1']:.2f} target {te['stage1']:.2f}; "
        f"L{plan.stage2_level} corpus {ce['stage2']:.2f} target {te['stage2']:.2f}"
    )
    lines.append(_contraction_line(info.get("pool_contraction", {})))
    unlisted = (info.get("weights") or {}).get("unlisted_buckets") or []
    if unlisted:
        lines.append(
            f"  {len(unlisted)} bucket(s) not in the weights file get 0: "
            + ", ".join(unlisted[:20])
            + (" ..." if len(unlisted) > 20 else "")
        )
    lines.append(carried_line(info.get("weights")))
    lines.append(_target_line(info.get("target_top")))
    if info.get("docs_without_quality") and not info.get("target_top"):
        lines.append(
            f"  {info['docs_without_quality']} documents have no quality and are "
            "outside every quality pool"
        )
    return "\n".join(x for x in lines if x)


def format_report(report: dict[str, Any]) -> str:
    """A readable table of a mixture report (target vs realized per Stage-1 bucket)."""
    t = report["totals"]
    settings = report["settings"]
    s = settings["stage2_level"]
    budget = t["budget_tokens"] or 1.0
    lines = [
        f"mixture report for {report['manifest']}: {_tok(t['realized_tokens'])} of "
        f"{_tok(t['budget_tokens'])} budget tokens ({t['realized_tokens'] / budget:.1%}), "
        f"{t['docs']} documents, {t['copies']} copies"
    ]
    lines += _header(settings, report["codebook_version"])
    lines.append(
        f"  {'bucket':>10} {'target':>9} {'realized':>9} {'target%':>8} {'real%':>8} "
        f"{'dev':>8} {'bound':>8} {'docs':>8} {'capped':>6} ok"
    )
    rows = sorted(report["stage1"], key=lambda r: -(r["target_tokens"] or 0.0))
    for r in rows[:_SHOWN]:
        lines.append(
            f"  {r['key']:>10} {_tok(r['target_tokens']):>9} {_tok(r['realized_tokens']):>9} "
            f"{r['target_share']:>8.2%} {r['realized_share']:>8.2%} "
            f"{_tok(r['deviation_tokens']):>8} {_tok(r['bound_tokens']):>8} "
            f"{r['selected_docs']:>8} {'yes' if r['capped'] else '':>6} "
            f"{'ok' if r['within_bound'] else 'NO'}"
        )
    if len(rows) > _SHOWN:
        lines.append(f"  ... and {len(rows) - _SHOWN} more buckets")
    pools = [r["pool_docs"] for r in report["stage2"]]
    if pools:
        lines.append(
            f"  Stage-2 pools at L{s}: {len(pools)} buckets, pool size min {min(pools)} / "
            f"median {int(np.median(pools))} / max {max(pools)} docs"
        )
    lines.append(_contraction_line(report.get("pool_contraction", {})))
    e = report["entropy_bits"]
    lines.append(
        "  entropy (bits): "
        + "; ".join(
            f"L{lvl[5:]} corpus {v['corpus']:.2f} target {v['target']:.2f} "
            f"realized {v['realized']:.2f}"
            for lvl, v in e.items()
        )
    )
    hist = ", ".join(f"{h['repeats']}x: {h['docs']}" for h in report["repetition_histogram"])
    lines.append(f"  repetition (docs): {hist or 'none'}")
    lines.append(
        f"  unmet budget: {_tok(t['unmet_tokens'])} tokens (Stage-1 caps "
        f"{_tok(t['stage1_shortfall_tokens'])}, Stage-2 pools {_tok(t['stage2_unmet_tokens'])}, "
        f"rounding {_tok(t['rounding_tokens'])})"
    )
    if report.get("unlisted_buckets"):
        u = report["unlisted_buckets"]
        lines.append(
            f"  {len(u)} bucket(s) not in the weights file got 0: "
            + ", ".join(u[:20])
            + (" ..." if len(u) > 20 else "")
        )
    lines.append(carried_line(report.get("weights")))
    lines.append(_target_line(report.get("target_top")))
    if report.get("docs_without_quality") and not report.get("target_top"):
        lines.append(
            f"  {report['docs_without_quality']} documents without quality were "
            "outside every quality pool"
        )
    if not report["within_bound"]:
        lines.append(
            f"  WARNING: some Stage-1 buckets are off target by more than "
            f"max({BOUND_SHARE:.0%}, their largest document)"
        )
    return "\n".join(x for x in lines if x)
