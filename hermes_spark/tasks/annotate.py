"""``hermes annotate``: the resumable, exactly-once codes-table writer over ``transform``.

Driver orchestration. The coding itself is :func:`hermes_spark.coding.code_rows` (the
same stage :meth:`HermesModel.transform` builds). The input files are processed in
chunks (``annotate.files_per_chunk``); each chunk is one Delta commit to the codes table
(and at most one to ``<CODES>_rejects``) tagged with an application transaction id
derived from the codebook version and the chunk's files, so re-running the same command
after a failure skips committed chunks and never writes a document twice.
``--mode full`` instead re-annotates everything and replaces the version's rows (and
rejects) in one commit each.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hermes_spark import io
from hermes_spark.api import HermesModel, load_codebook
from hermes_spark.coding import code_rows
from hermes_spark.config import AnnotateConfig, CorpusConfig, HermesConfig
from hermes_spark.corpus import (
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
from hermes_spark.delta_store import DeltaStore, get_store
from hermes_spark.errors import ArtifactError, InvalidInputError
from hermes_spark.runtime import Progress, default_parallelism, job_description
from hermes_spark.schema import (
    ANNOTATED_AT_COL,
    LEVELS_META,
    REASON_COL,
    SOURCE_COL,
    VERSION_COL,
    VERSION_META,
    embeddings_table_name,
    own_columns,
    rejects_table_name,
)

log = logging.getLogger(__name__)


@dataclass
class AnnotateReport:
    """Counts of one ``annotate`` run (printed by the CLI)."""

    codebook_version: str
    table: str
    rejects_table: str
    mode: str = "incremental"
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


@dataclass(frozen=True)
class _Run:
    """Everything one annotate run needs, resolved on the driver before any job."""

    spark: SparkSession
    model: HermesModel
    corpus: CorpusConfig
    options: AnnotateConfig
    store: DeltaStore
    table: str
    rejects: str
    store_embeddings: bool = False

    @property
    def version(self) -> str:
        return self.model.version


def chunk_app_id(version: str, files: tuple[str, ...]) -> str:
    """Transaction id of one chunk: codebook version + the chunk's files (name, size, mtime)."""
    h = hashlib.sha256()
    for path in files:
        try:
            entry = io.list_files(path)[0]
            h.update(f"{path}|{entry.size}|{entry.mtime_ns}\n".encode())
        except (InvalidInputError, IndexError):
            h.update(f"{path}||\n".encode())
    return f"hermes-annotate:{version}:{h.hexdigest()[:24]}"


def _check_keep_cols(keep_cols: tuple[str, ...], levels: int) -> None:
    """``--keep-cols`` may not shadow a column of the codes table."""
    clash = sorted(set(keep_cols) & (own_columns(levels) - {REASON_COL}))
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


def skip_or_reject_annotated(prepared: DataFrame, done: DataFrame, listed: DataFrame) -> DataFrame:
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


def model_for(cfg: HermesConfig, codebook_path: str) -> HermesModel:
    """The artifact at ``codebook_path`` with this run's column roles and run options."""
    c = cfg.corpus
    return HermesModel(load_codebook(codebook_path)).with_options(
        id_col=c.id_col,
        text_col=c.text_col,
        embedding_col=c.embedding_col,
        quality_col=c.quality_col,
        tokens_col=c.tokens_col,
        batch_size=cfg.model.batch_size,
        device=cfg.model.device,
        sort_window=cfg.model.sort_window,
        batch_tokens=cfg.model.batch_tokens,
        tokenizer=cfg.model.tokenizer,
        backend=cfg.model.backend,
        precision=cfg.model.precision,
        task_gpu_amount=cfg.model.task_gpu_amount,
    )


def annotate(
    spark: SparkSession,
    cfg: HermesConfig,
    codebook_path: str,
    table: str,
    *,
    store_embeddings: bool = False,
) -> AnnotateReport:
    """Annotate ``cfg.corpus`` with the codebook at ``codebook_path`` into ``table``."""
    model = model_for(cfg, codebook_path)
    return annotate_table(
        spark,
        model,
        cfg.corpus,
        table,
        cfg.annotate,
        store_embeddings=store_embeddings,
        codebook_path=codebook_path,
    )


