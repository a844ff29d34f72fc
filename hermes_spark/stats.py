"""``hermes stats``: bucket statistics for every level, as two Delta tables.

Driver orchestration of native Spark aggregations (group-bys on the packed bucket
columns); the results are small (at most K1·K2·K3 rows) and never hold documents.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from hermes_spark.delta_store import get_store
from hermes_spark.errors import InvalidInputError
from hermes_spark.schema import VERSION_COL, recorded_levels, select_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatsResult:
    """Where the two statistics tables went and the per-level summary rows."""

    stats_table: str
    levels_table: str
    codebook_version: str
    levels: list[dict]


def code_levels(codes: DataFrame) -> int:
    """Number of code levels present in a codes table (c1, c2, c3 columns)."""
    n = 0
    while f"c{n + 1}" in codes.columns:
        n += 1
    if n == 0:
        raise InvalidInputError("the codes table has no c1 column")
    return n


def bucket_stats(codes: DataFrame, n_levels: int, version: str) -> DataFrame:
    """One row per non-empty bucket per level (SPEC ``STATS`` columns)."""
    totals = codes.agg(F.count(F.lit(1)).alias("N"), F.sum("n_tokens").cast("double").alias("TOK"))
    per_level = []
    for level in range(1, n_levels + 1):
        code_cols = [
            F.col(f"c{k}") if k <= level else F.lit(None).cast("int").alias(f"c{k}")
            for k in range(1, n_levels + 1)
        ]
        agg = codes.groupBy(F.col(f"bucket{level}").alias("bucket")).agg(
            *[F.first(f"c{k}").alias(f"c{k}") for k in range(1, level + 1)],
            F.count(F.lit(1)).alias("docs"),
            F.sum("n_tokens").cast("long").alias("tokens"),
            F.avg("quality").alias("quality_mean"),
            F.percentile_approx("quality", [0.5, 0.7], 1000).alias("_q"),
            F.avg(f"qerr{level}").cast("double").alias("qerr_mean"),
        )
        agg = agg.select(
            F.lit(level).alias("level"),
            "bucket",
            *[
                F.col(f"c{k}") if k <= level else c
                for k, c in zip(range(1, n_levels + 1), code_cols, strict=True)
            ],
            "docs",
            "tokens",
            F.col("quality_mean"),
            F.col("_q")[0].alias("quality_p50"),
            F.col("_q")[1].alias("quality_p70"),
            "qerr_mean",
        )
        if level < n_levels:
            children = codes.groupBy(f"bucket{level}", f"bucket{level + 1}").agg(
                F.count(F.lit(1)).alias("n")
            )
            w = Window.partitionBy(f"bucket{level}")
            p = F.col("n") / F.sum("n").over(w)
            ent = (
                children.withColumn("_h", -p * F.log2(p))
                .groupBy(F.col(f"bucket{level}").alias("bucket"))
                .agg(
                    F.count(F.lit(1)).alias("children"),
                    F.sum("_h").alias("child_entropy_bits"),
                )
            )
            agg = agg.join(ent, "bucket", "left")
        else:
            agg = agg.withColumn("children", F.lit(None).cast("long")).withColumn(
                "child_entropy_bits", F.lit(None).cast("double")
            )
        per_level.append(agg)
    out = per_level[0]
    for df in per_level[1:]:
        out = out.unionByName(df)
    out = out.crossJoin(totals).select(
        F.lit(version).alias(VERSION_COL),
        F.col("level").cast("int"),
        F.col("bucket").cast("long"),
        *[F.col(f"c{k}").cast("int") for k in range(1, n_levels + 1)],
        F.col("docs").cast("long"),
        F.col("tokens").cast("long"),
        (F.col("docs") / F.col("N")).alias("share_docs"),
        (F.col("tokens") / F.col("TOK")).alias("share_tokens"),
        "quality_mean",
        F.col("quality_p50").cast("double"),
        F.col("quality_p70").cast("double"),
        "qerr_mean",
        F.col("children").cast("long"),
        F.col("child_entropy_bits").cast("double"),
    )
    return out


def level_stats(stats: DataFrame, sizes: list[int], version: str) -> DataFrame:
    """One row per level (SPEC ``STATS_levels``) from the bucket statistics."""
    spark = stats.sparkSession
    cells = spark.createDataFrame(
        [(k, math.prod(sizes[:k])) for k in range(1, len(sizes) + 1)],
        "level int, cells_total long",
    )
    p = F.col("share_docs")
    agg = stats.groupBy("level").agg(
        F.count(F.lit(1)).alias("cells_nonempty"),
        F.sum(F.when(p > 0, -p * F.log2(p)).otherwise(0.0)).alias("entropy_bits"),
        F.max("share_docs").alias("max_share"),
        F.percentile_approx("docs", 0.5, 10000).cast("double").alias("median_docs"),
        F.sum(F.col("share_docs") * F.col("share_docs")).alias("_sum_p2"),
    )
    return (
        agg.join(cells, "level")
        .select(
            F.lit(version).alias(VERSION_COL),
            "level",
            "cells_total",
            F.col("cells_nonempty").cast("long"),
            "entropy_bits",
            F.pow(F.lit(2.0), F.col("entropy_bits")).alias("perplexity"),
            "max_share",
            "median_docs",
            (F.col("cells_nonempty") * F.col("_sum_p2")).alias("imbalance"),
        )
        .orderBy("level")
    )


def compute_stats(
    spark: SparkSession,
    table: str,
    out: str,
    version: str | None = None,
    sizes: list[int] | None = None,
) -> StatsResult:
    """Write ``out`` (bucket stats) and ``out + '_levels'`` for one codebook version."""
    store = get_store(spark)
    codes, chosen = select_version(store, table, version)
    n_levels = code_levels(codes)
    if sizes is None:
        sizes = recorded_levels(store, table, chosen)
    if sizes is None or len(sizes) != n_levels:
        log.warning(
            "level sizes of %s are not in the commit log: inferred from the codes (the "
            "level-1 size is a lower bound); pass --codebook for exact cells_total",
            chosen,
        )
        sizes = infer_sizes(codes, n_levels)
    stats = bucket_stats(codes, n_levels, chosen).coalesce(1)
    store.overwrite(stats, out)
    stats = store.read(out)
    levels = level_stats(stats, sizes, chosen).coalesce(1)
    levels_table = f"{out}_levels"
    store.overwrite(levels, levels_table)
    rows = [r.asDict() for r in store.read(levels_table).orderBy("level").collect()]
    return StatsResult(out, levels_table, chosen, rows)


def infer_sizes(codes: DataFrame, n_levels: int) -> list[int]:
    """Level sizes from one row: ``K_k = (bucket_k - c_k) / bucket_{k-1}`` needs bucket>0.

    Uses rows whose previous bucket is non-zero; level 1 size is ``max(c1)+1`` as a lower
    bound when the codebook is not at hand (callers pass sizes from the artifact or the
    table metadata when they know them).
    """
    exprs = [F.max("c1").alias("k1")]
    for k in range(2, n_levels + 1):
        prev = F.col(f"bucket{k - 1}")
        exprs.append(
            F.max(F.when(prev > 0, (F.col(f"bucket{k}") - F.col(f"c{k}")) / prev)).alias(f"k{k}")
        )
    row = codes.agg(*exprs).first()
    sizes = [int(row["k1"]) + 1]
    sizes += [
        round(row[f"k{k}"]) if row[f"k{k}"] is not None else 1 for k in range(2, n_levels + 1)
    ]
    return sizes
