"""Target-oriented Stage-1 weights (``--weights target:PATH``).

A few hundred target texts (the documents a user wants the model to be good at) are coded
with the corpus's codebook artifact; the Stage-1 weights follow their cell distribution at
the Stage-1 level, smoothed, with a share of the corpus prior mixed in:

``W_b = (1 - β) · (n_b + α) / (N + α·B) + β · tokens_b / Σ tokens``

over the ``B`` non-empty corpus buckets (``n_b`` target documents in bucket ``b`` of the
``N`` coded ones; target documents in cells the corpus does not have are dropped and
counted). ``α`` is ``smoothing``, ``β`` is ``prior_mix``.

:func:`target_weights` is the API (target codes in, e.g. ``model.transform(target_df)``).
Reading a target corpus named by a path and coding it with an artifact is the table
side's work (:mod:`hermes_spark.tasks.target`); this module takes frames only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hermes_spark.errors import InvalidConfigError, InvalidInputError
from hermes_spark.sampling.weights import format_bucket_key

log = logging.getLogger(__name__)

PREFIX = "target:"


def is_target_spec(weights: Any) -> bool:
    """Whether ``--weights`` names a target corpus (``target:PATH``)."""
    return isinstance(weights, str) and weights.strip().lower().startswith(PREFIX)


def blend(
    counts: pd.Series, prior_tokens: pd.Series, *, smoothing: float, prior_mix: float
) -> pd.Series:
    """``(1-β)·(n_b + α)/(N + α·B) + β·prior_b`` over ``prior_tokens.index`` (pure pandas).

    Raises:
        InvalidConfigError: ``α < 0`` or ``β`` outside ``[0, 1]``.
        InvalidInputError: no target document in any corpus bucket and ``α = 0``.
    """
    a, b = float(smoothing), float(prior_mix)
    if not (math.isfinite(a) and a >= 0):
        raise InvalidConfigError(f"target smoothing must be >= 0, got {smoothing!r}")
    if not 0 <= b <= 1:
        raise InvalidConfigError(f"target prior mix must be in [0, 1], got {prior_mix!r}")
    n = counts.reindex(prior_tokens.index, fill_value=0).astype(np.float64)
    denom = float(n.sum()) + a * len(n)
    if denom <= 0:
        raise InvalidInputError("no target document falls in a non-empty corpus bucket")
    prior = prior_tokens.astype(np.float64) / float(prior_tokens.sum())
    return (1 - b) * (n + a) / denom + b * prior


def target_weights(
    target_codes: DataFrame,
    stats: pd.DataFrame,
    *,
    level: int = 1,
    levels: Sequence[int],
    smoothing: float = 1.0,
    prior_mix: float = 0.1,
) -> dict[str, float]:
    """Stage-1 weights (``{bucket key: weight}``, for ``plan_mixture(weights=...)``) from
    the codes of the target documents (one small aggregation; driver).

    ``stats`` holds the corpus's non-empty level-``level`` buckets (``bucket``,
    ``tokens``), e.g. the level rows of STATS.

    Example::

        w = target_weights(model.transform(target_df), stats_pdf[stats_pdf.level == 1],
                           levels=(64, 64, 32))
        plan = plan_mixture(stats_pdf, budget_tokens=1e9, weights=w, stage2="random")
    """
    counts = bucket_counts(target_codes, level)
    return weights_from_counts(
        counts, stats, level=level, levels=levels, smoothing=smoothing, prior_mix=prior_mix
    )


def bucket_counts(target_codes: DataFrame, level: int) -> pd.Series:
    """Target documents per level-``level`` bucket of coded rows (one aggregation; the
    driver gets one row per non-empty bucket, never the documents)."""
    coded = target_codes
    if "reason" in coded.columns:
        coded = coded.where(F.col("reason").isNull())
    counts: pd.DataFrame = coded.groupBy(F.col(f"bucket{level}").alias("b")).count().toPandas()
    return pd.Series(counts["count"].to_numpy(), index=counts["b"].astype(np.int64))


def weights_from_counts(
    series: pd.Series,
    stats: pd.DataFrame,
    *,
    level: int,
    levels: Sequence[int],
    smoothing: float,
    prior_mix: float,
) -> dict[str, float]:
    """:func:`target_weights` of per-bucket target counts (pure pandas)."""
    prior = stats.set_index(stats["bucket"].astype(np.int64))["tokens"]
    outside = int(series[~series.index.isin(prior.index)].sum())
    if outside:
        log.warning("%d target documents fall in cells the corpus does not have", outside)
    w = blend(series, prior, smoothing=smoothing, prior_mix=prior_mix)
    return {format_bucket_key(int(b), level, levels): float(v) for b, v in w.items()}
