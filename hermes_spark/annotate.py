"""``hermes annotate``: embed → LST → assign every document, commit codes chunk by chunk.

Driver orchestration; the heavy work is one fused ``mapInPandas`` pass on executors.
The input files are processed in chunks (``annotate.files_per_chunk``); each chunk is
one Delta commit to the codes table (and one to ``<CODES>_rejects``) tagged with an
application transaction id derived from the codebook version and the chunk's files, so
re-running the same command after a failure skips committed chunks and never writes a
document twice.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from hermes_spark.config import HermesConfig
from hermes_spark.corpus import (
    ORDER_COL,
    REASON_COL,
    apply_duplicates,
    check_columns,
    chunk_of_files,
    cross_chunk_duplicates,
    duplicate_losers,
    embedding_col_dim,
    file_key,
    keep_name,
    list_input_files,
    listed_files,
    prepare,
    read_corpus,
    reject_later_copies,
    require_rows,
)
from hermes_spark.delta import DeltaStore, get_store, rejects_table
from hermes_spark.errors import ArtifactError, InvalidInputError, VersionMismatchError
from hermes_spark.quantize.codebook import Codebook
from udfs.annotate_udf import ModelSettings, annotate_schema, make_annotate_fn

log = logging.getLogger(__name__)

VERSION_COL = "codebook_version"
#: Lineage column of the codes and rejects tables: the input file a row came from (URI).
SOURCE_COL = "source_file"
#: Commit metadata of every annotate commit: the codebook version and its level sizes,
#: so ``stats`` knows ``K1`` exactly without the artifact.
VERSION_META = "hermes.codebook_version"
LEVELS_META = "hermes.levels"


@dataclass
class AnnotateReport:
    """Counts of one ``annotate`` run (printed by the CLI)."""

    codebook_version: str
    table: str
    rejects_table: str
    chunks_total: int = 0
    chunks_skipped: int = 0
    rows_written: int = 0
    rejects_written: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    table_rows: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view."""
        return dict(self.__dict__)


def bucket_columns(levels: tuple[int, ...]) -> list[Column]:
    """Packed prefixes: ``bucket1 = c1``, ``bucket_k = bucket_{k-1} * K_k + c_k``."""
    cols: list[Column] = []
    packed: Column | None = None
    for k, size in enumerate(levels, start=1):
        code = F.col(f"c{k}").cast("long")
        packed = code if packed is None else packed * F.lit(size) + code
        cols.append(packed.alias(f"bucket{k}"))
    return cols


def chunk_app_id(version: str, files: tuple[str, ...]) -> str:
    """Transaction id of one chunk: codebook version + the chunk's files (name, size, mtime)."""
    h = hashlib.sha256()
    for path in files:
        local = path.removeprefix("file:")
        stat = os.stat(local) if os.path.exists(local) else None
        h.update(
            f"{path}|{stat.st_size if stat else ''}|{stat.st_mtime_ns if stat else ''}\n".encode()
        )
    return f"hermes-annotate:{version}:{h.hexdigest()[:24]}"


def codes_output(
    annotated: DataFrame, levels: tuple[int, ...], version: str, keep_cols: tuple[str, ...]
) -> DataFrame:
    """Order and type the codes-table columns exactly as SPEC's schema."""
    k = len(levels)
    return annotated.select(
        "doc_id",
        *[F.col(f"c{i}") for i in range(1, k + 1)],
        *bucket_columns(levels),
        *[F.col(f"qerr{i}") for i in range(1, k + 1)],
        "n_tokens",
        "quality",
        F.lit(version).alias(VERSION_COL),
        F.current_timestamp().alias("annotated_at"),
        SOURCE_COL,
        *[F.col(keep_name(c)).alias(c) for c in keep_cols],
    )


def _check_keep_cols(keep_cols: tuple[str, ...], levels: int) -> None:
    """``--keep-cols`` may not shadow a column of the codes table."""
    own = {"doc_id", "n_tokens", "quality", VERSION_COL, "annotated_at", SOURCE_COL}
    own |= {f"{p}{k}" for p in ("c", "bucket", "qerr") for k in range(1, levels + 1)}
    clash = sorted(set(keep_cols) & own)
    if clash:
        raise InvalidInputError(
            f"--keep-cols {', '.join(clash)}: the codes table has its own column(s) of that "
            "name; rename them in the corpus or leave them out"
        )


