"""Bucket statistics for every level (SPEC "Statistics tables").

:func:`bucket_stats` is the API: a codes DataFrame in, the lazy ``STATS`` and
``STATS_levels`` DataFrames out, nothing written; it reads no table and imports nothing
above it. :func:`hermes_spark.tasks.stats.compute_stats` is the table side of ``hermes
stats`` that writes them as two Delta tables.

One aggregation (grouping sets ``(bucket1..bucketL), ..., (bucket1), ()``) scans the
codes once on executors; every coarser level and the per-bucket children/entropy are
rolled up from its small result (at most K1 + K1·K2 + K1·K2·K3 rows), never by another
scan of the documents. ``quality_p50``/``quality_p70`` are **approximate**: Spark's
``percentile_approx`` with accuracy :data:`QUALITY_ACCURACY` returns a value of the
bucket whose rank is within ``n / QUALITY_ACCURACY`` of the exact rank (0.1% of the
bucket's ``n``). The exact per-child quantiles that ``quality-top:p`` needs are computed
by the sampler (:mod:`hermes_spark.sampling.quantiles`), not read from STATS.
``median_docs`` of ``STATS_levels`` is exact.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from hermes_spark.errors import InvalidInputError, VersionMismatchError
from hermes_spark.schema import LEVELS_FIELD_META as LEVELS_META
from hermes_spark.schema import REASON_COL, VERSION_COL

log = logging.getLogger(__name__)

#: ``percentile_approx`` accuracy of ``quality_p50``/``quality_p70`` (rank error ≤ n/1000).
QUALITY_ACCURACY = 1000


# ------------------------------------------------------------------ codes frames


def code_levels(codes: DataFrame) -> int:
    """Number of code levels present in a codes frame (``c1``, ``c2``, ... columns)."""
    n = 0
    while f"c{n + 1}" in codes.columns:
        n += 1
    if n == 0:
        raise InvalidInputError("the codes table has no c1 column")
    return n


def clean_codes(codes: DataFrame) -> DataFrame:
    """The annotated rows: rows of a ``transform`` output with a non-null ``reason``
    (no codes) are left out; a codes table (no ``reason`` column) is returned as is."""
    if REASON_COL in codes.columns:
        return codes.where(F.col(REASON_COL).isNull())
    return codes


def codes_version(codes: DataFrame) -> str:
    """The one codebook version of ``codes`` (one small job over that column only).

    Raises:
        InvalidInputError: no ``codebook_version`` column, or no rows.
        VersionMismatchError: the frame mixes codebook versions.
    """
    if VERSION_COL not in codes.columns:
        raise InvalidInputError(f"the codes have no {VERSION_COL} column")
    row = codes.agg(F.min(VERSION_COL).alias("lo"), F.max(VERSION_COL).alias("hi")).first()
    if row is None or row["lo"] is None:
        raise InvalidInputError("the codes hold no annotated rows")
    if row["lo"] != row["hi"]:
        raise VersionMismatchError(
            f"the codes mix codebook versions ({row['lo']!r} ... {row['hi']!r}); statistics "
            f"and samples use one: filter with codes_df.where(codebook_version == ...)"
        )
    return str(row["lo"])


def metadata_levels(codes: DataFrame) -> tuple[int, ...] | None:
    """Level sizes from the ``hermes.levels`` Spark column metadata of ``c1`` (attached
    by ``HermesModel.transform``), or None (no job)."""
    if "c1" not in codes.columns:
        return None
    value = codes.schema["c1"].metadata.get(LEVELS_META)
    if not value:
        return None
    if isinstance(value, str):
        value = value.split(",")
    return tuple(int(k) for k in value)


# ---------------------------------------------------------------- the aggregation


def _by_level(level: Column, values: Sequence[Column]) -> Column:
    """``values[level - 1]`` as one Column."""
    out = F.when(level == 1, values[0])
    for k, value in enumerate(values[1:], start=2):
        out = out.when(level == k, value)
    return out


def _rollup(codes: DataFrame, n: int) -> DataFrame:
    """One scan: every level's buckets (grouping sets of the bucket prefixes) and the
    grand total (``level`` 0) with the inferred level sizes ``_k1..``."""
    keys = [f"bucket{k}" for k in range(1, n + 1)]
    ratios = [F.max("c1") + 1]
    for k in range(2, n + 1):
        prev = F.col(f"bucket{k - 1}")
        ratios.append(F.max(F.when(prev > 0, (F.col(f"bucket{k}") - F.col(f"c{k}")) / prev)))
    agg = codes.rollup(*keys).agg(
        sum((1 - F.grouping(c) for c in keys), F.lit(0)).alias("level"),
        *[F.min(f"c{k}").alias(f"_c{k}") for k in range(1, n + 1)],
        F.count(F.lit(1)).alias("docs"),
        F.sum("n_tokens").cast("long").alias("tokens"),
        F.avg("quality").alias("quality_mean"),
        F.percentile_approx("quality", [0.5, 0.7], QUALITY_ACCURACY).alias("_q"),
        *[F.avg(f"qerr{k}").cast("double").alias(f"_qerr{k}") for k in range(1, n + 1)],
        *[r.alias(f"_k{k}") for k, r in enumerate(ratios, start=1)],
    )
    return agg


def _stats_rows(agg: DataFrame, n: int, version: str) -> DataFrame:
    """STATS rows (SPEC columns) from the rollup, in one pass over it (no self-join).

    Each rollup row is emitted twice: as itself (keyed by its ``level, bucket``) and as a
    child of its parent (keyed by ``level - 1, parent``); one window over that key sums
    the children into the parent's row, one window over the whole (small) rollup brings
    the grand total. A self-join would let Spark push each branch's level filter below
    the rollup and scan the codes once per branch."""
    level = F.col("level")
    rows = agg.select(
        "level",
        _by_level(level, [F.col(f"bucket{k}") for k in range(1, n + 1)]).alias("bucket"),
        _by_level(level, [F.lit(None)] + [F.col(f"bucket{k}") for k in range(1, n)]).alias(
            "_parent"
        ),
        *[F.when(level >= k, F.col(f"_c{k}")).alias(f"c{k}") for k in range(1, n + 1)],
        "docs",
        "tokens",
        "quality_mean",
        "_q",
        _by_level(level, [F.col(f"_qerr{k}") for k in range(1, n + 1)]).alias("qerr_mean"),
    ).withColumn("_as_child", F.explode(F.array(F.lit(False), F.lit(True))))
    as_child = F.col("_as_child")
    family = Window.partitionBy(
        F.when(as_child, level - 1).otherwise(level),
        F.when(as_child, F.col("_parent")).otherwise(F.col("bucket")),
    )
    child = as_child & (level >= 2)
    docs = F.col("docs")
    everything = Window.partitionBy()
    total = level == 0
    return (
        rows.select(
            "*",
            F.sum(F.when(child, 1)).over(family).alias("children"),
            F.sum(F.when(child, docs)).over(family).alias("_d"),
            F.sum(F.when(child, docs * F.log2(docs))).over(family).alias("_dlog"),
            F.max(F.when(total, docs)).over(everything).alias("_N"),
            F.max(F.when(total, F.col("tokens"))).over(everything).alias("_TOK"),
        )
        .where(~as_child & (level >= 1))
        .select(
            F.lit(version).alias(VERSION_COL),
            F.col("level").cast("int"),
            F.col("bucket").cast("long"),
            *[F.col(f"c{k}").cast("int") for k in range(1, n + 1)],
            F.col("docs").cast("long"),
            F.col("tokens").cast("long"),
            (docs / F.col("_N")).alias("share_docs"),
            (F.col("tokens") / F.col("_TOK").cast("double")).alias("share_tokens"),
            "quality_mean",
            F.col("_q")[0].cast("double").alias("quality_p50"),
            F.col("_q")[1].cast("double").alias("quality_p70"),
            "qerr_mean",
            F.col("children").cast("long"),
            (F.log2("_d") - F.col("_dlog") / F.col("_d"))
            .cast("double")
            .alias("child_entropy_bits"),
        )
    )


def cells_total(agg: DataFrame, n: int, sizes: Sequence[int] | None) -> DataFrame:
    """``level, cells_total``: from the given sizes, else from the sizes inferred in the
    rollup's total row (``K1 = max(c1) + 1`` is then a lower bound)."""
    if sizes is not None:
        spark = agg.sparkSession
        rows = [(k, math.prod(sizes[:k])) for k in range(1, n + 1)]
        return spark.createDataFrame(rows, "level int, cells_total long")
    k = [F.round(F.coalesce(F.col(f"_k{j}"), F.lit(1))).cast("long") for j in range(1, n + 1)]
    prods = [reduce(lambda a, b: a * b, k[:j]) for j in range(1, n + 1)]
    total = agg.where(F.col("level") == 0)
    parts = [
        total.select(F.lit(j).cast("int").alias("level"), p.alias("cells_total"))
        for j, p in enumerate(prods, start=1)
    ]
    return reduce(DataFrame.unionByName, parts)


