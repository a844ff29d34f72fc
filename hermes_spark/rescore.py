"""``hermes rescore``: recompute the ``quality`` column of one codebook version from the
corpus text with the built-in scorer (executors), no embedding."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hermes_spark.config import CorpusConfig
from hermes_spark.corpus import corpus_name, read_corpus
from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.errors import InvalidInputError
from hermes_spark.sampling.texts import corpus_rows, first_per_id
from hermes_spark.schema import VERSION_COL, select_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RescoreResult:
    """What :func:`rescore_quality` did."""

    table: str
    codebook_version: str
    rows: int
    rescored: int
    not_in_corpus: int


def rescore_quality(
    spark: SparkSession,
    table: str,
    corpus: CorpusConfig,
    version: str | None = None,
    *,
    store: DeltaStore | None = None,
) -> RescoreResult:
    """Recompute ``quality`` of one codebook version with the built-in scorer, no embedding.

    Joins the corpus text on ``doc_id`` (computed as annotate does), scores it with
    :func:`udfs.quality.quality_scores` in a pandas UDF (executors) and replaces that
    version's partition in one Delta commit: its rows get the new quality (rows whose doc
    is not in the corpus keep theirs), every other column is unchanged and the files of
    every other version are not touched. ``store`` defaults to the session's store.

    Raises:
        InvalidInputError: no document of the table is found in the corpus.
    """
    from pyspark.sql.pandas.functions import pandas_udf

    store = store or get_store(spark)
    codes, chosen = select_version(store, table, version)
    plain = dataclasses.replace(
        corpus, quality_col=None, tokens_col=None, embedding_col=None, keep_cols=()
    )
    raw = read_corpus(spark, plain, store=store)
    texts, _ = corpus_rows(raw, plain, [plain.text_col])
    texts = texts.withColumnRenamed(plain.text_col, "_text")
    matched = codes.select("doc_id").join(texts.select("doc_id").distinct(), "doc_id")
    total = codes.count()
    found = matched.count()
    if found == 0 and total:
        raise InvalidInputError(
            f"none of the {total} documents of version {chosen} in {table} is in corpus "
            f"{corpus_name(corpus)}: check {{corpus.input}}/{{corpus.table}}, "
            "{corpus.id_col} and {corpus.text_col}"
        )

    # pyspark's stubs know only the functionType= form, not the type-hinted one used here
    @pandas_udf("double")  # type: ignore[call-overload, untyped-decorator]
    def score(text: pd.Series) -> pd.Series:
        from udfs.quality import quality_scores

        return quality_scores(text)

    best = first_per_id(texts)
    joined = codes.join(best, "doc_id", "left")
    raw = score(F.col("_text"))
    fresh = F.when(F.isnan(raw), F.lit(None).cast("double")).otherwise(raw)
    new_quality = F.when(F.col("_text").isNotNull(), fresh).otherwise(F.col("quality"))
    columns = store.read(table).columns
    rescored = joined.select(
        *[new_quality.alias(c) if c == "quality" else F.col(c) for c in columns]
    )
    store.replace_partition(rescored, table, VERSION_COL, chosen)
    log.info("rescored %d of %d rows of version %s in %s", found, total, chosen, table)
    return RescoreResult(table, chosen, total, found, total - found)