def _existing_rows(store: DeltaStore, table: str, version: str) -> DataFrame | None:
    """``(doc_id, source_file)`` of the rows ``version`` already has (its partition only)."""
    if not store.exists(table):
        return None
    df = store.read(table)
    missing = {VERSION_COL, SOURCE_COL} - set(df.columns)
    if missing:
        raise InvalidInputError(
            f"table {table} has no {', '.join(sorted(missing))} column: not a codes table "
            "of this hermes version"
        )
    return df.where(F.col(VERSION_COL) == version).select("doc_id", SOURCE_COL)


def _skip_or_reject_annotated(prepared: DataFrame, done: DataFrame, listed: DataFrame) -> DataFrame:
    """Rows whose id already has a row of this version (incremental runs, resumed runs).

    A later copy is a row from another file than the annotated row's, while that file is
    still part of the corpus (``listed``): rejected as ``duplicate_doc_id`` (the copy
    committed first stays), so a resumed run ends with the same rejects as one
    uninterrupted run. Otherwise it is the annotated document itself, listed again (same
    file) or moved (its old file is gone, e.g. compacted): skipped, at no cost.
    """
    still_listed = listed.select(F.col("file").alias("_seen_key"), F.lit(True).alias("_listed"))
    seen = (
        done.select("doc_id", F.col(SOURCE_COL).alias("_seen_in"))
        .withColumn("_seen_key", file_key(F.col("_seen_in")))
        .join(F.broadcast(still_listed), "_seen_key", "left")
        .drop("_seen_key")
    )
    joined = prepared.join(seen, "doc_id", "left")
    valid = F.col(REASON_COL).isNull()
    seen_in = F.col("_seen_in")
    other_file = seen_in != F.col(SOURCE_COL)
    copy = F.coalesce(valid & other_file & F.col("_listed"), F.lit(False))
    skip = F.coalesce(valid & seen_in.isNotNull() & ~copy, F.lit(False))
    reason = F.when(copy, F.lit("duplicate_doc_id")).otherwise(F.col(REASON_COL))
    return joined.where(~skip).withColumn(REASON_COL, reason).drop("_seen_in", "_listed")


