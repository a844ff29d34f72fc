"""The corpus rows behind ``doc_id``: computed exactly as annotate does, first copy kept.

Lazy DataFrames; executors read the corpus when the result is used.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from hermes_spark.config import CorpusConfig
from hermes_spark.corpus import (
    CORRUPT_COL,
    ORDER_COL,
    check_columns,
    doc_id_column,
    reject_reason,
    stable_order,
)

#: Column of :func:`corpus_rows` frames: the row's data file (``_metadata.file_path``).
FILE_COL = "_file"


def _has_file_metadata(raw: DataFrame) -> bool:
    """Whether ``raw`` is a file source with Spark's ``_metadata`` column (no job)."""
    try:
        raw.select("_metadata.file_path").schema  # noqa: B018 (analysis only)
    except Exception:  # AnalysisException, or its Spark Connect twin
        return False
    return True


def corpus_rows(
    raw: DataFrame, corpus: CorpusConfig, columns: list[str] | None = None
) -> tuple[DataFrame, list[str]]:
    """``doc_id``, corpus ``columns`` (default: all but the embedding), ``_file`` (the
    row's file as Spark names it, null without file metadata) and the ordering columns
    :func:`first_per_id` needs, of a raw corpus frame; also the column names kept (lazy).

    ``doc_id`` is :func:`hermes_spark.corpus.doc_id_column`, exactly as annotate computes it.
    """
    check_columns(raw.schema, corpus, embedding_dim=None)
    keep = (
        columns
        if columns is not None
        else [c for c in raw.columns if c not in (CORRUPT_COL, corpus.embedding_col, "doc_id")]
    )
    # The position annotate's keep-first uses (corpus.prepare): the same keeper here.
    order = stable_order(raw)
    with_id = raw.withColumn("doc_id", doc_id_column(raw.schema, corpus))
    file = F.col("_metadata.file_path") if _has_file_metadata(raw) else F.lit(None).cast("string")
    ordered = with_id.select(
        "doc_id",
        *[F.col(c) for c in keep],
        file.alias(FILE_COL),
        reject_reason(with_id.schema, corpus, None).isNotNull().alias("_invalid"),
        order.alias(ORDER_COL),
    ).where(F.col("doc_id").isNotNull())
    return ordered, keep


def first_per_id(df: DataFrame) -> DataFrame:
    """Keep one row per ``doc_id`` of a :func:`corpus_rows` frame, the one annotate kept
    (``--on-duplicate keep-first``): the first valid row by :func:`corpus.stable_order`
    (file, row index in the file; JSON lines: file, record hash), never by split-dependent
    ids. A window per id: executors, no global sort."""
    order = Window.partitionBy("doc_id").orderBy("_invalid", ORDER_COL)
    return (
        df.withColumn("_rn", F.row_number().over(order))
        .where(F.col("_rn") == 1)
        .drop("_rn", "_invalid", ORDER_COL, FILE_COL)
    )
