"""Plan computation (driver): Stage-1 weights and targets, the Stage-2 split, plan info.

:func:`plan_mixture` is the API (DataFrames in, a :class:`SamplePlan` out, nothing
written); :func:`hermes_spark.tasks.plan.compute_plan` is the path-based layer the CLI
uses (it reads the tables and hands their frames here). A plan needs only
per-bucket statistics: STATS rows (no scan of documents) or one aggregation over the
codes' small columns; ``quality-top:p`` adds the exact per-child quality pools (a few
histogram passes on executors). The driver holds one row per bucket, never a document.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hermes_spark import io
from hermes_spark.config import SampleConfig
from hermes_spark.errors import (
    BudgetError,
    InvalidConfigError,
    InvalidInputError,
    VersionMismatchError,
)
from hermes_spark.sampling.allocate import stage1_targets, stage2_allocation
from hermes_spark.sampling.levels import check_levels, infer_sizes
from hermes_spark.sampling.plan import SamplePlan
from hermes_spark.sampling.pools import quality_pools
from hermes_spark.sampling.quadmix import attach_quadmix_pools, quadmix_stage2
from hermes_spark.sampling.quadmix_math import load_params
from hermes_spark.sampling.rules.base import Pools, Score, Stage2Rule
from hermes_spark.sampling.rules.registry import parse_rule, rules_scoring
from hermes_spark.sampling.signals import (
    QualitySignals,
    parse_quality_cols,
    persisted,
    with_merged_quality,
)
from hermes_spark.sampling.similarity import SIM_COL, TargetCentroids
from hermes_spark.sampling.sources import (
    StatsFrame,
    children_from_codes,
    children_from_stats,
    levels_of_children,
    stats_code_levels,
    stats_rows,
)
from hermes_spark.sampling.weights import resolve_stage1_weights
from hermes_spark.stats import clean_codes, code_levels, codes_version, metadata_levels

log = logging.getLogger(__name__)


def _entropy_bits(values: np.ndarray) -> float:
    v = np.asarray(values, dtype=np.float64)
    total = v.sum()
    if total <= 0:
        return 0.0
    p = v[v > 0] / total
    return float(-(p * np.log2(p)).sum())


def pool_contraction(children: pd.DataFrame, s: int) -> dict[str, Any]:
    """Mean candidate pool at level ``s`` vs level ``s-1`` (docs per non-empty bucket, and
    the doc-weighted mean ``Σ n²/N``: the pool a random document sits in)."""
    fine = children["docs"].to_numpy(dtype=np.float64)
    coarse = children.groupby("mid")["docs"].sum().to_numpy(dtype=np.float64)
    n = fine.sum()
    out: dict[str, Any] = {
        "level": s,
        "coarser_level": s - 1,
        "mean_pool_docs": float(fine.mean()),
        "coarser_mean_pool_docs": float(coarse.mean()),
        "doc_weighted_pool_docs": float((fine**2).sum() / n) if n else 0.0,
        "coarser_doc_weighted_pool_docs": float((coarse**2).sum() / n) if n else 0.0,
    }
    out["contraction"] = out["coarser_mean_pool_docs"] / max(out["mean_pool_docs"], 1e-300)
    out["doc_weighted_contraction"] = out["coarser_doc_weighted_pool_docs"] / max(
        out["doc_weighted_pool_docs"], 1e-300
    )
    if "pool_docs" in children and (children["pool_docs"] != children["docs"]).any():
        pools = children["pool_docs"].to_numpy(dtype=np.float64)
        out["mean_candidate_pool_docs"] = (
            float(pools[pools > 0].mean()) if (pools > 0).any() else 0.0
        )
    return out


def _bucket_children(
    *,
    stats_df: StatsFrame | None,
    codes_df: DataFrame | None,
    version: str | None,
    weights_level: int,
    stage2_level: int | None,
    levels: tuple[int, ...] | None,
    name: str,
) -> tuple[pd.DataFrame, tuple[int, ...], str | None, int, int]:
    """Per level-``s`` child: ``parent, mid, child, c1..c_s, docs, tokens, max_tokens``;
    plus the level sizes, the version, ``w`` and ``s``."""
    if stats_df is not None:
        w, s = check_levels(weights_level, stage2_level, stats_code_levels(stats_df))
        by_level, found = stats_rows(stats_df, version, s, name=name)
        chosen: str | None = found
        if not by_level[s].shape[0]:
            raise InvalidInputError(f"{name} has no level-{s} rows for version {found}")
        sizes = infer_sizes(by_level, levels)
        children = children_from_stats(by_level, s, sizes)
    else:
        assert codes_df is not None
        w, s = check_levels(weights_level, stage2_level, code_levels(codes_df))
        children = children_from_codes(codes_df, s)
        sizes = infer_sizes(levels_of_children(children, s), levels)
        chosen = version
    children["mid"] = children[f"bucket{s - 1}"]
    children = children.rename(columns={f"bucket{w}": "parent", f"bucket{s}": "child"})
    children = children.sort_values("child", kind="stable").reset_index(drop=True)
    return children, tuple(int(k) for k in sizes), chosen, w, s


def _attach_pools(
    children: pd.DataFrame,
    rule: Stage2Rule,
    codes_df: DataFrame | None,
    s: int,
    signals: QualitySignals | None = None,
) -> pd.DataFrame:
    """Add each child's candidate pool (``pool_docs, pool_tokens, ...``) for the rule
    (``target-top`` ranks by ``target_similarity`` exactly as ``quality-top`` by quality)."""
    if rule.pools is Pools.TOP_SHARE:
        p = rule.p
        assert codes_df is not None and p is not None
        if rule.needs_target:
            codes_df = codes_df.withColumn("quality", F.col(SIM_COL))
        if signals is None:
            pools = quality_pools(codes_df, s, p)
        else:
            merged = with_merged_quality(codes_df, signals, s)
            with persisted(merged.select(f"bucket{s}", "quality", "n_tokens")) as rated:
                pools = quality_pools(rated, s, p)
        out = children.merge(pools, on="child", how="left")
        if out["pool_docs"].isna().any():
            raise InvalidInputError(
                "STATS and the codes table disagree on the buckets; re-run hermes stats"
            )
        return out
    out = children.copy()
    out["quality_docs"] = np.nan
    out["no_quality_docs"] = 0
    out["threshold"] = np.nan
    out["pool_docs"] = out["docs"]
    out["pool_tokens"] = out["tokens"]
    out["pool_max_tokens"] = out["max_tokens"]
    return out


def _stage1(
    children: pd.DataFrame,
    *,
    weights: str | Mapping[str, float],
    w: int,
    sizes: tuple[int, ...],
    budget: float,
    max_epochs: float,
    allow_shortfall: bool,
    storage: io.Storage | None,
) -> tuple[pd.DataFrame, float, dict[str, Any]]:
    """Stage-1 targets: weights over the level-``w`` buckets (``proportional`` and
    ``temperature`` follow the buckets' tokens), capped at ``E ×`` what the bucket can
    supply: its children's pools (SPEC: under ``quality-top:p`` the quality pools)."""
    tokens = children.groupby("parent")["tokens"].sum()
    supply = children.groupby("parent")["pool_tokens"].sum().astype(np.float64)
    parents = pd.DataFrame({"bucket": tokens.index.astype(np.int64), "tokens": tokens.to_numpy()})
    resolved, winfo = resolve_stage1_weights(
        weights, parents, w, sizes, max_epochs, storage=storage
    )
    capacity = float(max_epochs) * float(supply.sum())
    if budget > capacity and not allow_shortfall:
        pooled = " in its candidate pools" if (supply < tokens).any() else ""
        raise BudgetError(
            f"a budget of {budget:,.0f} tokens is impossible: the corpus holds "
            f"{float(supply.sum()):,.0f} tokens{pooled} and {{sample.max_epochs}} "
            f"{max_epochs:g} allows at most {capacity:,.0f}. Lower {{sample.budget_tokens}}, "
            "raise {sample.max_epochs}, or pass {allow_shortfall} to sample what there is "
            "and report the rest as unmet"
        )
    stage1, shortfall = stage1_targets(resolved, supply, budget, max_epochs)
    return stage1, shortfall, winfo


def _plan_info(
    stage1: pd.DataFrame,
    kids: pd.DataFrame,
    *,
    winfo: dict[str, Any],
    shortfall: float,
    rule: Stage2Rule,
    s: int,
) -> dict[str, Any]:
    pooled = kids["pool_tokens"] > 0
    alloc = kids["alloc"]
    return {
        "weights": winfo,
        "stage1_shortfall_tokens": float(shortfall),
        "stage2_unmet_tokens": float(stage1["stage2_unmet"].clip(lower=0).sum()),
        "allocated_tokens": float(alloc.sum()),
        "expected_repeats_token_weighted": float(
            (alloc * kids["expected_repeats"]).sum() / max(alloc.sum(), 1e-300)
        ),
        "max_expected_repeats": float(
            kids.loc[pooled, "expected_repeats"].max() if pooled.any() else 0.0
        ),
        "docs_without_quality": int(kids["no_quality_docs"].sum()) if rule.needs_codes else 0,
        "pool_contraction": pool_contraction(kids, s),
        "corpus_entropy_bits": {
            "stage1": _entropy_bits(stage1["supply"].to_numpy()),
            "stage2": _entropy_bits(kids["tokens"].to_numpy()),
        },
        "target_entropy_bits": {
            "stage1": _entropy_bits(stage1["target"].to_numpy()),
            "stage2": _entropy_bits(alloc.to_numpy()),
        },
    }


def _threshold_summary(kids: pd.DataFrame) -> dict[str, float | None]:
    """Min / median / max of the children's pool thresholds (the report's one line)."""
    thr = kids.loc[kids["pool_docs"] > 0, "threshold"].dropna().to_numpy(dtype=np.float64)
    if not len(thr):
        return {"min": None, "median": None, "max": None}
    return {"min": float(thr.min()), "median": float(np.median(thr)), "max": float(thr.max())}


def _with_children(
    stage1: pd.DataFrame, children: pd.DataFrame, kids: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Join the children's statistics onto the allocation and roll them up per parent."""
    extra = [c for c in children.columns if c not in kids.columns]
    kids = kids.merge(children[["child", *extra]], on="child", how="left")
    kids["pool_docs"] = kids["pool_docs"].astype(np.int64)
    kids["docs"] = kids["docs"].astype(np.int64)
    stage1 = stage1.rename_axis("bucket").reset_index()
    by_parent = children.groupby("parent")
    stage1["docs"] = stage1["bucket"].map(by_parent["docs"].sum()).astype(np.int64)
    stage1["children"] = stage1["bucket"].map(by_parent.size()).astype(np.int64)
    stage1["allocated"] = stage1["bucket"].map(kids.groupby("parent")["alloc"].sum()).fillna(0.0)
    stage1["stage2_unmet"] = stage1["target"] - stage1["allocated"]
    return stage1, kids


def _checked_codes(
    codes_df: DataFrame | None, version: str | None
) -> tuple[DataFrame | None, str | None]:
    if codes_df is None:
        return None, version
    codes_df = clean_codes(codes_df)
    found = codes_version(codes_df)
    if version is not None and found != version:
        raise VersionMismatchError(
            f"the codes are of codebook version {found}, the statistics of {version}; "
            "plan from statistics of the same version (re-run hermes stats)"
        )
    return codes_df, found


def check_budget_given(settings: SampleConfig) -> None:
    """The budget is given one way (exclusivity is :class:`SampleConfig`'s check)."""
    if settings.budget_tokens is None and settings.budget_share is None:
        raise InvalidConfigError(
            "missing budget: give {sample.budget_tokens} (tokens) or {sample.budget_share} "
            "(a share of the version's tokens)"
        )


def resolve_budget(settings: SampleConfig, version_tokens: float) -> float:
    """The budget in tokens: ``budget_tokens``, else ``budget_share`` × ``version_tokens``
    (all tokens of the chosen codebook version; driver, from the bucket sizes)."""
    if settings.budget_tokens is not None:
        return float(settings.budget_tokens)
    assert settings.budget_share is not None
    if not version_tokens > 0:
        raise InvalidInputError(
            "needs tokens: the chosen version has none", key="sample.budget_share"
        )
    return float(settings.budget_share) * version_tokens


def plan_mixture(
    stats_df: StatsFrame | None,
    *,
    budget_tokens: float | None = None,
    weights: str | Mapping[str, float] = "unimax",
    stage2: str = "coverage",
    weights_level: int = 1,
    stage2_level: int | None = 2,
    max_epochs: float = 1.0,
    codes_df: DataFrame | None = None,
    seed: int = 0,
    levels: Sequence[int] | None = None,
    codebook_version: str | None = None,
    allow_shortfall: bool = False,
    quality_cols: str | Mapping[str, float] | None = None,
    target: TargetCentroids | None = None,
    stats_name: str = "the statistics",
    budget_share: float | None = None,
    storage: io.Storage | None = None,
) -> SamplePlan:
    """Plan a two-stage sample (SPEC "Two-stage sampling"): driver, nothing written.

    ``stats_df`` is a STATS frame (Spark or pandas, e.g. the first result of
    :func:`hermes_spark.stats.bucket_stats`) or None to aggregate ``codes_df``;
    ``codes_df`` (rows of one codebook version; rows with a ``reason`` are ignored) is
    needed by ``quality-top:p`` for its exact per-child quantiles. ``quality_cols``
    (``"edu:0.6,dclm:0.4,edu>=0.3"``, columns of ``codes_df``) merges several quality
    signals by their percentile ranks within each child (:mod:`.signals`). ``levels`` defaults
    to the ``hermes.levels`` metadata of ``codes_df.c1``, else is inferred.
    ``target-top:p`` ranks by the ``target_similarity`` column of ``codes_df`` (add it with
    :func:`hermes_spark.sampling.similarity.with_target_similarity`); ``target``, the
    centroids it was scored against, is recorded in the plan. Give the budget as
    ``budget_tokens`` or as ``budget_share`` (a share of the chosen version's tokens:
    ``0.3`` plans 30% of them), not both.

    Example::

        stats_df, _ = bucket_stats(codes_df)
        plan = plan_mixture(stats_df, budget_tokens=1e9, weights="unimax",
                            stage2="quality-top:0.3", codes_df=codes_df, max_epochs=2)

    Raises:
        InvalidConfigError: bad budget, levels or rule; a rule that needs ``codes_df``.
        BudgetError: bad weights, or a budget above ``E ×`` the supply without
            ``allow_shortfall``.
        VersionMismatchError: codes mixing versions, or codes and STATS of different ones.
    """
    settings = SampleConfig(
        budget_tokens=budget_tokens,
        budget_share=budget_share,
        weights=weights if isinstance(weights, str) else "mapping",
        stage2=str(stage2),
        weights_level=int(weights_level),
        stage2_level=None if stage2_level is None else int(stage2_level),
        max_epochs=float(max_epochs),
        seed=int(seed),
    )
    check_budget_given(settings)
    rule = parse_rule(settings.stage2, storage=storage)
    if stats_df is None and codes_df is None:
        raise InvalidConfigError("planning needs stats_df (the statistics) or codes_df (the codes)")
    if rule.needs_codes and codes_df is None:
        raise InvalidConfigError(f"{rule.name} needs the codes (codes_df) for its quantiles")
    signals = None if quality_cols is None else parse_quality_cols(quality_cols)
    if signals is not None and not rule.needs_quality:
        raise InvalidConfigError(
            f"{{sample.quality_cols}} sets the quality of "
            f"{', '.join(rules_scoring(Score.QUALITY))}; {{sample.stage2}} is {rule.name}"
        )
    if rule.needs_target:
        assert codes_df is not None
        if SIM_COL not in codes_df.columns:
            raise InvalidInputError(
                f"target-top:p ranks documents by their {SIM_COL} column, which codes_df lacks: "
                "add it with hermes_spark.sampling.similarity.with_target_similarity "
                "(the CLI does this when a target corpus is given)"
            )
    if stats_df is None or rule.needs_codes:
        codes_df, codes_ver = _checked_codes(codes_df, codebook_version)
    else:
        codes_df, codes_ver = None, codebook_version
    if levels is None and codes_df is not None:
        levels = metadata_levels(codes_df)
    children, sizes, chosen, w, s = _bucket_children(
        stats_df=stats_df,
        codes_df=codes_df,
        version=codes_ver,
        weights_level=settings.weights_level,
        stage2_level=settings.stage2_level,
        levels=None if levels is None else tuple(int(k) for k in levels),
        name=stats_name,
    )
    with contextlib.ExitStack() as held:
        rated = None
        if rule.pools is Pools.EXPECTED_REPEATS:
            assert codes_df is not None
            children, rated = attach_quadmix_pools(
                children, codes_df, signals, w, s, hold=held.enter_context
            )
        else:
            children = _attach_pools(children, rule, codes_df, s, signals)
        budget = resolve_budget(settings, float(children["tokens"].sum()))
        stage1, shortfall, winfo = _stage1(
            children,
            weights=weights if isinstance(weights, Mapping) else settings.weights,
            w=w,
            sizes=sizes,
            budget=budget,
            max_epochs=settings.max_epochs,
            allow_shortfall=allow_shortfall,
            storage=storage,
        )
        if rated is not None:
            params = load_params(rule.argument or None, storage=storage)
            stage1, kids = quadmix_stage2(
                stage1,
                children,
                rated,
                params=params,
                w=w,
                sizes=sizes,
                max_epochs=settings.max_epochs,
            )
        else:
            kids = stage2_allocation(stage1, children, settings.stage2, settings.max_epochs)
    stage1, kids = _with_children(stage1, children, kids)
    resolved = {
        "budget_tokens": budget,
        "budget_share": settings.budget_share,
        "weights": dict(weights) if isinstance(weights, Mapping) else settings.weights,
        "stage2": settings.stage2,
        "weights_level": w,
        "stage2_level": s,
        "max_epochs": settings.max_epochs,
        "seed": settings.seed,
        "allow_shortfall": bool(allow_shortfall),
        "quality_cols": None if signals is None else signals.spec(),
    }
    if rule.needs_target and target is not None:
        resolved["target_top"] = target.to_dict()
    info = _plan_info(stage1, kids, winfo=winfo, shortfall=shortfall, rule=rule, s=s)
    if rule.needs_target:
        info["target_top"] = {
            "docs_without_similarity": int(kids["no_quality_docs"].sum()),
            "centroids": None if target is None else target.k,
            "target_docs": None if target is None else target.target_docs,
            "similarity_thresholds": _threshold_summary(kids),
        }
    log.info(
        "plan: %d level-%d buckets, %d level-%d children, %.6g of %.6g tokens allocated",
        len(stage1),
        w,
        len(kids),
        s,
        info["allocated_tokens"],
        budget,
    )
    assert chosen is not None
    return SamplePlan(chosen, sizes, resolved, stage1, kids, info)