def annotate(
    spark: SparkSession, cfg: HermesConfig, codebook_path: str, table: str
) -> AnnotateReport:
    """Annotate ``cfg.corpus`` with the codebook at ``codebook_path`` into ``table``."""
    t0 = time.perf_counter()
    codebook = Codebook.load(codebook_path)
    corpus = cfg.corpus
    files = list_input_files(corpus)
    probe = read_corpus(spark, corpus, files.paths)
    check_columns(probe.schema, corpus, embedding_dim=codebook.dim)
    require_rows(probe, corpus)
    store = get_store(spark)
    version = codebook.version
    rejects = rejects_table(table)
    store.check_writable(table)
    store.check_writable(rejects)
    if corpus.embedding_col:
        given = embedding_col_dim(probe, corpus.embedding_col)
        if given != codebook.dim:
            raise ArtifactError(
                f"codebook {codebook_path} was fitted on {codebook.dim}-dimensional vectors "
                f"of model {codebook.model['name']!r}, but column {corpus.embedding_col!r} "
                f"holds {given}-dimensional vectors: use the codebook fitted on these "
                "embeddings or re-run hermes fit"
            )
    report = AnnotateReport(codebook_version=version, table=table, rejects_table=rejects)
    settings = ModelSettings(
        codebook.model["name"],
        int(codebook.model["max_seq_length"]),
        int(codebook.model.get("batch_size", cfg.model.batch_size)),
        cfg.model.device,
        cfg.model.sort_window,
    )
    _check_keep_cols(corpus.keep_cols, len(codebook.levels))
    passthrough_fields = [
        T.StructField(keep_name(f.name), f.dataType)
        for f in probe.schema.fields
        if f.name in corpus.keep_cols
    ]
    passthrough_fields.append(T.StructField(SOURCE_COL, T.StringType()))
    schema = annotate_schema(len(codebook.levels), passthrough_fields)
    fn = make_annotate_fn(
        codebook,
        settings,
        has_embedding=corpus.embedding_col is not None,
        has_tokens=corpus.tokens_col is not None,
        has_quality=corpus.quality_col is not None,
        passthrough=(*map(keep_name, corpus.keep_cols), SOURCE_COL),
    )
    rows_before = _version_rows(store, table, version)
    parallelism = spark.sparkContext.defaultParallelism
    chunks = files.chunks(cfg.annotate.files_per_chunk)
    report.chunks_total = len(chunks)
    reasons: Counter[str] = Counter()
    pending: list[tuple[int, tuple[str, ...], str]] = []
    for index, chunk in enumerate(chunks):
        app_id = chunk_app_id(version, chunk)
        if (store.txn_version(table, app_id) or 0) >= 1:
            report.chunks_skipped += 1
            log.info("chunk %d/%d already committed (%s): skipped", index + 1, len(chunks), app_id)
        else:
            pending.append((index, chunk, app_id))
    repeated = _scan_duplicates(spark, cfg, codebook.dim, pending)
    listed: DataFrame | None = None  # the corpus's files, listed when first needed
    before = _existing_rows(store, table, version)
    if cfg.annotate.on_duplicate == "error" and pending and before is not None:
        listed = listed_files(spark, files.paths)
        pending_files = [f for _, chunk, _ in pending for f in chunk]
        _refuse_copies_of_annotated(spark, cfg, codebook.dim, pending_files, listed, before)
    for index, chunk, app_id in pending:
        raw = read_corpus(spark, corpus, chunk)
        prepared = prepare(raw, corpus, codebook.dim)
        prepared = prepared.withColumn(SOURCE_COL, F.col(f"{ORDER_COL}.file"))
        if repeated is not None:
            prepared = reject_later_copies(prepared, repeated, index)
        done = _existing_rows(store, table, version)
        if done is not None:
            listed = listed if listed is not None else listed_files(spark, files.paths)
            prepared = _skip_or_reject_annotated(prepared, done, listed)
        prepared = apply_duplicates(prepared, duplicate_losers(prepared))
        bad = prepared.where(F.col(REASON_COL).isNotNull()).select(
            "doc_id",
            F.col(REASON_COL).alias("reason"),
            F.lit(version).alias(VERSION_COL),
            F.current_timestamp().alias("annotated_at"),
            SOURCE_COL,
        )
        # A chunk's rejects commit is idempotent by its txn id; rows recorded under another
        # chunking (files_per_chunk changed, new files listed in between) are not recorded
        # again. Keyed by id, reason and file: later copies of one id in other files stay.
        if store.exists(rejects):
            done_rejects = (
                store.read(rejects)
                .where(F.col(VERSION_COL) == version)
                .select("doc_id", "reason", SOURCE_COL)
                .distinct()
            )
            bad = bad.join(done_rejects, ["doc_id", "reason", SOURCE_COL], "left_anti")
        good = prepared.where(F.col(REASON_COL).isNull()).drop(REASON_COL, ORDER_COL)
        n_in = good.rdd.getNumPartitions()
        if n_in < 2 * parallelism:
            good = good.repartition(2 * parallelism, "doc_id")
            n_in = 2 * parallelism
        annotated = good.mapInPandas(fn, schema)
        codes = codes_output(annotated, codebook.levels, version, corpus.keep_cols)
        codes = codes.repartition(max(1, math.ceil(n_in / 16)), "doc_id")
        bad_counts = {
            r["reason"]: r["n"]
            for r in bad.groupBy("reason").agg(F.count(F.lit(1)).alias("n")).collect()
        }
        if bad_counts:
            store.append(
                bad.coalesce(1), rejects, app_id=app_id, app_version=1, partition_by=(VERSION_COL,)
            )
        reasons.update(bad_counts)
        committed = store.append(
            codes,
            table,
            app_id=app_id,
            app_version=1,
            partition_by=(VERSION_COL,),
            metadata={
                "hermes.chunk": str(index),
                VERSION_META: version,
                LEVELS_META: ",".join(map(str, codebook.levels)),
            },
        )
        if not committed:
            report.chunks_skipped += 1
        log.info(
            "chunk %d/%d committed=%s rejects=%s", index + 1, len(chunks), committed, bad_counts
        )
    if repeated is not None:
        repeated.unpersist()
    report.reject_reasons = dict(reasons)
    report.rejects_written = sum(reasons.values())
    report.table_rows = _version_rows(store, table, version)
    report.rows_written = report.table_rows - rows_before
    report.seconds = time.perf_counter() - t0
    return report


def _version_rows(store: DeltaStore, table: str, version: str) -> int:
    """Rows of ``version`` in ``table`` (a count over the version's partition only)."""
    if not store.exists(table):
        return 0
    return store.read(table).where(F.col(VERSION_COL) == version).count()


