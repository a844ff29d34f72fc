"""Stage-1 weights carried from one codebook version to another through a crosswalk.

The from-version's weights (keyed by its packed buckets at ``from_level``) are turned into
to-version weights at ``to_level`` whose sample best realizes the from-mixture in
from-cells (:func:`hermes_spark.quantize.crosswalk_math.carry_weights`). The pair table is
built lazily on the executors (a join of ids and bucket columns); only its non-empty
cells — at most one row per (from-bucket, to-bucket) pair — reach the driver.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hermes_spark.errors import InvalidInputError
from hermes_spark.quantize.crosswalk_math import carry_weights, plain_carry, realized
from hermes_spark.sampling.crosswalk import version_docs
from hermes_spark.schema import VERSION_COL

log = logging.getLogger(__name__)

__all__ = ["CarriedWeights", "carry_mixture", "pair_cells"]


@dataclass(frozen=True)
class CarriedWeights:
    """To-version weights, how well they realize the from-mixture, and the map's coverage.

    ``tv`` / ``plain_tv``: total-variation distance between the wanted from-mixture and
    the one realized on the crosswalk's documents, for the solved weights and for the
    plain token-mass mapping. ``coverage``: share of the from-weight whose buckets have
    documents under both versions.
    """

    weights: dict[Any, float]
    residual: float
    tv: float
    plain_tv: float
    coverage: float
    from_version: str
    from_level: int
    to_level: int


def pair_cells(
    codes: DataFrame, from_version: str, to_version: str, from_level: int, to_level: int
) -> DataFrame:
    """``(from_bucket, to_bucket, docs, tokens)`` over documents coded under both (lazy)."""
    for lv in (from_level, to_level):
        if f"bucket{lv}" not in codes.columns:
            raise InvalidInputError(f"the codes table has no level {lv} (no bucket{lv} column)")
    a = codes.where(F.col(VERSION_COL) == from_version).select(
        "doc_id", "n_tokens", F.col(f"bucket{from_level}").alias("from_bucket")
    )
    b = codes.where(F.col(VERSION_COL) == to_version).select(
        "doc_id", F.col(f"bucket{to_level}").alias("to_bucket")
    )
    return (
        a.join(b, "doc_id")
        .where(F.col("from_bucket").isNotNull() & F.col("to_bucket").isNotNull())
        .groupBy("from_bucket", "to_bucket")
        .agg(F.count("*").alias("docs"), F.sum("n_tokens").cast("long").alias("tokens"))
    )


def _tv(a: np.ndarray, b: np.ndarray) -> float:
    return float(0.5 * np.abs(a - b).sum())


def _key(bucket: Any) -> Any:
    """A cell key as the caller gave it: packed ids as ``int``, written keys as ``str``."""
    return int(bucket) if isinstance(bucket, int | np.integer) else str(bucket)


def carry_table(
    cells: pd.DataFrame, from_weights: Mapping[Any, float]
) -> tuple[dict[Any, float], float, float, float, float]:
    """Driver math of :func:`carry_mixture` on collected pair cells (token counts).

    Cells are keyed by packed bucket ids (``int``) or written keys (``"12.3"``); the
    weights' keys are of the same kind and so are the returned weights'.
    """
    total = float(sum(from_weights.values()))
    if total <= 0 or any(w < 0 for w in from_weights.values()):
        raise InvalidInputError("from-weights must be non-negative with a positive sum")
    table = cells.pivot_table(
        index="from_bucket", columns="to_bucket", values="tokens", aggfunc="sum", fill_value=0
    )
    covered = [b for b in table.index if from_weights.get(_key(b), 0.0) > 0]
    coverage = sum(from_weights[_key(b)] for b in covered) / total
    if not covered:
        raise InvalidInputError("no weighted from-bucket has documents under both versions")
    p = np.array([from_weights.get(_key(b), 0.0) for b in table.index], dtype=np.float64)
    p /= p.sum()
    t = table.to_numpy(dtype=np.float64)
    w, residual = carry_weights(t, p)
    plain = plain_carry(t, p)
    tv, plain_tv = _tv(realized(t, w), p), _tv(realized(t, plain), p)
    if plain_tv < tv:  # NNLS minimises L2; keep the figure users judge never worse
        w, tv = plain, plain_tv
        residual = float(np.linalg.norm(realized(t, plain) - p))
    weights = {_key(b): float(x) for b, x in zip(table.columns, w, strict=True) if x > 0}
    return weights, residual, tv, plain_tv, coverage


def carry_mixture(
    codes: DataFrame,
    from_weights: Mapping[int, float],
    from_version: str,
    to_version: str,
    from_level: int,
    to_level: int,
) -> CarriedWeights:
    """To-version weights at ``to_level`` realizing ``from_weights`` (``from_level``).

    One Spark job builds the pair cells; the NNLS runs on the driver. TV figures are
    measured on the documents coded under both versions, token-weighted.
    """
    version_docs(codes, from_version, to_version)
    cells = pair_cells(codes, from_version, to_version, from_level, to_level).toPandas()
    weights, residual, tv, plain_tv, coverage = carry_table(cells, from_weights)
    log.info(
        "carried %s level-%d weights to level %d: TV %.4f (plain mapping %.4f), coverage %.3f",
        from_version,
        from_level,
        to_level,
        tv,
        plain_tv,
        coverage,
    )
    return CarriedWeights(
        weights, residual, tv, plain_tv, coverage, from_version, from_level, to_level
    )