def annotate_table(
    spark: SparkSession,
    model: HermesModel,
    corpus: CorpusConfig,
    table: str,
    options: AnnotateConfig,
    *,
    store_embeddings: bool = False,
    codebook_path: str = "the codebook",
) -> AnnotateReport:
    """Write ``model``'s codes for the corpus files of ``corpus`` into ``table`` (driver).

    Checks columns, dimensions and table writability before any heavy job.
    """
    t0 = time.perf_counter()
    files = list_input_files(corpus, spark)  # listed once per run
    probe = read_corpus(spark, corpus, files.paths)
    check_columns(probe.schema, corpus, embedding_dim=model.codebook.dim)
    require_rows(probe, corpus)
    store = get_store(spark)
    run = _Run(
        spark,
        model,
        corpus,
        options,
        store,
        table,
        rejects_table_name(table),
        store_embeddings,
    )
    store.check_writable(table)
    store.check_writable(run.rejects)
    _check_dim(probe, corpus, model, codebook_path)
    _check_keep_cols(corpus.keep_cols, len(model.levels))
    report = AnnotateReport(model.version, table, run.rejects, mode=options.mode)
    rows_before = _version_rows(store, table, model.version)
    if options.mode == "full":
        reasons = _annotate_full(run, files.paths, report)
    else:
        reasons = _annotate_chunks(run, files.chunks(options.files_per_chunk), files.paths, report)
    report.reject_reasons = dict(reasons)
    report.rejects_written = sum(reasons.values())
    report.table_rows = _version_rows(store, table, model.version)
    report.rows_written = report.table_rows - (0 if options.mode == "full" else rows_before)
    report.seconds = time.perf_counter() - t0
    return report


def _check_dim(probe: DataFrame, corpus: CorpusConfig, model: HermesModel, path: str) -> None:
    if not corpus.embedding_col:
        return
    given = embedding_col_dim(probe, corpus.embedding_col)
    if given != model.codebook.dim:
        raise ArtifactError(
            f"codebook {path} was fitted on {model.codebook.dim}-dimensional vectors "
            f"of model {model.codebook.model['name']!r}, but column {corpus.embedding_col!r} "
            f"holds {given}-dimensional vectors: use the codebook fitted on these "
            "embeddings or re-run hermes fit"
        )


def _annotate_chunks(
    run: _Run, chunks: list[tuple[str, ...]], all_files: tuple[str, ...], report: AnnotateReport
) -> Counter[str]:
    """Incremental mode: one idempotent commit per pending chunk."""
    report.chunks_total = len(chunks)
    pending: list[tuple[int, tuple[str, ...], str]] = []
    for index, chunk in enumerate(chunks):
        app_id = chunk_app_id(run.version, chunk)
        if (run.store.txn_version(run.table, app_id) or 0) >= 1:
            report.chunks_skipped += 1
            log.info("chunk %d/%d already committed (%s): skipped", index + 1, len(chunks), app_id)
        else:
            pending.append((index, chunk, app_id))
    repeated = _scan_duplicates(run, pending)
    listed: DataFrame | None = None  # the corpus's files, listed when first needed
    before = _existing_rows(run.store, run.table, run.version)
    if run.options.on_duplicate == "error" and pending and before is not None:
        listed = listed_files(run.spark, all_files)
        pending_files = [f for _, chunk, _ in pending for f in chunk]
        _refuse_copies_of_annotated(run, pending_files, listed, before)
    progress = Progress("annotate chunk", len(pending))
    reasons: Counter[str] = Counter()
    for n, (index, chunk, app_id) in enumerate(pending, start=1):
        prepared = _prepared_chunk(run, chunk)
        if repeated is not None:
            prepared = reject_later_copies(prepared, repeated, index)
        done = _existing_rows(run.store, run.table, run.version)
        if done is not None:
            listed = listed if listed is not None else listed_files(run.spark, all_files)
            prepared = skip_or_reject_annotated(prepared, done, listed)
        prepared = apply_duplicates(prepared, duplicate_losers(prepared))
        label = f"hermes annotate chunk {n}/{len(pending)}"
        with job_description(run.spark, label):
            written, bad_counts, committed = _write_chunk(run, prepared, app_id, index)
        if not committed:
            report.chunks_skipped += 1
        reasons.update(bad_counts)
        progress.step(written, f"rejects {dict(bad_counts)}" if bad_counts else "")
    if repeated is not None:
        repeated.unpersist()
    return reasons


