"""Bucket sizes for planning: STATS rows (a Spark or pandas DataFrame) or one aggregation
over the codes' small columns, in the per-child layout the planner uses.

Driver orchestration; Spark aggregates on executors and the driver gets one row per bucket.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hermes_spark.errors import InvalidConfigError, InvalidInputError, VersionMismatchError
from hermes_spark.sampling.levels import pack_codes
from hermes_spark.schema import VERSION_COL


def children_from_codes(codes: DataFrame, s: int) -> pd.DataFrame:
    """One aggregation over the codes' small columns: one row per non-empty level-``s``
    bucket with ``bucket1..bucket_s``, ``c1..c_s``, ``docs``, ``tokens``, ``max_tokens``
    (executors; the driver receives one row per bucket)."""
    keys = [f"bucket{k}" for k in range(1, s + 1)]
    agg = codes.groupBy(*keys).agg(
        *[F.min(f"c{k}").cast("long").alias(f"c{k}") for k in range(1, s + 1)],
        F.count(F.lit(1)).alias("docs"),
        F.sum(F.coalesce(F.col("n_tokens"), F.lit(0)).cast("long")).alias("tokens"),
        F.max("n_tokens").cast("long").alias("max_tokens"),
    )
    pdf: pd.DataFrame = agg.toPandas()
    if pdf.empty:
        raise InvalidInputError("the codes table holds no rows of this codebook version")
    for col in [*keys, *[f"c{k}" for k in range(1, s + 1)], "docs", "tokens"]:
        pdf[col] = pdf[col].astype(np.int64)
    pdf["max_tokens"] = pdf["max_tokens"].astype(np.float64)
    return pdf


StatsFrame: TypeAlias = DataFrame | pd.DataFrame


def stats_code_levels(stats: StatsFrame) -> int:
    """Number of code columns ``c1..cL`` of a STATS frame (no job)."""
    return sum(1 for c in stats.columns if c in {f"c{k}" for k in range(1, 10)})


def _stats_versions(stats: StatsFrame) -> list[str]:
    if isinstance(stats, pd.DataFrame):
        return sorted(str(v) for v in stats[VERSION_COL].dropna().unique())
    return sorted(r[0] for r in stats.select(VERSION_COL).distinct().collect())


def stats_rows(
    stats: StatsFrame, version: str | None, max_level: int, *, name: str = "the statistics"
) -> tuple[dict[int, pd.DataFrame], str]:
    """STATS rows of levels ``1..max_level`` of one codebook version, per level (driver).

    ``stats`` is a Spark DataFrame (one small job: the rows of the version come to the
    driver, one per bucket) or a pandas frame with the STATS columns.

    Raises:
        InvalidInputError: not a STATS frame, or several versions and none chosen.
        VersionMismatchError: the chosen version is not in ``stats``.
        InvalidConfigError: fewer code levels than ``max_level``.
    """
    need = {VERSION_COL, "level", "bucket", "docs", "tokens", "c1"}
    if need - set(stats.columns):
        raise InvalidInputError(
            f"{name} is not a STATS table: it lacks {sorted(need - set(stats.columns))}"
        )
    versions = _stats_versions(stats)
    if version is None:
        if len(versions) != 1:
            raise InvalidInputError(
                f"{name} holds codebook versions {versions}; pick one by its version"
            )
        version = versions[0]
    elif version not in versions:
        raise VersionMismatchError(
            f"statistics table {name} has no rows of codebook version {version} "
            f"(it holds {versions}); re-run hermes stats for that version"
        )
    n_levels = stats_code_levels(stats)
    if max_level > n_levels:
        raise InvalidConfigError(f"{name} has {n_levels} code levels, level {max_level} asked")
    cols = ["level", "bucket", *[f"c{k}" for k in range(1, max_level + 1)], "docs", "tokens"]
    if isinstance(stats, pd.DataFrame):
        keep = (stats[VERSION_COL] == version) & (stats["level"] <= max_level)
        pdf = stats.loc[keep, cols].copy()
    else:
        pdf = (
            stats.where((F.col(VERSION_COL) == version) & (F.col("level") <= max_level))
            .select(*cols)
            .toPandas()
        )
    out = {}
    for k in range(1, max_level + 1):
        rows = pdf[pdf["level"] == k].drop(columns="level").reset_index(drop=True)
        for col in ["bucket", *[f"c{j}" for j in range(1, k + 1)], "docs", "tokens"]:
            rows[col] = rows[col].astype(np.int64)
        out[k] = rows[["bucket", *[f"c{j}" for j in range(1, k + 1)], "docs", "tokens"]]
    return out, version


def children_from_stats(
    by_level: dict[int, pd.DataFrame], s: int, sizes: tuple[int, ...]
) -> pd.DataFrame:
    """The level-``s`` STATS rows in the layout of :func:`children_from_codes`."""
    rows = by_level[s].copy()
    for k in range(1, s + 1):
        rows[f"bucket{k}"] = pack_codes(rows, k, sizes)
    rows["max_tokens"] = np.nan
    return rows.drop(columns="bucket")


def levels_of_children(children: pd.DataFrame, s: int) -> dict[int, pd.DataFrame]:
    out = {}
    for k in range(1, s + 1):
        cols = [f"bucket{k}", *[f"c{j}" for j in range(1, k + 1)]]
        out[k] = children[cols].drop_duplicates().rename(columns={f"bucket{k}": "bucket"})
    return out
