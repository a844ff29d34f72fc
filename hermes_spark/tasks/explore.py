"""``hermes explore``: the bucket cards of a codes table as a Delta table and an explorer.

Spark jobs (executors): the cards of :func:`hermes_spark.cards.bucket_cards`, written to
``<CODES>_cards`` (the rows of one codebook version replaced per run). The driver then
reads the cards back (one row per bucket and level: small) and writes the static HTML
explorer. The corpus is scanned once, joined with the sampled ids only.
"""

from __future__ import annotations

import dataclasses
import logging

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hermes_spark.cards import bucket_cards
from hermes_spark.config import CorpusConfig
from hermes_spark.corpus import read_corpus
from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.delta.describe import describe_table
from hermes_spark.errors import InvalidInputError
from hermes_spark.object_stores import storage_of
from hermes_spark.report.explorer import Cards
from hermes_spark.sampling.texts import corpus_rows, first_per_id
from hermes_spark.schema import VERSION_COL, select_version

log = logging.getLogger(__name__)


def cards_table_name(table: str) -> str:
    """``<CODES>_cards``: a sibling path or, for a catalog name, a sibling table."""
    return f"{table.rstrip('/')}_cards"


def read_cards(
    spark: SparkSession, table: str, version: str | None = None, *, store: DeltaStore | None = None
) -> Cards:
    """The cards of ``table`` (a codes table or its ``_cards`` table) for one version
    (default: the only or first one) as a :class:`Cards` (driver; small)."""
    store = store or get_store(spark)
    name = table if table.rstrip("/").endswith("_cards") else cards_table_name(table)
    if not store.exists(name):
        raise InvalidInputError(f"no cards table {name} (run hermes explore)")
    frame = store.read(name)
    if version is None:
        versions = [r[0] for r in frame.select(VERSION_COL).distinct().collect()]
        version = sorted(versions)[0] if versions else None
    pdf = frame.where(F.col(VERSION_COL) == F.lit(version)).toPandas()
    return Cards(pdf, version, name)


def explore(
    spark: SparkSession,
    corpus: CorpusConfig,
    table: str,
    out: str | None,
    *,
    level: int = 2,
    examples: int = 5,
    version: str | None = None,
    seed: int = 0,
    sample_per_bucket: int = 200,
    keep_cols: tuple[str, ...] | None = None,
    store: DeltaStore | None = None,
) -> Cards:
    """Write the cards of ``table``'s version (default: the latest) to ``<CODES>_cards``
    and, when ``out`` is given, the explorer to ``out/index.html``; return the cards.
    ``store`` defaults to the session's store."""
    store = store or get_store(spark)
    if examples < 0 or sample_per_bucket < 1 or level < 1:
        raise InvalidInputError(
            "exploring needs {level} >= 1, {examples} >= 0 and {sample_per_bucket} >= 1"
        )
    codes, chosen = select_version(store, table, version)
    keep = tuple(corpus.keep_cols if keep_cols is None else keep_cols)
    plain = dataclasses.replace(
        corpus, quality_col=None, tokens_col=None, embedding_col=None, keep_cols=()
    )
    raw = read_corpus(spark, plain, store=store)
    texts, _ = corpus_rows(raw, plain, [plain.text_col])
    texts = first_per_id(texts).withColumnRenamed(plain.text_col, "text")
    cards = bucket_cards(
        codes,
        texts,
        level=level,
        examples=examples,
        seed=seed,
        sample_per_bucket=sample_per_bucket,
        keep_cols=keep,
        version=chosen,
    )
    name = cards_table_name(table)
    if store.exists(name) and VERSION_COL in store.read(name).columns:
        store.replace_partition(cards, name, VERSION_COL, chosen)
    else:
        store.overwrite(cards, name, partition_by=(VERSION_COL,))
    describe_table(store, name, "cards", {"codebook_version": chosen, "levels": level})
    result = read_cards(spark, name, chosen, store=store)
    if out:
        result.save(out, storage=storage_of(spark))
    log.info("cards of codebook %s written to %s", chosen, name)
    return result
