"""Target corpora named by a path (``--weights target:PATH``, ``--target PATH``): the
table side of :mod:`hermes_spark.sampling.target` and :mod:`hermes_spark.sampling.similarity`.

Driver orchestration: lists and reads the target corpus through the corpus reader (any
format, any URI), loads the artifact through the URI layer with the session's storage,
and codes the few hundred target texts with the library's ``transform`` (the model runs
on executors; nothing is written). The sampling wing receives the resulting frames.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from hermes_spark.errors import InvalidConfigError, InvalidInputError
from hermes_spark.object_stores import storage_of
from hermes_spark.sampling.target import PREFIX, bucket_counts, weights_from_counts

log = logging.getLogger(__name__)


def read_target_frame(spark: SparkSession, path: str, embedding_col: str | None) -> DataFrame:
    """The target corpus at ``path`` as a raw frame (the reader ``--weights target:PATH``
    uses: any corpus format, any URI)."""
    from hermes_spark.config import CorpusConfig
    from hermes_spark.corpus import list_input_files, read_corpus

    corpus = CorpusConfig(input=path, embedding_col=embedding_col)
    return read_corpus(spark, corpus, list_input_files(corpus, spark).paths)


def code_target_corpus(
    spark: SparkSession,
    path: str,
    codebook: str | None,
    *,
    embedding_col: str | None = None,
    text_col: str = "text",
    id_col: str = "id",
) -> tuple[DataFrame, str]:
    """The target corpus at ``path`` coded with the artifact ``codebook`` (the library's
    ``transform``: lazy, nothing is written; the model runs on executors when the frame
    is used), its uncodable rows left out, and the artifact's codebook version.

    Raises:
        InvalidConfigError: no ``--codebook`` given.
    """
    if not codebook:
        raise InvalidConfigError(
            "{sample.weights} target:PATH codes the target texts with the artifact: pass {codebook}"
        )
    from hermes_spark.api import HermesModel

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
    return model.transform(raw).where("reason is null"), model.codebook.version


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
    :func:`code_target_corpus`); the artifact must be the codes' codebook version. One
    job embeds the target and brings back one count per bucket.

    Raises:
        InvalidConfigError: the artifact is not the codes' version.
        InvalidInputError: no target document could be coded.
    """
    path = spec.strip()[len(PREFIX) :]
    coded, coded_version = code_target_corpus(spark, path, codebook, embedding_col=embedding_col)
    if coded_version != version:
        raise InvalidConfigError(
            f"{{codebook}} is version {coded_version}, the codes are {version}: code the target "
            "with the artifact that produced the codes"
        )
    counts = bucket_counts(coded, level)
    if counts.empty:
        raise InvalidInputError(f"no document of target corpus {path} could be coded")
    return weights_from_counts(
        counts, parents, level=level, levels=levels, smoothing=smoothing, prior_mix=prior_mix
    )
