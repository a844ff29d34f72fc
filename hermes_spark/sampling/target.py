"""Target-oriented Stage-1 weights (``--weights target:PATH``).

A few hundred target texts (the documents a user wants the model to be good at) are coded
with the corpus's codebook artifact; the Stage-1 weights follow their cell distribution at
the Stage-1 level, smoothed, with a share of the corpus prior mixed in:

``W_b = (1 - β) · (n_b + α) / (N + α·B) + β · tokens_b / Σ tokens``

over the ``B`` non-empty corpus buckets (``n_b`` target documents in bucket ``b`` of the
``N`` coded ones; target documents in cells the corpus does not have are dropped and
counted). ``α`` is ``smoothing``, ``β`` is ``prior_mix``.

:func:`target_weights` is the API (target codes in, e.g. ``model.transform(target_df)``);
:func:`code_target_corpus` is what ``hermes plan/sample`` use on a path: it annotates the
target corpus with the artifact into a scratch table (the artifact's model embeds the
texts, or ``embedding_col`` vectors are used) and reads its codes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hermes_spark.errors import InvalidConfigError, InvalidInputError
from hermes_spark.object_stores import storage_of
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
    coded = target_codes
    if "reason" in coded.columns:
        coded = coded.where(F.col("reason").isNull())
    counts: pd.DataFrame = coded.groupBy(F.col(f"bucket{level}").alias("b")).count().toPandas()
    series = pd.Series(counts["count"].to_numpy(), index=counts["b"].astype(np.int64))
    prior = stats.set_index(stats["bucket"].astype(np.int64))["tokens"]
    outside = int(series[~series.index.isin(prior.index)].sum())
    if outside:
        log.warning("%d target documents fall in cells the corpus does not have", outside)
    w = blend(series, prior, smoothing=smoothing, prior_mix=prior_mix)
    return {format_bucket_key(int(b), level, levels): float(v) for b, v in w.items()}


def code_target_corpus(
    spark: SparkSession,
    path: str,
    codebook: str | None,
    *,
    embedding_col: str | None = None,
    text_col: str = "text",
    id_col: str = "id",
) -> tuple[pd.DataFrame, str]:
    """Code the target corpus at ``path`` with the artifact ``codebook`` (the library's
    ``transform``: nothing is written) and return its codes (small: a few hundred rows)
    and the codebook version (driver orchestration; the model runs on executors).

    Raises:
        InvalidConfigError: no ``--codebook`` given.
    """
    if not codebook:
        raise InvalidConfigError(
            "{sample.weights} target:PATH codes the target texts with the artifact: pass {codebook}"
        )
    from hermes_spark.api import HermesModel
    from hermes_spark.sampling.similarity import read_target_frame
    from hermes_spark.schema import code_columns

    raw = read_target_frame(spark, path, embedding_col)
    # the target is a bare text (or vector) frame: the artifact's saved quality and
    # tokens roles name corpus columns the target does not have
    model = HermesModel.load(
        codebook,
        storage=storage_of(spark),
        text_col=text_col,
        id_col=id_col,
        embedding_col=embedding_col,
        quality_col=None,
        tokens_col=None,
    )
    own = ["doc_id", *code_columns(len(model.levels)), "n_tokens", "quality", "codebook_version"]
    # transform writes nothing: the target's codes come straight back (a few hundred rows)
    pdf: pd.DataFrame = model.transform(raw).where("reason is null").select(*own).toPandas()
    if pdf.empty:
        raise InvalidInputError(f"no document of target corpus {path} could be coded")
    return pdf, str(pdf["codebook_version"].iloc[0])


def target_weights_from_path(
    spark: SparkSession,
    spec: str,
    parents: pd.DataFrame,
    *,
    codebook: str | None,
    level: int,
    levels: Sequence[int],
    smoothing: float,
    prior_mix: float,
    embedding_col: str | None,
    version: str,
) -> dict[str, float]:
    """:func:`target_weights` of the corpus named by ``target:PATH`` (see
    :func:`code_target_corpus`); the artifact must be the codes' codebook version."""
    path = spec.strip()[len(PREFIX) :]
    pdf, coded_version = code_target_corpus(spark, path, codebook, embedding_col=embedding_col)
    if coded_version != version:
        raise InvalidConfigError(
            f"{{codebook}} is version {coded_version}, the codes are {version}: code the target "
            "with the artifact that produced the codes"
        )
    target_df = spark.createDataFrame(pdf[[f"bucket{level}"]])
    return target_weights(
        target_df, parents, level=level, levels=levels, smoothing=smoothing, prior_mix=prior_mix
    )
