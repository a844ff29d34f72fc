"""Quality pools of ``quality-top:p``: per level-``s`` child, the exact ``(1-p)`` quality
quantile and the documents at or above it (executors; one row per child to the driver)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hermes_spark.sampling.quantiles import exact_kth_smallest, quality_rank


def valid_quality() -> Any:
    """Column predicate: ``quality`` is a finite number."""
    q = F.col("quality")
    return q.isNotNull() & ~F.isnan(q) & (F.abs(q) != float("inf"))


def quality_pools(codes: DataFrame, s: int, p: float) -> pd.DataFrame:
    """Per level-``s`` child: the exact ``(1-p)`` quality quantile and the pool above it.

    Returns one row per child with ``child, quality_docs, no_quality_docs, threshold,
    pool_docs, pool_tokens, pool_max_tokens``. The pool is the documents whose quality is
    ``>= threshold``, the ``ceil((1-p)·n)``-th smallest of the child's ``n`` finite
    qualities (inverted-CDF quantile); documents without a finite quality are never in a
    pool and are counted in ``no_quality_docs``. Executors do the passes; the driver gets
    one row per child.
    """
    child = F.col(f"bucket{s}").alias("g")
    ok = valid_quality()
    summary: pd.DataFrame = (
        codes.groupBy(child)
        .agg(
            F.count(F.when(ok, True)).alias("quality_docs"),
            F.count(F.when(~ok | F.col("quality").isNull(), True)).alias("no_quality_docs"),
            F.min(F.when(ok, F.col("quality"))).alias("lo"),
            F.max(F.when(ok, F.col("quality"))).alias("hi"),
        )
        .toPandas()
    )
    summary["g"] = summary["g"].astype(np.int64)
    rated = summary[summary["quality_docs"] > 0].copy()
    rated["k"] = [quality_rank(p, int(n)) for n in rated["quality_docs"]]
    values = codes.where(ok).select(child, F.col("quality").cast("double").alias("v"))
    thresholds = exact_kth_smallest(values, rated) if not rated.empty else {}
    summary["threshold"] = summary["g"].map(thresholds).astype(np.float64)
    pools: pd.DataFrame = pd.DataFrame({"g": pd.Series([], dtype=np.int64)})

    if thresholds:
        spark = codes.sparkSession
        thr = spark.createDataFrame(
            pd.DataFrame({"g": list(thresholds), "threshold": list(thresholds.values())}),
            "g long, threshold double",
        )
        pools = (
            codes.select(child, "quality", "n_tokens")
            .join(F.broadcast(thr), "g")
            .where(ok & (F.col("quality") >= F.col("threshold")))
            .groupBy("g")
            .agg(
                F.count(F.lit(1)).alias("pool_docs"),
                F.sum(F.coalesce(F.col("n_tokens"), F.lit(0)).cast("long")).alias("pool_tokens"),
                F.max("n_tokens").cast("double").alias("pool_max_tokens"),
            )
            .toPandas()
        )
        pools["g"] = pools["g"].astype(np.int64)
    out = summary.merge(pools, on="g", how="left").rename(columns={"g": "child"})
    for col in ("pool_docs", "pool_tokens", "quality_docs", "no_quality_docs"):
        out[col] = out[col].fillna(0).astype(np.int64)
    out["pool_max_tokens"] = out["pool_max_tokens"].astype(np.float64)
    return out[
        [
            "child",
            "quality_docs",
            "no_quality_docs",
            "threshold",
            "pool_docs",
            "pool_tokens",
            "pool_max_tokens",
        ]
    ]