def _annotate_full(run: _Run, files: tuple[str, ...], report: AnnotateReport) -> Counter[str]:
    """Full mode: re-annotate every document, replace the version's rows in one commit."""
    report.chunks_total = 1
    prepared = _prepared_chunk(run, files)
    if run.options.on_duplicate == "error":
        _refuse_duplicates(prepared)
    prepared = apply_duplicates(prepared, duplicate_losers(prepared))
    with job_description(run.spark, "hermes annotate --mode full"):
        written, bad_counts, _ = _write_chunk(run, prepared, None, 0)
    Progress("annotate full", 1).step(written)
    return Counter(bad_counts)


def _prepared_chunk(run: _Run, files: tuple[str, ...] | list[str]) -> DataFrame:
    raw = read_corpus(run.spark, run.corpus, files)
    return prepare(raw, run.corpus, run.model.codebook.dim)


def _write_chunk(
    run: _Run, prepared: DataFrame, app_id: str | None, index: int
) -> tuple[int, dict[str, int], bool]:
    """Code one chunk once (persisted), commit codes and rejects; ``app_id=None`` replaces
    the version's rows instead (full mode). Returns ``(rows, reject counts, committed)``."""
    version = run.version
    tasks = 2 * default_parallelism(run.spark)
    keep = [keep_name(c) for c in run.corpus.keep_cols]
    coded = code_rows(
        prepared.repartition(tasks, "doc_id"),  # the chunk's text is shuffled once, here
        run.model.codebook,
        run.model.run,
        run.model.roles.inputs(),
        passthrough=keep,
        emit_embedding=run.store_embeddings,
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = {
            r[REASON_COL]: int(r["n"])
            for r in coded.groupBy(REASON_COL).agg(F.count(F.lit(1)).alias("n")).collect()
        }
        n_good = counts.pop(None, 0)
        bad_counts = counts
        good = coded.where(F.col(REASON_COL).isNull())
        codes = _codes_output(good, run)
        n_files = max(1, math.ceil(tasks / 16))
        codes = codes.repartition(n_files, "doc_id")
        meta = {
            "hermes.chunk": str(index),
            VERSION_META: version,
            LEVELS_META: ",".join(map(str, run.model.levels)),
        }
        rejects = _rejects_output(coded, run) if bad_counts or app_id is None else None
        committed = _commit(run, codes, rejects, app_id=app_id, metadata=meta)
        if run.store_embeddings:
            _write_embeddings(run, good, app_id)
        written = n_good if committed else 0
    finally:
        coded.unpersist()
    log.info("chunk %d committed=%s rejects=%s", index + 1, committed, bad_counts)
    return written, bad_counts, committed


def _codes_output(good: DataFrame, run: _Run) -> DataFrame:
    """The codes-table columns in SPEC order (+ lineage and ``--keep-cols``)."""
    n = len(run.model.levels)
    cols = [
        "doc_id",
        *[f"c{k}" for k in range(1, n + 1)],
        *[f"bucket{k}" for k in range(1, n + 1)],
        *[f"qerr{k}" for k in range(1, n + 1)],
        "n_tokens",
        "quality",
        VERSION_COL,
        ANNOTATED_AT_COL,
        SOURCE_COL,
    ]
    keep = [F.col(keep_name(c)).alias(c) for c in run.corpus.keep_cols]
    return good.select(*cols, *keep)


def _rejects_output(coded: DataFrame, run: _Run) -> DataFrame:
    """Rejected rows: ``doc_id, reason, codebook_version, annotated_at, source_file``.

    In incremental mode, rows recorded under another chunking (``files_per_chunk``
    changed, new files listed in between) are not recorded again.
    """
    bad = coded.where(F.col(REASON_COL).isNotNull()).select(
        "doc_id", REASON_COL, VERSION_COL, ANNOTATED_AT_COL, SOURCE_COL
    )
    if run.options.mode != "full" and run.store.exists(run.rejects):
        done = (
            run.store.read(run.rejects)
            .where(F.col(VERSION_COL) == run.version)
            .select("doc_id", REASON_COL, SOURCE_COL)
            .distinct()
        )
        bad = bad.join(done, ["doc_id", REASON_COL, SOURCE_COL], "left_anti")
    # one file per chunk at most: rejects are few; spread them only when they are not
    return bad.repartition(1) if run.options.mode != "full" else bad


def _commit(
    run: _Run,
    codes: DataFrame,
    rejects: DataFrame | None,
    *,
    app_id: str | None,
    metadata: dict[str, str],
) -> bool:
    """Rejects first, then codes (the codes commit marks the chunk done)."""
    store, parts = run.store, (VERSION_COL,)
    if app_id is None:  # full mode: replace this version's rows atomically
        for df, name in ((rejects, run.rejects), (codes, run.table)):
            if df is None:
                continue
            if store.exists(name):
                store.replace_partition(df, name, VERSION_COL, run.version)
            else:
                store.append(df, name, partition_by=parts, metadata=metadata)
        return True
    if rejects is not None:
        store.append(rejects, run.rejects, app_id=app_id, app_version=1, partition_by=parts)
    return store.append(
        codes, run.table, app_id=app_id, app_version=1, partition_by=parts, metadata=metadata
    )


def _write_embeddings(run: _Run, good: DataFrame, app_id: str | None) -> None:
    """The optional float16 vectors table ``<CODES>_embeddings`` (never by default)."""
    name = embeddings_table_name(run.table)
    vectors = good.select("doc_id", VERSION_COL, "embedding_f16")
    if app_id is None and run.store.exists(name):
        run.store.replace_partition(vectors, name, VERSION_COL, run.version)
    else:
        run.store.append(
            vectors,
            name,
            app_id=app_id,
            app_version=1 if app_id else None,
            partition_by=(VERSION_COL,),
        )


def _version_rows(store: DeltaStore, table: str, version: str) -> int:
    """Rows of ``version`` in ``table`` (a count over the version's partition only)."""
    if not store.exists(table):
        return 0
    return store.read(table).where(F.col(VERSION_COL) == version).count()


def _refuse_duplicates(prepared: DataFrame) -> None:
    """``--on-duplicate error``: stop before writing when any valid id repeats."""
    dups = (
        prepared.where(F.col(REASON_COL).isNull())
        .groupBy("doc_id")
        .agg(F.count(F.lit(1)).alias("n"))
        .where(F.col("n") > 1)
    )
    _raise_if_duplicates(dups)


def _raise_if_duplicates(dups: DataFrame) -> None:
    examples = dups.orderBy(F.col("n").desc(), "doc_id").limit(5).collect()
    if examples:
        shown = ", ".join(f"{r['doc_id']!r} x{r['n']}" for r in examples)
        raise InvalidInputError(
            f"the corpus repeats document ids ({shown}, ...) and --on-duplicate is error; "
            "nothing was written. Fix the ids or use --on-duplicate keep-first to keep the "
            "first occurrence"
        )


def _scan_duplicates(
    run: _Run, pending: list[tuple[int, tuple[str, ...], str]]
) -> DataFrame | None:
    """Find ids repeated anywhere in the pending chunks, before any of them is committed.

    ``--on-duplicate error`` refuses the run here. For ``keep-first`` with several pending
    chunks, returns the (cached) ids whose first copy is in an earlier chunk than a later
    copy, so every chunk can reject its later copies; ``None`` when there is nothing to do.
    Costs one scan of the pending files' id and text columns and a shuffle of ids only.
    """
    error = run.options.on_duplicate == "error"
    if not pending or (len(pending) == 1 and not error):
        return None
    files = [f for _, chunk, _ in pending for f in chunk]
    prepared = _prepared_chunk(run, files)
    chunk_files = chunk_of_files(run.spark, [(index, chunk) for index, chunk, _ in pending])
    dups = cross_chunk_duplicates(prepared, chunk_files)
    if error:
        _raise_if_duplicates(dups)
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
    run: _Run, files: list[str], listed: DataFrame, done: DataFrame
) -> None:
    """``--on-duplicate error``: stop before any commit when a document of ``files``
    repeats the id of one an earlier run annotated (``done``: ``doc_id, source_file``)
    from another file still in the corpus (``listed``)."""
    valid = _prepared_chunk(run, files).where(F.col(REASON_COL).isNull())
    copies = skip_or_reject_annotated(valid, done, listed).where(F.col(REASON_COL).isNotNull())
    examples = copies.select("doc_id").orderBy("doc_id").limit(5).collect()
    if examples:
        shown = ", ".join(repr(r["doc_id"]) for r in examples)
        raise InvalidInputError(
            f"the corpus repeats the ids of documents already annotated from other files "
            f"({shown}, ...) and --on-duplicate is error; nothing was written. Fix the ids "
            "or use --on-duplicate keep-first to keep the annotated copies"
        )