def level_stats(stats: DataFrame, cells: DataFrame, version: str) -> DataFrame:
    """One row per level (SPEC ``STATS_levels``) from the bucket statistics (lazy)."""
    p = F.col("share_docs")
    agg = stats.groupBy("level").agg(
        F.count(F.lit(1)).alias("cells_nonempty"),
        F.sum(F.when(p > 0, -p * F.log2(p)).otherwise(0.0)).alias("entropy_bits"),
        F.max("share_docs").alias("max_share"),
        F.median("docs").cast("double").alias("median_docs"),
        F.sum(p * p).alias("_sum_p2"),
    )
    return agg.join(cells, "level").select(
        F.lit(version).alias(VERSION_COL),
        F.col("level").cast("int"),
        F.col("cells_total").cast("long"),
        F.col("cells_nonempty").cast("long"),
        "entropy_bits",
        F.pow(F.lit(2.0), F.col("entropy_bits")).alias("perplexity"),
        "max_share",
        "median_docs",
        (F.col("cells_nonempty") * F.col("_sum_p2")).alias("imbalance"),
    )


def bucket_stats(
    codes_df: DataFrame, levels: Sequence[int] | None = None
) -> tuple[DataFrame, DataFrame]:
    """Lazy ``STATS`` and ``STATS_levels`` DataFrames of one codebook version's codes.

    Level sizes (for ``cells_total``) come from ``levels``, else from the
    ``hermes.levels`` metadata of ``codes_df.c1``, else are inferred from the codes (then
    ``K1 = max(c1) + 1`` is a lower bound). Rows of a ``transform`` output with a
    ``reason`` are left out. Runs one small job now (the version check over the
    ``codebook_version`` column); the statistics themselves are lazy. ``STATS_levels`` is
    derived from ``STATS``: write (or cache) the first before reading the second to scan
    the codes once.

    Example::

        stats_df, levels_df = bucket_stats(model.transform(corpus_df))
        stats_df.where("level = 1").orderBy("bucket").show()

    Raises:
        VersionMismatchError: ``codes_df`` mixes codebook versions.
        InvalidInputError: no rows, no code columns, or sizes of the wrong length.
    """
    codes = clean_codes(codes_df)
    version = codes_version(codes)
    n = code_levels(codes)
    sizes = tuple(int(k) for k in levels) if levels is not None else metadata_levels(codes)
    if sizes is not None and len(sizes) != n:
        raise InvalidInputError(f"{len(sizes)} level sizes given for codes of {n} levels")
    if sizes is None:
        log.warning(
            "level sizes of %s are not known: inferred from the codes (the level-1 size is a "
            "lower bound); pass levels (or --codebook) for exact cells_total",
            version,
        )
    agg = _rollup(codes, n)
    stats = _stats_rows(agg, n, version)
    return stats, level_stats(stats, cells_total(agg, n, sizes), version)