def _scan_duplicates(
    spark: SparkSession,
    cfg: HermesConfig,
    dim: int,
    pending: list[tuple[int, tuple[str, ...], str]],
) -> DataFrame | None:
    """Find ids repeated anywhere in the pending chunks, before any of them is committed.

    ``--on-duplicate error`` refuses the run here. For ``keep-first`` with several pending
    chunks, returns the (cached) ids whose first copy is in an earlier chunk than a later
    copy, so every chunk can reject its later copies; ``None`` when there is nothing to do.
    Costs one scan of the pending files' id and text columns and a shuffle of ids only.
    """
    error = cfg.annotate.on_duplicate == "error"
    if not pending or (len(pending) == 1 and not error):
        return None
    files = [f for _, chunk, _ in pending for f in chunk]
    prepared = prepare(read_corpus(spark, cfg.corpus, files), cfg.corpus, dim)
    chunk_files = chunk_of_files(spark, [(index, chunk) for index, chunk, _ in pending])
    dups = cross_chunk_duplicates(prepared, chunk_files)
    if error:
        examples = dups.orderBy(F.col("n").desc(), "doc_id").limit(5).collect()
        if examples:
            shown = ", ".join(f"{r['doc_id']!r} x{r['n']}" for r in examples)
            raise InvalidInputError(
                f"the corpus repeats document ids ({shown}, ...) and --on-duplicate is error; "
                "nothing was written. Fix the ids or use --on-duplicate keep-first to keep the "
                "first occurrence"
            )
        return None
    across = (
        dups.where(F.col("first_chunk") != F.col("last_chunk"))
        .select("doc_id", "first_chunk")
        .cache()
    )
    n = across.count()
    log.info("%d document ids repeat across the %d pending chunks", n, len(pending))
    if n == 0:
        across.unpersist()
        return None
    return across


def _refuse_copies_of_annotated(
    spark: SparkSession,
    cfg: HermesConfig,
    dim: int,
    files: list[str],
    listed: DataFrame,
    done: DataFrame,
) -> None:
    """``--on-duplicate error``: stop before any commit when a document of ``files``
    repeats the id of one an earlier run annotated (``done``: ``doc_id, source_file``)
    from another file still in the corpus (``listed``)."""
    prepared = prepare(read_corpus(spark, cfg.corpus, files), cfg.corpus, dim)
    valid = prepared.where(F.col(REASON_COL).isNull())
    valid = valid.withColumn(SOURCE_COL, F.col(f"{ORDER_COL}.file"))
    copies = _skip_or_reject_annotated(valid, done, listed).where(F.col(REASON_COL).isNotNull())
    examples = copies.select("doc_id").orderBy("doc_id").limit(5).collect()
    if examples:
        shown = ", ".join(repr(r["doc_id"]) for r in examples)
        raise InvalidInputError(
            f"the corpus repeats the ids of documents already annotated from other files "
            f"({shown}, ...) and --on-duplicate is error; nothing was written. Fix the ids "
            "or use --on-duplicate keep-first to keep the annotated copies"
        )


def recorded_levels(store: DeltaStore, table: str, version: str) -> list[int] | None:
    """Level sizes that annotate recorded in the commit metadata for ``version`` (driver);
    None when no such commit is left in the log (e.g. trimmed by log retention)."""
    for meta in store.commit_metadata(table):
        if meta.get(VERSION_META) == version and LEVELS_META in meta:
            return [int(k) for k in meta[LEVELS_META].split(",")]
    return None


def latest_version(store: DeltaStore, table: str) -> str:
    """The codebook version of the most recently annotated rows of a codes table."""
    df = store.read(table)
    row = (
        df.groupBy(VERSION_COL)
        .agg(F.max("annotated_at").alias("t"))
        .orderBy(F.col("t").desc())
        .limit(1)
        .collect()
    )
    if not row:
        raise InvalidInputError(f"codes table {table} is empty")
    return row[0][VERSION_COL]


def select_version(store: DeltaStore, table: str, version: str | None) -> tuple[DataFrame, str]:
    """Rows of one codebook version (default: the latest); never a mix of versions."""
    if not store.exists(table):
        raise InvalidInputError(f"codes table {table} does not exist (run hermes annotate)")
    chosen = version or latest_version(store, table)
    df = store.read(table).where(F.col(VERSION_COL) == chosen)
    if version is not None and df.limit(1).count() == 0:
        raise VersionMismatchError(f"codes table {table} has no rows of codebook version {version}")
    return df, chosen
