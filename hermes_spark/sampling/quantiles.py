"""Exact per-group quantiles on Spark without sorting a large group in one task.

Executors do the histogram passes; the driver holds one row per group.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from hermes_spark.errors import InvariantError

#: Histogram bins per round of the exact quantile search, and the most documents of one
#: child's boundary bin that are sorted by one task (else the bin is refined again).
KTH_BINS = 1024
KTH_SORT_LIMIT = 250_000
_KTH_ROUNDS = 12


def quality_rank(p: float, n: int) -> int:
    """1-based rank of the ``(1-p)`` quantile among ``n`` values (inverted CDF):
    ``max(1, ceil((1-p)·n))``, computed in exact decimal arithmetic."""
    exact = (Decimal(1) - Decimal(repr(float(p)))) * n
    return max(1, int(exact.to_integral_value(rounding="ROUND_CEILING")))


def exact_kth_smallest(values: DataFrame, wanted: pd.DataFrame) -> dict[int, float]:
    """The exact ``k``-th smallest ``v`` of every group ``g`` (executors; small results).

    Args:
        values: columns ``g`` (bigint) and ``v`` (finite double).
        wanted: columns ``g, k, lo, hi``: the 1-based rank and the group's min and max.

    Each round histograms the values inside every group's current interval into
    :data:`KTH_BINS` equal-width bins, finds the bin holding rank ``k`` from cumulative
    counts (a window over the small histogram), and narrows the interval to that bin's
    ``[min, max]``; a bin of at most :data:`KTH_SORT_LIMIT` documents is then sorted
    (only that bin, per group) to read the value. Deterministic: counts, mins and maxes
    do not depend on partitioning, and ties share their value.
    """
    spark = values.sparkSession
    out: dict[int, float] = {}
    todo = wanted[["g", "k", "lo", "hi"]].astype({"g": np.int64, "k": np.int64}).copy()
    to_sort: list[pd.DataFrame] = []
    for _ in range(_KTH_ROUNDS):
        same = todo["lo"] == todo["hi"]
        out.update(zip(todo.loc[same, "g"].tolist(), todo.loc[same, "lo"].tolist(), strict=True))
        todo = todo[~same]
        if todo.empty:
            break
        params = spark.createDataFrame(todo, "g long, k long, lo double, hi double")
        width = F.col("hi") - F.col("lo")
        binned = (
            values.join(F.broadcast(params), "g")
            .where(F.col("v").between(F.col("lo"), F.col("hi")))
            .withColumn(
                "bin",
                F.least(
                    F.floor((F.col("v") - F.col("lo")) / width * KTH_BINS), F.lit(KTH_BINS - 1)
                ).cast("int"),
            )
        )
        hist = binned.groupBy("g", "bin").agg(
            F.count(F.lit(1)).alias("n"), F.min("v").alias("bmin"), F.max("v").alias("bmax")
        )
        running = (
            Window.partitionBy("g")
            .orderBy("bin")
            .rowsBetween(Window.unboundedPreceding, Window.currentRow)
        )
        hist = hist.withColumn("cum", F.sum("n").over(running)).join(
            F.broadcast(params.select("g", "k")), "g"
        )
        found = (
            hist.where((F.col("cum") >= F.col("k")) & (F.col("cum") - F.col("n") < F.col("k")))
            .select("g", "n", (F.col("cum") - F.col("n")).alias("below"), "bmin", "bmax")
            .toPandas()
        )
        merged = todo.merge(found, on="g", how="left")
        if merged["n"].isna().any():
            raise InvariantError("quantile search lost a group; the codes table changed meanwhile?")
        merged["k"] = (merged["k"] - merged["below"]).astype(np.int64)
        merged["lo"], merged["hi"] = merged["bmin"], merged["bmax"]
        small = (merged["n"] <= KTH_SORT_LIMIT) & (merged["lo"] != merged["hi"])
        to_sort.append(merged.loc[small, ["g", "k", "lo", "hi"]])
        todo = merged.loc[~small, ["g", "k", "lo", "hi"]]
    if not todo.empty:
        to_sort.append(todo)
    pending = pd.concat(to_sort, ignore_index=True) if to_sort else pd.DataFrame()
    if not pending.empty:
        params = spark.createDataFrame(pending, "g long, k long, lo double, hi double")
        order = Window.partitionBy("g").orderBy("v")
        picked: pd.DataFrame = (
            values.join(F.broadcast(params), "g")
            .where(F.col("v").between(F.col("lo"), F.col("hi")))
            .withColumn("rn", F.row_number().over(order))
            .where(F.col("rn") == F.col("k"))
            .select("g", "v")
            .toPandas()
        )
        out.update(zip(picked["g"].tolist(), picked["v"].tolist(), strict=True))
    missing = set(wanted["g"].tolist()) - set(out)
    if missing:
        raise InvariantError(f"quantile search found no value for {len(missing)} group(s)")
    return out
