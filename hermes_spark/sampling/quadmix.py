"""Stage-2 rule ``quadmix[:PARAMS.json]`` on Spark: plan and selection.

Quality and diversity in one function (QuaDMix): a document's expected repeats are
``r = min(E, λ_b · σ(k_b · (q - t_b)))`` where ``q`` is its merged quality percentile
within its level-``s`` child (:mod:`.signals`; the ``quality`` column by default) and
``t_b``/``k_b`` are the threshold and steepness of its Stage-1 bucket ``b`` (parameter
file; :mod:`.quadmix_math`). Documents without a finite quality get 0.

Plan (driver, small jobs): the pool of a child is its rated documents; Stage 1 water-fills
the targets against ``E ×`` the pools; ``λ_b`` is solved by bisection on a per-bucket
histogram of ``q`` (:data:`Q_BINS` bins; one row per bin comes back) and each child's
expected allocation is one aggregation. Selection (executors): the realized repeats
``floor(r) + [u < frac(r)]`` (``u = hash(doc_id, seed)``) change at the document
thresholds ``λ_j = (j - 1 + u) / σ``; :func:`refine_scales` finds, per bucket, the scale
where the realized tokens cross the target from histograms of those thresholds (three
rounds of :data:`SCALE_BINS` log-spaced bins), so the bucket lands within about one
document of its target for the seed at hand. Deterministic: every step is a function of
``(doc_id, seed, n_tokens, quality)``, never of the partitioning.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from hermes_spark.hashing import uniform
from hermes_spark.sampling.pools import valid_quality
from hermes_spark.sampling.quadmix_math import QuadmixParams, solve_scale
from hermes_spark.sampling.signals import (
    QualitySignals,
    parse_quality_cols,
    persisted,
    with_merged_quality,
)
from hermes_spark.sampling.weights import format_bucket_key

log = logging.getLogger(__name__)

Q_BINS = 1024
SCALE_BINS = 1024
_SCALE_SPAN = 2.0**10  # first round: [λ / 2^10, λ · 2^10]
_ROUNDS = 3
HIST_BINS = 10


def _sigma(z: Column) -> Column:
    return F.lit(1.0) / (F.lit(1.0) + F.exp(-z))


def scored(codes: DataFrame, w: int, s: int) -> DataFrame:
    """``doc_id, parent, child, t, q`` of rated documents (``q``: the ``quality`` column,
    a percentile after :func:`.signals.with_merged_quality`), plus ``source_file``."""
    extra = [F.col("source_file")] if "source_file" in codes.columns else []
    return codes.where(valid_quality()).select(
        "doc_id",
        F.col(f"bucket{w}").cast("long").alias("parent"),
        F.col(f"bucket{s}").cast("long").alias("child"),
        F.coalesce(F.col("n_tokens"), F.lit(0)).cast("long").alias("t"),
        F.col("quality").cast("double").alias("q"),
        *extra,
    )


def quadmix_pools(rated: DataFrame) -> pd.DataFrame:
    """Per child: rated documents and tokens (the pool), and its largest document."""
    pdf: pd.DataFrame = (
        rated.groupBy("child")
        .agg(
            F.count(F.lit(1)).alias("pool_docs"),
            F.sum("t").alias("pool_tokens"),
            F.max("t").cast("double").alias("pool_max_tokens"),
        )
        .toPandas()
    )
    pdf["child"] = pdf["child"].astype(np.int64)
    return pdf


def bucket_params(
    stage1: pd.DataFrame, params: QuadmixParams, w: int, sizes: tuple[int, ...]
) -> pd.DataFrame:
    """``bucket, threshold, steepness`` per Stage-1 bucket from the parameter file."""
    pairs = [params.of(format_bucket_key(int(b), w, sizes)) for b in stage1["bucket"]]
    return pd.DataFrame(
        {
            "bucket": stage1["bucket"].to_numpy(dtype=np.int64),
            "threshold": [p[0] for p in pairs],
            "steepness": [p[1] for p in pairs],
        }
    )


def solve_scales(rated: DataFrame, stage1: pd.DataFrame, max_epochs: float) -> pd.Series:
    """``λ_b`` per Stage-1 bucket from a histogram of ``q`` (``inf``: all ``E`` times)."""
    qbin = F.least(F.floor(F.col("q") * Q_BINS), F.lit(Q_BINS - 1)).cast("int")
    hist: pd.DataFrame = (
        rated.groupBy("parent", qbin.alias("bin"))
        .agg(F.sum("t").alias("tok"), F.sum(F.col("q") * F.col("t")).alias("qt"))
        .toPandas()
    )
    scales = {}
    for row in stage1.itertuples():
        h = hist[hist["parent"] == row.bucket]
        tok = h["tok"].to_numpy(dtype=np.float64)
        q = np.where(tok > 0, h["qt"].to_numpy(dtype=np.float64) / np.maximum(tok, 1), 0.0)
        scales[int(row.bucket)] = solve_scale(
            q,
            tok,
            threshold=row.threshold,
            steepness=row.steepness,
            max_epochs=max_epochs,
            target=float(row.target),
        )
    return pd.Series(scales, name="scale")


def _params_df(spark: Any, stage1: pd.DataFrame, scale_col: str = "scale") -> DataFrame:
    frame = pd.DataFrame(
        {
            "parent": stage1["bucket"].to_numpy(dtype=np.int64),
            "thr": stage1["threshold"].to_numpy(dtype=np.float64),
            "k": stage1["steepness"].to_numpy(dtype=np.float64),
            "lam": stage1[scale_col].to_numpy(dtype=np.float64),
            "all_e": ~np.isfinite(stage1[scale_col].to_numpy(dtype=np.float64)),
        }
    )
    frame["lam"] = frame["lam"].where(~frame["all_e"], 0.0)
    params: DataFrame = spark.createDataFrame(
        frame, "parent long, thr double, k double, lam double, all_e boolean"
    )
    return params


def _expected(max_epochs: float) -> Column:
    sig = _sigma(F.col("k") * (F.col("q") - F.col("thr")))
    r = F.least(F.lit(float(max_epochs)), F.col("lam") * sig)
    return F.when(F.col("all_e"), F.lit(float(max_epochs))).otherwise(r)


def child_allocations(rated: DataFrame, stage1: pd.DataFrame, max_epochs: float) -> pd.DataFrame:
    """Expected tokens per child under the solved scales (one aggregation)."""
    params = _params_df(rated.sparkSession, stage1)
    pdf: pd.DataFrame = (
        rated.join(F.broadcast(params), "parent")
        .groupBy("child")
        .agg(F.sum(F.col("t") * _expected(max_epochs)).alias("alloc"))
        .toPandas()
    )
    pdf["child"] = pdf["child"].astype(np.int64)
    return pdf


def _thresholds(rated: DataFrame, params: DataFrame, seed: int, max_epochs: float) -> DataFrame:
    """``parent, t, lj``: ``log λ_j`` of every repeat step of every document."""
    sig = _sigma(F.col("k") * (F.col("q") - F.col("thr")))
    u = uniform("doc_id", seed)
    steps = F.ceil(F.lit(float(max_epochs)) - F.col("u")).cast("int")
    df = (
        rated.join(F.broadcast(params.where(~F.col("all_e") & (F.col("lam") > 0))), "parent")
        .withColumn("u", u)
        .withColumn("sig", sig)
        .where(F.col("sig") > 0)
        .withColumn("j", F.explode(F.sequence(F.lit(1), F.greatest(steps, F.lit(1)))))
        .where(F.col("j") - 1 + F.col("u") < float(max_epochs))
    )
    lj = F.log(F.col("j") - 1 + F.col("u")) - F.log(F.col("sig"))
    return df.select("parent", "t", F.coalesce(lj, F.lit(float("-inf"))).alias("lj"))


def refine_scales(
    rated: DataFrame,
    stage1: pd.DataFrame,
    *,
    seed: int,
    max_epochs: float,
) -> pd.Series:
    """Per Stage-1 bucket, the scale where the realized tokens for ``seed`` are closest to
    the target (executors: three histogram passes; one row per bin to the driver)."""
    spark = rated.sparkSession
    params = _params_df(spark, stage1)
    live = stage1[np.isfinite(stage1["scale"]) & (stage1["scale"] > 0)]
    if live.empty:
        return stage1.set_index("bucket")["scale"].astype(np.float64)
    steps = _thresholds(rated, params, seed, max_epochs)
    state = pd.DataFrame(
        {
            "parent": live["bucket"].to_numpy(dtype=np.int64),
            "lo": np.log(live["scale"].to_numpy(dtype=np.float64)) - math.log(_SCALE_SPAN),
            "hi": np.log(live["scale"].to_numpy(dtype=np.float64)) + math.log(_SCALE_SPAN),
            "target": live["target"].to_numpy(dtype=np.float64),
        }
    )
    below = np.zeros(len(state))
    inside = np.zeros(len(state))
    for _ in range(_ROUNDS):
        rng = spark.createDataFrame(
            state[["parent", "lo", "hi"]], "parent long, lo double, hi double"
        )
        width = (F.col("hi") - F.col("lo")) / SCALE_BINS
        b = F.when(F.col("lj") < F.col("lo"), F.lit(-1)).otherwise(
            F.floor((F.col("lj") - F.col("lo")) / width)
        )
        hist: pd.DataFrame = (
            steps.join(F.broadcast(rng), "parent")
            .where(F.col("lj") < F.col("hi"))
            .groupBy("parent", b.cast("int").alias("bin"))
            .agg(F.sum("t").alias("tok"))
            .toPandas()
        )
        for i, row in enumerate(state.itertuples()):
            h = hist[hist["parent"] == row.parent].set_index("bin")["tok"]
            under = float(h.get(-1, 0.0))
            counts = h.drop(index=-1, errors="ignore").reindex(range(SCALE_BINS), fill_value=0)
            cum = under + np.cumsum(counts.to_numpy(dtype=np.float64))
            k = int(np.searchsorted(cum, row.target, side="left"))
            k = min(k, SCALE_BINS - 1)
            w = (row.hi - row.lo) / SCALE_BINS
            below[i] = cum[k - 1] if k > 0 else under
            inside[i] = cum[k] - below[i]
            state.loc[i, ["lo", "hi"]] = [row.lo + k * w, row.lo + (k + 1) * w]
    take_hi = np.abs(below + inside - state["target"]) < np.abs(below - state["target"])
    chosen = np.exp(np.where(take_hi, state["hi"], state["lo"]))
    out = stage1.set_index("bucket")["scale"].astype(np.float64).copy()
    out.loc[state["parent"].to_numpy()] = chosen
    return out


def select_quadmix(
    rated: DataFrame, stage1: pd.DataFrame, *, seed: int, max_epochs: float, sourced: bool
) -> DataFrame:
    """The manifest rows: ``floor(r) + [u < frac(r)]`` copies of every rated document."""
    params = _params_df(rated.sparkSession, stage1)
    r = _expected(max_epochs)
    u = uniform("doc_id", seed)
    reps = (F.floor(r) + F.when(u < r - F.floor(r), 1).otherwise(0)).cast("int")
    return (
        rated.join(F.broadcast(params), "parent")
        .withColumn("repeats", reps)
        .where(F.col("repeats") >= 1)
        .select(
            "doc_id",
            F.col("parent").alias("stage1_bucket"),
            F.col("child").alias("stage2_bucket"),
            "repeats",
            F.col("t").cast("int").alias("tokens"),
            *(["source_file"] if sourced else []),
        )
    )


def quality_histograms(rated: DataFrame, manifest: DataFrame) -> list[dict[str, Any]]:
    """Per Stage-1 bucket, :data:`HIST_BINS` bins of ``q``: pool tokens vs selected tokens
    (copies counted), for the mixture report (two small aggregations)."""
    qbin = F.least(F.floor(F.col("q") * HIST_BINS), F.lit(HIST_BINS - 1)).cast("int")
    pool = rated.groupBy("parent", qbin.alias("bin")).agg(F.sum("t").alias("pool_tokens"))
    sel = (
        manifest.select("doc_id", "repeats", "tokens")
        .join(rated.select("doc_id", "parent", "q"), "doc_id")
        .groupBy("parent", qbin.alias("bin"))
        .agg(F.sum(F.col("repeats") * F.col("tokens")).alias("selected_tokens"))
    )
    pdf: pd.DataFrame = pool.join(sel, ["parent", "bin"], "left").fillna(0).toPandas()
    out = []
    for parent, g in pdf.groupby("parent"):
        g = g.set_index("bin").reindex(range(HIST_BINS), fill_value=0)
        out.append(
            {
                "bucket": int(parent),
                "bins": [i / HIST_BINS for i in range(HIST_BINS + 1)],
                "pool_tokens": [int(x) for x in g["pool_tokens"]],
                "selected_tokens": [int(x) for x in g["selected_tokens"]],
            }
        )
    return out


def rated_codes(codes: DataFrame, signals: QualitySignals | None, w: int, s: int) -> DataFrame:
    """The rated documents with their percentile ``q`` (lazy; see :func:`scored`)."""
    chosen = signals if signals is not None else parse_quality_cols("quality")
    return scored(with_merged_quality(codes, chosen, s, force_rank=True), w, s)


def attach_quadmix_pools(
    children: pd.DataFrame,
    codes: DataFrame,
    signals: QualitySignals | None,
    w: int,
    s: int,
    hold: Callable[[AbstractContextManager[DataFrame]], DataFrame] | None = None,
) -> tuple[pd.DataFrame, DataFrame]:
    """Children with their pools (the rated documents), and the lazy rated frame.

    ``hold`` (an ``ExitStack.enter_context``) keeps the rated frame persisted until the
    caller's stack closes, so the planner's several jobs over it rank once."""
    rated = rated_codes(codes, signals, w, s)
    if hold is not None:
        rated = hold(persisted(rated))
    out = children.merge(quadmix_pools(rated), on="child", how="left")
    for col in ("pool_docs", "pool_tokens"):
        out[col] = out[col].fillna(0).astype(np.int64)
    out["quality_docs"] = out["pool_docs"]
    out["no_quality_docs"] = out["docs"] - out["pool_docs"]
    out["threshold"] = np.nan
    out["max_tokens"] = out["max_tokens"].fillna(out["pool_max_tokens"])
    return out, rated


def quadmix_stage2(
    stage1: pd.DataFrame,
    children: pd.DataFrame,
    rated: DataFrame,
    *,
    params: QuadmixParams,
    w: int,
    sizes: tuple[int, ...],
    max_epochs: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stage-1 frame with ``threshold, steepness, scale`` and the per-child expected
    allocation (the layout of :func:`.allocate.stage2_allocation`)."""
    st = stage1.rename_axis("bucket").reset_index()
    st = st.merge(bucket_params(st, params, w, sizes), on="bucket")
    st["scale"] = st["bucket"].map(solve_scales(rated, st, max_epochs)).astype(np.float64)
    kids = children[["parent", "child", "tokens", "pool_tokens", "pool_docs", "docs"]].copy()
    kids = kids.sort_values(["parent", "child"], kind="stable").reset_index(drop=True)
    alloc = child_allocations(rated, st, max_epochs).set_index("child")["alloc"]
    kids["alloc"] = kids["child"].map(alloc).fillna(0.0).astype(np.float64)
    by_parent = kids.groupby("parent")["tokens"].transform("sum")
    kids["share"] = np.where(by_parent > 0, kids["tokens"] / by_parent.clip(lower=1), 0.0)
    kids["cap"] = float(max_epochs) * kids["pool_tokens"].astype(np.float64)
    pool = kids["pool_tokens"].to_numpy(dtype=np.float64)
    kids["expected_repeats"] = np.where(pool > 0, kids["alloc"] / np.maximum(pool, 1), 0.0)
    kids["full_passes"] = 0
    kids["remainder"] = 0.0
    target = st.set_index("bucket")["target"]
    kids["parent_target"] = kids["parent"].map(target).to_numpy(dtype=np.float64)
    kids["parent_unmet"] = 0.0
    return st.set_index("bucket"), kids


def plan_rated(codes: DataFrame, plan: Any) -> DataFrame:
    """:func:`rated_codes` with the plan's levels and quality signals."""
    signals = plan.settings.get("quality_cols")
    chosen = parse_quality_cols(signals) if signals else None
    return rated_codes(codes, chosen, plan.weights_level, plan.stage2_level)


def quadmix_manifest(codes: DataFrame, plan: Any) -> tuple[DataFrame, DataFrame]:
    """The manifest of a quadmix ``plan`` (scales refined for its seed) and the rated
    frame (for the report's quality histograms)."""
    rated = plan_rated(codes, plan)
    epochs = float(plan.settings["max_epochs"])
    st = plan.stage1.copy()
    st["scale"] = (
        refine_scales(rated, st, seed=plan.seed, max_epochs=epochs).reindex(st["bucket"]).to_numpy()
    )
    sourced = "source_file" in codes.columns
    manifest = select_quadmix(rated, st, seed=plan.seed, max_epochs=epochs, sourced=sourced)
    return manifest, rated
