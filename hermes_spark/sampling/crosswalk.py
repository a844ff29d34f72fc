"""Crosswalk between two codebook versions of one codes table (DataFrames in and out).

From the documents coded under both versions: per level, how the from-version's buckets
split into the to-version's (documents, tokens, shares both ways), and a driver-small
summary (NMI / ARI per level from a handful of aggregated sums, best-match token share,
documents coded under only one version). Cost: one join of ids, token counts and bucket
columns — never text or vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import reduce
from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from hermes_spark.errors import InvalidInputError, VersionMismatchError
from hermes_spark.quantize.crosswalk_math import agreement_from_sums
from hermes_spark.schema import VERSION_COL

log = logging.getLogger(__name__)

__all__ = ["crosswalk", "crosswalk_summary", "shared_levels", "version_docs"]

CROSSWALK_COLUMNS = (
    "level",
    "from_bucket",
    "to_bucket",
    "docs",
    "tokens",
    "share_of_from",
    "share_of_to",
)


def _side(codes: DataFrame, version: str, levels: Sequence[int], tag: str) -> DataFrame:
    cols = [F.col(f"bucket{k}").alias(f"{tag}{k}") for k in levels]
    return codes.where(F.col(VERSION_COL) == version).select("doc_id", "n_tokens", *cols)


def shared_levels(codes: DataFrame, level: int | None = None) -> list[int]:
    """The levels both versions can be compared at (every ``bucketK`` column, or one)."""
    present = [k for k in range(1, 10) if f"bucket{k}" in codes.columns]
    if not present:
        raise InvalidInputError("the codes table has no bucket1 column: not a codes table")
    if level is None:
        return present
    if level not in present:
        raise InvalidInputError(f"level {level} is not in the codes table (levels {present})")
    return [level]


def crosswalk(
    codes: DataFrame, from_version: str, to_version: str, levels: Sequence[int]
) -> DataFrame:
    """``(level, from_bucket, to_bucket, docs, tokens, share_of_from, share_of_to)``.

    Lazy (executors): the two versions' rows are joined on ``doc_id`` and grouped per level
    and bucket pair; shares are token shares of the from-bucket and of the to-bucket.
    A version without a bucket column at a level (fewer levels) yields no rows there.
    """
    if from_version == to_version:
        raise InvalidInputError(
            f"{{from_version}} and {{to_version}} are the same version ({from_version})"
        )
    both = _side(codes, from_version, levels, "f").join(
        _side(codes, to_version, levels, "t").drop("n_tokens"), "doc_id"
    )
    per_level = [
        both.where(F.col(f"f{k}").isNotNull() & F.col(f"t{k}").isNotNull())
        .groupBy(F.col(f"f{k}").alias("from_bucket"), F.col(f"t{k}").alias("to_bucket"))
        .agg(F.count("*").alias("docs"), F.sum("n_tokens").cast("long").alias("tokens"))
        .select(F.lit(k).alias("level"), "from_bucket", "to_bucket", "docs", "tokens")
        for k in levels
    ]
    cells = reduce(DataFrame.unionByName, per_level)
    by_from = Window.partitionBy("level", "from_bucket")
    by_to = Window.partitionBy("level", "to_bucket")
    return cells.select(
        *CROSSWALK_COLUMNS[:5],
        (F.col("tokens") / F.sum("tokens").over(by_from)).alias("share_of_from"),
        (F.col("tokens") / F.sum("tokens").over(by_to)).alias("share_of_to"),
    )


def _sums(df: DataFrame, keys: Sequence[str], tag: str) -> DataFrame:
    """Per level: ``Σ x log x`` and ``Σ x(x-1)/2`` of document counts grouped by ``keys``."""
    grouped = df.groupBy("level", *keys).agg(F.sum("docs").alias("x"))
    x = F.col("x").cast("double")
    return grouped.groupBy("level").agg(
        F.sum(x * F.log(x)).alias(f"{tag}_xlogx"), F.sum(x * (x - 1) / 2).alias(f"{tag}_pairs")
    )


def _level_rows(table: DataFrame) -> list[dict[str, Any]]:
    best = (
        table.groupBy("level", "from_bucket")
        .agg(F.max("share_of_from").alias("best"), F.sum("tokens").alias("t"))
        .groupBy("level")
        .agg(
            (F.sum(F.col("best") * F.col("t")) / F.sum("t")).alias("best_match_share"),
            F.min("best").alias("best_match_share_min"),
            F.sum("t").alias("tokens"),
        )
    )
    docs = table.groupBy("level").agg(
        F.sum("docs").alias("docs"),
        F.countDistinct("from_bucket").alias("from_buckets"),
        F.countDistinct("to_bucket").alias("to_buckets"),
    )
    joined = (
        best.join(docs, "level")
        .join(_sums(table, ["from_bucket", "to_bucket"], "cells"), "level")
        .join(_sums(table, ["from_bucket"], "rows"), "level")
        .join(_sums(table, ["to_bucket"], "cols"), "level")
    )
    return [r.asDict() for r in joined.orderBy("level").collect()]


def version_docs(codes: DataFrame, from_version: str, to_version: str) -> dict[str, int]:
    """Documents of each of the two versions (one small aggregation);
    :class:`VersionMismatchError` naming a version the table does not hold."""
    counts = {
        r[VERSION_COL]: int(r["n"])
        for r in codes.where(F.col(VERSION_COL).isin(from_version, to_version))
        .groupBy(VERSION_COL)
        .agg(F.countDistinct("doc_id").alias("n"))
        .collect()
    }
    for param, v in (("from_version", from_version), ("to_version", to_version)):
        if v not in counts:
            raise VersionMismatchError(
                f"the codes table has no rows of codebook version {v}", param=param
            )
    return counts


def crosswalk_summary(
    codes: DataFrame, table: DataFrame, from_version: str, to_version: str
) -> dict[str, Any]:
    """Driver-small summary of :func:`crosswalk`'s ``table`` (a few small aggregations).

    Per level: documents compared, NMI and ARI between the two partitions (documents as
    the unit), token-weighted and minimum best-match share of the from-buckets; and how
    many documents were coded under only one of the two versions.
    """
    counts = version_docs(codes, from_version, to_version)
    levels = []
    for r in _level_rows(table):
        agreement = agreement_from_sums(
            float(r["docs"]),
            (r["cells_xlogx"], r["cells_pairs"]),
            (r["rows_xlogx"], r["rows_pairs"]),
            (r["cols_xlogx"], r["cols_pairs"]),
        )
        levels.append(
            {
                "level": int(r["level"]),
                "docs": int(r["docs"]),
                "tokens": int(r["tokens"]),
                "from_buckets": int(r["from_buckets"]),
                "to_buckets": int(r["to_buckets"]),
                **agreement,
                "best_match_share": float(r["best_match_share"]),
                "best_match_share_min": float(r["best_match_share_min"]),
            }
        )
    both = levels[0]["docs"] if levels else 0
    log.info("crosswalk %s → %s: %d documents under both", from_version, to_version, both)
    return {
        "from_version": from_version,
        "to_version": to_version,
        "docs_both": both,
        "docs_only_from": counts[from_version] - both,
        "docs_only_to": counts[to_version] - both,
        "levels": levels,
    }
