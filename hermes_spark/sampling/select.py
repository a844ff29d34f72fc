"""Stage-2 document selection on Spark: a plan becomes the MANIFEST table.

Every pass over the codes table runs on executors; the driver handles one row per child.

Rule (SPEC "Two-stage sampling"): inside a child with allocation ``a`` and pool tokens
``P`` every pool document gets ``full = floor(a/P)`` repeats; the remaining share
``r = a - full·P`` is filled walking the pool in ascending ``u = hash(doc_id, seed)``
(ties by ``doc_id``): document ``i`` is taken once more iff ``S_i - t_i/2 < r'`` where
``S_i`` is the inclusive running sum of pool tokens (the boundary document only if that
brings the child closer to its share). ``r'`` is ``r`` plus the rounding carry of the
earlier children (in child id order) of the same Stage-1 bucket, clipped to ``[0, P]``
and to the ``E``-epoch cap, so each Stage-1 bucket lands within half its largest pool
document of its allocation instead of accumulating one rounding error per child.

How it scales (no task ever sorts a large child):

1. ``u`` is cut into ``nb = ceil(pool_docs / BIN_DOCS)`` equal bins per child; one
   aggregation gives tokens per (child, bin): a histogram of ~``N / BIN_DOCS`` rows.
2. Windows over that histogram give cumulative tokens; the bins whose token range lies
   within ``±b`` of ``r`` form the child's boundary window, where ``b`` bounds the
   rounding carry that can reach the child (half its earlier siblings' largest documents
   at most; :mod:`hermes_spark.sampling.walk` proves it); bins before the window are
   taken whole, bins after it not at all. The driver receives one row per child.
3. Only documents in boundary windows are sorted, one pandas group per child; the
   carries of a Stage-1 bucket are chained over the few midpoints near each child's goal
   (:func:`hermes_spark.sampling.walk.walk_windows`).

The manifest depends on the seed and the data only: every step is a deterministic
function of (doc_id, seed, n_tokens, quality), never of partitioning or executors.
MANIFEST has one row per selected document: ``doc_id, stage1_bucket, stage2_bucket,
repeats, tokens`` where ``tokens`` is the document's ``n_tokens`` per copy (the document
contributes ``repeats × tokens`` to the sample).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from hermes_spark.errors import InvalidInputError, VersionMismatchError
from hermes_spark.hashing import uniform
from hermes_spark.sampling.plan import SamplePlan
from hermes_spark.sampling.quadmix import quadmix_manifest
from hermes_spark.sampling.rules.base import Pools
from hermes_spark.sampling.signals import parse_quality_cols, with_merged_quality
from hermes_spark.sampling.similarity import SIM_COL
from hermes_spark.sampling.walk import carry_bounds, walk_windows
from hermes_spark.schema import lineage_of, lineage_schema
from hermes_spark.stats import clean_codes, codes_version

log = logging.getLogger(__name__)

#: Expected documents per histogram bin of ``u`` (the unit that is sorted at the boundary).
BIN_DOCS = 512
MAX_BINS = 1 << 22
#: Manifest rows per output file (the manifest is hash-partitioned by doc_id).
ROWS_PER_FILE = 2_000_000
MANIFEST_COLUMNS = ("doc_id", "stage1_bucket", "stage2_bucket", "repeats", "tokens")
MANIFEST_SCHEMA = (
    "doc_id string, stage1_bucket bigint, stage2_bucket bigint, repeats int, tokens int"
)
#: The manifest also carries the file each document was read from and its row there
#: (``hermes_spark.schema.LINEAGE_COLUMNS``, when the codes have them), so export reads
#: only the sampled rows of the files that hold sampled documents.
_PARAMS_SCHEMA = (
    "child long, parent long, nb long, thr double, full long, r double, rmax double, "
    "pool_docs long, pool_tokens long"
)


def child_params(plan: SamplePlan) -> pd.DataFrame:
    """Per active child (allocation > 0): bins, quality threshold, passes and walk range."""
    kids = plan.children
    act = kids[(kids["alloc"] > 0) & (kids["pool_tokens"] > 0)]
    pool = act["pool_tokens"].to_numpy(dtype=np.float64)
    full = act["full_passes"].to_numpy(dtype=np.int64)
    r = act["remainder"].to_numpy(dtype=np.float64)
    epochs = float(plan.settings["max_epochs"])
    rmax = np.maximum(np.clip(np.minimum(pool, (epochs - full) * pool), 0.0, None), r)
    nb = np.clip(np.ceil(act["pool_docs"].to_numpy(dtype=np.float64) / BIN_DOCS), 1, MAX_BINS)
    return pd.DataFrame(
        {
            "child": act["child"].to_numpy(dtype=np.int64),
            "parent": act["parent"].to_numpy(dtype=np.int64),
            "nb": nb.astype(np.int64),
            "thr": act["threshold"].to_numpy(dtype=np.float64),
            "full": full,
            "r": r,
            "rmax": rmax,
            "pool_docs": act["pool_docs"].to_numpy(dtype=np.int64),
            "pool_tokens": act["pool_tokens"].to_numpy(dtype=np.int64),
        }
    )


def _pool(codes: DataFrame, params: DataFrame, plan: SamplePlan) -> DataFrame:
    """Pool documents of active children with ``u`` and their bin (lazy, executors)."""
    s = plan.stage2_level
    base = codes.select(
        "doc_id",
        F.col(f"bucket{s}").cast("long").alias("child"),
        F.coalesce(F.col("n_tokens"), F.lit(0)).cast("long").alias("t"),
        F.col("quality").cast("double").alias("q"),
        *lineage_of(codes.columns),
    )
    df = base.join(F.broadcast(params), "child")
    if plan.stage2_rule.pools is Pools.TOP_SHARE:
        q = F.col("q")
        df = df.where(
            q.isNotNull() & ~F.isnan(q) & (F.abs(q) != float("inf")) & (q >= F.col("thr"))
        )
    u = uniform("doc_id", plan.seed)
    return df.withColumn("u", u).withColumn(
        "bin", F.least(F.floor(F.col("u") * F.col("nb")), F.col("nb") - 1).cast("long")
    )


def boundary_windows(pool: DataFrame, params: pd.DataFrame) -> pd.DataFrame:
    """Histogram of ``u`` per child and each child's boundary window (one row per child).

    Two small jobs over the histogram (kept while they run): per-child sizes and largest
    document, from which the driver bounds each child's incoming carry ``b``
    (:func:`hermes_spark.sampling.walk.carry_bounds`); then the bins within ``r ± b``.
    Columns: ``child, pool_tokens_seen, pool_docs_seen, max_tokens, M, b, lo, hi, s0,
    window_docs`` (``s0``: tokens of the bins before the window, all taken once more;
    ``M``: the Stage-1 bucket's largest pool document).
    """
    hist = (
        pool.groupBy("child", "parent", "r", "bin")
        .agg(F.sum("t").alias("tok"), F.count(F.lit(1)).alias("docs"), F.max("t").alias("tmax"))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        sizes: pd.DataFrame = (
            hist.groupBy("child")
            .agg(
                F.sum("tok").alias("pool_tokens_seen"),
                F.sum("docs").alias("pool_docs_seen"),
                F.max("tmax").alias("max_tokens"),
            )
            .toPandas()
        )
        kids = params[["child", "parent", "r", "rmax", "pool_tokens"]].merge(sizes, on="child")
        kids["max_tokens"] = kids["max_tokens"].astype(np.float64)
        kids["b"] = carry_bounds(kids)
        kids["M"] = kids.groupby("parent")["max_tokens"].transform("max")
        bounds = hist.sparkSession.createDataFrame(
            kids[["child", "b"]].astype({"child": np.int64}), "child long, b double"
        )
        running = (
            Window.partitionBy("child")
            .orderBy("bin")
            .rowsBetween(Window.unboundedPreceding, Window.currentRow)
        )
        cum = (
            hist.join(F.broadcast(bounds), "child")
            .withColumn("cum_end", F.sum("tok").over(running))
            .withColumn("cum_start", F.col("cum_end") - F.col("tok"))
        )
        low, high = F.col("r") - F.col("b"), F.col("r") + F.col("b")
        inside = (F.col("cum_end") >= low) & (F.col("cum_start") <= high)
        windows: pd.DataFrame = (
            cum.groupBy("child")
            .agg(
                F.min(F.when(inside, F.col("bin"))).alias("lo"),
                F.max(F.when(inside, F.col("bin"))).alias("hi"),
                F.coalesce(F.sum(F.when(F.col("cum_end") < low, F.col("tok"))), F.lit(0)).alias(
                    "s0"
                ),
                F.sum(F.when(inside, F.col("docs"))).alias("window_docs"),
            )
            .toPandas()
        )
    finally:
        hist.unpersist()
    cols = ["child", "pool_tokens_seen", "pool_docs_seen", "max_tokens", "M", "b"]
    return sizes[["child"]].merge(kids[cols], on="child", how="left").merge(windows, on="child")


def select_manifest(codes: DataFrame, plan: SamplePlan) -> tuple[DataFrame, pd.DataFrame]:
    """The manifest of ``plan`` over ``codes`` (rows of the plan's codebook version).

    Runs the histogram job now (executors; one row per child comes back) and returns the
    lazy manifest DataFrame plus the per-child window summary.

    Raises:
        InvalidInputError: the codes no longer match the plan's pool sizes (stale plan).
    """
    if plan.stage2_rule.pools is Pools.EXPECTED_REPEATS:
        manifest, _ = quadmix_manifest(codes, plan)
        return manifest, pd.DataFrame()
    spark = codes.sparkSession
    params = child_params(plan)
    if plan.stage2_rule.needs_target:
        if SIM_COL not in codes.columns:
            raise InvalidInputError(
                f"target-top:p selects by the {SIM_COL} column, which the codes lack "
                "(hermes_spark.sampling.similarity.with_target_similarity adds it)"
            )
        codes = codes.withColumn("quality", F.col(SIM_COL))
    if plan.settings.get("quality_cols"):
        signals = parse_quality_cols(plan.settings["quality_cols"])
        codes = with_merged_quality(codes, signals, plan.stage2_level)
    source = lineage_of(codes.columns)
    schema = MANIFEST_SCHEMA + lineage_schema(codes.columns)
    if params.empty:
        return spark.createDataFrame([], schema), pd.DataFrame()
    params_df = spark.createDataFrame(params, _PARAMS_SCHEMA)
    summary = boundary_windows(_pool(codes, params_df, plan), params)
    merged = params.merge(summary, on="child", how="left")
    stale = (
        merged["pool_tokens_seen"].isna()
        | (merged["pool_tokens_seen"].fillna(-1).astype(np.int64) != merged["pool_tokens"])
        | (merged["pool_docs_seen"].fillna(-1).astype(np.int64) != merged["pool_docs"])
    )
    if stale.any():
        row = merged[stale].iloc[0]
        raise InvalidInputError(
            f"the codes table no longer matches the plan: {int(stale.sum())} Stage-2 "
            f"bucket(s) differ (e.g. bucket {plan.key(row['child'], plan.stage2_level)}: plan "
            f"{int(row['pool_docs'])} docs / {int(row['pool_tokens'])} tokens in its pool). "
            "Plan again (or sample without the plan)"
        )
    log.info(
        "histogram: %d active children, %d boundary documents to sort (of %d in pools)",
        len(merged),
        int(merged["window_docs"].sum()),
        int(merged["pool_docs"].sum()),
    )
    full_params = merged[
        [
            "child",
            "parent",
            "nb",
            "thr",
            "full",
            "r",
            "rmax",
            "pool_docs",
            "pool_tokens",
            "lo",
            "hi",
            "s0",
            "b",
        ]
    ].astype({"lo": np.int64, "hi": np.int64, "s0": np.int64})
    params_df = spark.createDataFrame(
        full_params, _PARAMS_SCHEMA + ", lo long, hi long, s0 long, b double"
    )
    pool = _pool(codes, params_df, plan)
    bin_ = F.col("bin")
    outside = (
        pool.where((bin_ < F.col("lo")) | (bin_ > F.col("hi")))
        .withColumn(
            "repeats", (F.col("full") + F.when(bin_ < F.col("lo"), 1).otherwise(0)).cast("int")
        )
        .where(F.col("repeats") >= 1)
        .select(
            "doc_id",
            F.col("parent").alias("stage1_bucket"),
            F.col("child").alias("stage2_bucket"),
            "repeats",
            F.col("t").cast("int").alias("tokens"),
            *source,
        )
    )
    inside = pool.where(bin_.between(F.col("lo"), F.col("hi"))).select(
        "parent", "child", "doc_id", "u", "t", "full", "r", "rmax", "s0", "b", *source
    )
    resolved = walk_windows(inside)
    return outside.unionByName(resolved), merged


def sample(codes_df: DataFrame, plan: SamplePlan, seed: int | None = None) -> DataFrame:
    """The MANIFEST of ``plan`` over ``codes_df`` as a lazy DataFrame; nothing written.

    Columns ``doc_id, stage1_bucket, stage2_bucket, repeats, tokens`` (``tokens`` = the
    document's ``n_tokens``, per copy) plus ``source_file`` when the codes carry it.
    ``seed`` (default: the plan's) seeds ``u = hash(doc_id, seed)``. A ``target-top`` plan
    needs ``codes_df`` with its ``target_similarity`` column (``with_target_similarity``;
    this function loads no artifact and embeds nothing). Runs small jobs now
    (the version check and the ``u`` histogram: one row per child comes back to the
    driver); the documents stay on executors. Rows of a ``transform`` output with a
    ``reason`` are left out.

    Example::

        manifest_df = sample(codes_df, plan, seed=5)
        manifest_df.groupBy("stage1_bucket").sum("repeats").show()

    Raises:
        VersionMismatchError: the codes mix versions or are not the plan's version.
        InvalidInputError: the codes no longer match the plan (stale plan).
    """
    codes = clean_codes(codes_df)
    found = codes_version(codes)
    if found != plan.codebook_version:
        raise VersionMismatchError(
            f"the codes are of codebook version {found}; the plan was made for "
            f"{plan.codebook_version}"
        )
    chosen = plan if seed is None else plan.with_seed(seed)
    manifest, _ = select_manifest(codes, chosen)
    return manifest


def realized_by_child(manifest: DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per Stage-2 bucket and per repeat count: docs, copies, tokens (executors; small)."""
    tok = F.col("repeats").cast("long") * F.col("tokens").cast("long")
    per_child = (
        manifest.groupBy("stage1_bucket", "stage2_bucket")
        .agg(
            F.count(F.lit(1)).alias("docs"),
            F.sum(F.col("repeats").cast("long")).alias("copies"),
            F.sum(tok).alias("tokens"),
            F.max("tokens").alias("max_tokens"),
        )
        .toPandas()
    )
    reps = (
        manifest.groupBy("repeats")
        .agg(F.count(F.lit(1)).alias("docs"), F.sum(tok).alias("tokens"))
        .orderBy("repeats")
        .toPandas()
    )
    return per_child, reps
