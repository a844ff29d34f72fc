"""``hermes annotate``: the resumable, exactly-once codes-table writer over ``transform``.

Driver orchestration. The coding itself is :func:`hermes_spark.coding.code_rows` (the
same stage :meth:`HermesModel.transform` builds). Cost follows the new files, not the
table: the input files are listed once; files the version's ledger ``<CODES>_files``
(:mod:`hermes_spark.tasks.ledger`) records as finished are skipped unread; the rest are
processed in chunks (``annotate.files_per_chunk``), each one Delta commit to the codes
table (and at most one to ``<CODES>_rejects``) tagged with an application transaction
id derived from the codebook version and the chunk's files (name, size, mtime), then its
ledger rows under the same id. The ids of all pending files are checked against the
table once per run (:mod:`hermes_spark.tasks.seen`); each chunk joins only those few
hits. Re-running after a failure skips committed chunks and never writes a document
twice; a writer that raced another one keeps the earliest row of each doubled id.
``--mode full`` instead re-annotates everything and replaces the version's rows (and
rejects, and ledger) in one commit each.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hermes_spark import io
from hermes_spark.api import HermesModel, load_codebook
from hermes_spark.coding import code_rows, gpu_profile, model_settings
from hermes_spark.config import AnnotateConfig, CorpusConfig, HermesConfig
from hermes_spark.corpus import (
    InputFiles,
    check_columns,
    chunk_entries,
    chunk_of_files,
    cross_chunk_duplicates,
    doc_id_column,
    embedding_col_dim,
    file_key,
    keep_name,
    list_input_files,
    listed_files,
    mark_repeated_ids,
    prepare,
    read_corpus,
    require_rows,
)
from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.errors import ArtifactError, HermesError, InvalidInputError
from hermes_spark.paths import canonical_file_key, canonical_file_key_col
from hermes_spark.runtime import Progress, default_parallelism, job_description
from hermes_spark.schema import (
    ANNOTATED_AT_COL,
    DEVICE_META,
    LEVELS_META,
    REASON_COL,
    SOURCE_COL,
    VERSION_COL,
    VERSION_META,
    embeddings_table_name,
    own_columns,
    rejects_table_name,
)
from hermes_spark.tasks import corpus_log, ledger, seen

log = logging.getLogger(__name__)

#: Layout of a new codes table: native Delta clusters it by (codebook_version, bucket1,
#: bucket2) (liquid clustering), so a code-prefix query skips most files; the embedded
#: writer partitions by version. Either way each chunk's files are range-partitioned by
#: these buckets (:func:`clustered_files`) and ``hermes optimize`` clusters the table.
CODES_CLUSTER_BY = ("bucket1", "bucket2")


@dataclass
class AnnotateReport:
    """Counts of one ``annotate`` run (printed by the CLI)."""

    codebook_version: str
    table: str
    rejects_table: str
    mode: str = "incremental"
    files_total: int = 0
    files_finished_before: int = 0
    chunks_total: int = 0
    chunks_skipped: int = 0
    rows_written: int = 0
    rejects_written: int = 0
    reject_reasons: dict[str, int] = field(default_factory=dict)
    duplicates_resolved: int = 0
    device: str = ""
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
    device: str = ""
    #: version of the Delta corpus the listing reflects (None: not a Delta path corpus)
    corpus_version: int | None = None

    @property
    def version(self) -> str:
        return self.model.version


@dataclass(frozen=True)
class _Chunk:
    """One pending chunk: its position among this run's chunks, files and transaction id."""

    index: int
    entries: tuple[io.FileEntry, ...]
    app_id: str

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(e.uri for e in self.entries)


def chunk_app_id(version: str, entries: Sequence[io.FileEntry]) -> str:
    """Transaction id of one chunk: codebook version + the chunk's files (name, size, mtime)."""
    h = hashlib.sha256()
    for entry in entries:
        h.update(f"{entry.uri}|{entry.size}|{entry.mtime_ns}\n".encode())
    return f"hermes-annotate:{version}:{h.hexdigest()[:24]}"


def _check_keep_cols(keep_cols: tuple[str, ...], levels: int) -> None:
    """``--keep-cols`` may not shadow a column of the codes table."""
    clash = sorted(set(keep_cols) & (own_columns(levels) - {REASON_COL}))
    if clash:
        raise InvalidInputError(
            f"--keep-cols {', '.join(clash)}: the codes table has its own column(s) of that "
            "name; rename them in the corpus or leave them out"
        )


def skip_or_reject_annotated(prepared: DataFrame, done: DataFrame, listed: DataFrame) -> DataFrame:
    """Rows whose id already has a row of this version (incremental runs, resumed runs).

    ``done`` holds ``(doc_id, source_file)`` of those rows (the run's few hits, see
    :func:`hermes_spark.tasks.seen.annotated_hits`; broadcast). A later copy is a row from
    another file than the annotated row's, while that file is still part of the corpus
    (``listed``): rejected as ``duplicate_doc_id`` (the copy committed first stays), so a
    resumed run ends with the same rejects as one uninterrupted run. Otherwise it is the
    annotated document itself, listed again (same file) or moved (its old file is gone,
    e.g. compacted): skipped, at no cost.
    """
    still_listed = listed.select(F.col("file").alias("_seen_key"), F.lit(True).alias("_listed"))
    seen_rows = (
        done.select("doc_id", F.col(SOURCE_COL).alias("_seen_in"))
        .withColumn("_seen_key", file_key(F.col("_seen_in")))
        .join(F.broadcast(still_listed), "_seen_key", "left")
        .drop("_seen_key")
    )
    joined = prepared.join(F.broadcast(seen_rows), "doc_id", "left")  # the chunk's few hits
    valid = F.col(REASON_COL).isNull()
    seen_in = F.col("_seen_in")
    other_file = seen_in != F.col(SOURCE_COL)
    copy = F.coalesce(valid & other_file & F.col("_listed"), F.lit(False))
    skip = F.coalesce(valid & seen_in.isNotNull() & ~copy, F.lit(False))
    reason = F.when(copy, F.lit("duplicate_doc_id")).otherwise(F.col(REASON_COL))
    return joined.where(~skip).withColumn(REASON_COL, reason).drop("_seen_in", "_listed")


def model_for(cfg: HermesConfig, codebook_path: str) -> HermesModel:
    """The artifact at ``codebook_path`` with this run's column roles and run options."""
    return HermesModel(load_codebook(codebook_path)).with_config(cfg)


def annotate(
    spark: SparkSession,
    cfg: HermesConfig,
    codebook_path: str,
    table: str,
    *,
    store_embeddings: bool = False,
) -> AnnotateReport:
    """Annotate ``cfg.corpus`` with the codebook at ``codebook_path`` into ``table``,
    writing with ``cfg.delta`` (engine, rows per file, sort columns, ...)."""
    model = model_for(cfg, codebook_path)
    return annotate_table(
        spark,
        model,
        cfg.corpus,
        table,
        cfg.annotate,
        store_embeddings=store_embeddings,
        codebook_path=codebook_path,
        store=get_store(spark, settings=cfg.delta),
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
    store: DeltaStore | None = None,
) -> AnnotateReport:
    """Write ``model``'s codes for the corpus files of ``corpus`` into ``table`` (driver),
    through ``store`` (default: the session's, :func:`~hermes_spark.delta.get_store`).

    Checks columns, dimensions and table writability before any heavy job.
    """
    t0 = time.perf_counter()
    listed_at = _delta_corpus_version(corpus)
    files = list_input_files(corpus, spark)  # listed once per run
    if listed_at is not None and _delta_corpus_version(corpus) != listed_at:
        listed_at = None  # a commit landed while listing: no version to record
    store = store or get_store(spark)
    run = _Run(spark, model, corpus, options, store, table, rejects_table_name(table))
    run = dataclasses.replace(run, corpus_version=listed_at)
    for name in (table, run.rejects, ledger.ledger_table_name(table)):
        store.check_writable(name)
    report = AnnotateReport(model.version, table, run.rejects, mode=options.mode)
    report.files_total = len(files.paths)
    if options.mode != "full":
        _settle_earlier_races(run, report)  # before any committed chunk is recorded
    rows_before = _version_rows(store, table, model.version)
    todo = [] if options.mode == "full" else _pending_chunks(run, files, report)
    probe_paths = files.paths if options.mode == "full" else [p for c in todo for p in c.paths]
    if probe_paths:  # only the files this run reads: finished files are never opened
        probe = read_corpus(spark, corpus, probe_paths)
        check_columns(probe.schema, corpus, embedding_dim=model.codebook.dim)
        if options.mode == "full" or report.files_finished_before == 0:
            require_rows(probe, corpus)  # (an empty new file of a known corpus is fine)
        _check_dim(probe, corpus, model, codebook_path)
        _check_keep_cols(corpus.keep_cols, len(model.levels))
        report.device = embedding_device(spark, model, corpus)
        run = dataclasses.replace(run, store_embeddings=store_embeddings, device=report.device)
    if options.mode == "full":
        reasons = _annotate_full(run, files, report)
    else:
        reasons = _annotate_chunks(run, todo, files, report)
    if listed_at is not None and ledger.corpus_version(store, table, model.version) != listed_at:
        ledger.record_corpus_version(spark, store, table, model.version, listed_at)
    report.reject_reasons = dict(reasons)
    report.rejects_written = sum(reasons.values())
    report.table_rows = _version_rows(store, table, model.version)
    report.rows_written = report.table_rows - (0 if options.mode == "full" else rows_before)
    _describe(store, table, run.rejects, model.version, model.levels)
    report.seconds = time.perf_counter() - t0
    return report


def _describe(store: DeltaStore, table: str, rejects: str, version: str, levels: Any) -> None:
    """Comments and properties on the codes and rejects tables (metadata commits only
    where they changed)."""
    from hermes_spark.delta.describe import describe_table

    props = {"codebook_version": version, "levels": ",".join(map(str, levels))}
    describe_table(store, table, "codes", props)
    if store.exists(rejects):
        describe_table(store, rejects, "rejects", props)


def embedding_device(spark: SparkSession, model: HermesModel, corpus: CorpusConfig) -> str:
    """Device, backend and precision the executors embed with (``cpu:fp32``,
    ``cuda:fp16``, ``cpu:onnx-int8``; :func:`hermes_spark.embedding.device.device_label`).

    ``given`` when the corpus brings its vectors (no model runs). Otherwise one tiny job,
    under the embedding stage's resource profile, asks the executors' tasks which device
    their resources give the artifact's backend; several answers are joined with ``+``
    (a mixed cluster). Recorded in every commit.
    """
    if corpus.embedding_col:
        return "given"
    settings = model_settings(model.codebook, model.run)
    tasks = default_parallelism(spark)

    def probe(batches: Any) -> Any:
        import pandas as pd

        from hermes_spark.embedding.device import device_label

        for _ in batches:
            pass
        label = device_label(settings.backend, settings.precision, settings.device)
        yield pd.DataFrame({"device": [label]})

    frame = spark.range(0, tasks, 1, tasks)
    profile = gpu_profile(frame, model.run, model.roles.inputs())
    probed = (
        frame.mapInPandas(probe, "device string", profile=profile)
        if profile is not None
        else frame.mapInPandas(probe, "device string")
    )
    return "+".join(sorted(r["device"] for r in probed.distinct().collect()))


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


def _settle_earlier_races(run: _Run, report: AnnotateReport) -> None:
    """Settle chunk commits that raced another writer and were never settled (driver).

    A writer killed between a raced commit and its resolution leaves doubled rows and no
    ledger rows for that chunk; the history after the last check names such commits, and
    the whole version is then checked once for doubled ids (a narrow scan, only after
    such a kill). The check's table version is recorded, so the history is read once.
    """
    checked = ledger.races_checked(run.store, run.table, run.version)
    raced, now = seen.raced_commits(run.store, run.table, run.version, after=checked)
    if now <= checked:
        return
    unsettled = set(raced) - ledger.recorded_chunks(run.store, run.table, run.version)
    if unsettled:
        log.warning("%d raced chunk commits were never settled: settling them", len(unsettled))
        report.duplicates_resolved += seen.resolve_duplicates(
            run.store, run.table, run.version, None
        )
        ledger.record_settled(run.spark, run.store, run.table, run.version, sorted(unsettled))
    ledger.record_races_checked(run.spark, run.store, run.table, run.version, now)


def _delta_corpus_version(corpus: CorpusConfig) -> int | None:
    """The current version of a Delta path corpus (None for any other corpus)."""
    if corpus.format != "delta" or corpus.table or not corpus.input:
        return None
    return corpus_log.table_version(corpus.input)


def _pending_chunks(run: _Run, files: InputFiles, report: AnnotateReport) -> list[_Chunk]:
    """Chunks of the files the ledger does not hold; chunks whose codes commit is in the
    table already (a run killed before its ledger commit) get their ledger rows now.

    A Delta corpus whose version a run finished entirely is pending only in the files its
    log added with new rows since then (a compaction's rewrites are not new)."""
    finished = ledger.finished_files(run.store, run.table, run.version)
    pending = ledger.pending_entries(files.entries, finished)
    since = ledger.corpus_version(run.store, run.table, run.version)
    if run.corpus_version is not None and since is not None and since <= run.corpus_version:
        fresh = corpus_log.fresh_files(run.corpus.input or "", since, run.corpus_version)
        if fresh is not None:
            pending = [e for e in pending if canonical_file_key(e.uri) in fresh]
    report.files_finished_before = len(files.entries) - len(pending)
    groups = chunk_entries(pending, run.options.files_per_chunk)
    chunks = [_Chunk(i, group, chunk_app_id(run.version, group)) for i, group in enumerate(groups)]
    report.chunks_total = len(chunks)
    todo = []
    for chunk in chunks:
        if (run.store.txn_version(run.table, chunk.app_id) or 0) >= 1:
            report.chunks_skipped += 1
            log.info("chunk %s already committed: recording its files", chunk.app_id)
            _record_files(run, chunk)
        else:
            todo.append(chunk)
    log.info(
        "%d of %d files finished before; %d chunks to annotate",
        report.files_finished_before,
        len(files.entries),
        len(todo),
    )
    return todo


def _record_files(run: _Run, chunk: _Chunk) -> None:
    ledger.record_chunk(run.spark, run.store, run.table, run.version, chunk.entries, chunk.app_id)


def _look_up(run: _Run, chunks: Sequence[_Chunk]) -> seen.Seen:
    """What the tables hold for the ids of ``chunks`` (once per run; driver).

    Hits and prior rejects carry the chunk they belong to (``chunk``; null where a file
    key did not match, which every chunk then joins), so a chunk joins only its own.
    """
    version_now = seen.table_version(run.store, run.table)
    ids = _pending_ids(run, chunks)
    hits, n_hits = seen.annotated_hits(run.store, run.table, run.version, ids)
    rejects = seen.prior_rejects(run.store, run.rejects, run.version, _chunk_keys(run, chunks))
    return seen.Seen(hits, rejects, n_hits, version_now)


def _pending_ids(run: _Run, chunks: Sequence[_Chunk]) -> DataFrame:
    """``(doc_id, chunk)`` of every row of ``chunks`` (lazy): a scan of the id column and
    the file name only (Parquet), the chunk from a broadcast of the file keys; null
    where a file key matched none."""
    paths = [p for chunk in chunks for p in chunk.paths]
    raw = read_corpus(run.spark, run.corpus, paths)
    return (
        raw.select(
            doc_id_column(raw.schema, run.corpus).alias("doc_id"),
            canonical_file_key_col(F.col("_metadata.file_path")).alias("file"),
        )
        .join(F.broadcast(_chunk_keys(run, chunks)), "file", "left")
        .drop("file")
    )


def _chunk_keys(run: _Run, chunks: Sequence[_Chunk]) -> DataFrame:
    """``(file, chunk)``: the canonical key of every pending file and its chunk (a few
    rows per chunk, built on the driver from the listing)."""
    rows = [(canonical_file_key(e.uri), c.index) for c in chunks for e in c.entries]
    return run.spark.createDataFrame(rows, "file string, chunk int")


def _annotate_chunks(
    run: _Run, todo: list[_Chunk], files: InputFiles, report: AnnotateReport
) -> Counter[str]:
    """Incremental mode: one idempotent commit per pending chunk (``todo``)."""
    reasons: Counter[str] = Counter()
    if not todo:
        return reasons
    repeated = _scan_duplicates(run, todo)
    kept: set[str] = set()  # ids repeated across chunks that a chunk of this run wrote
    view = _look_up(run, todo)
    listed: DataFrame | None = None  # the corpus's files, listed when first needed
    if view.hits is not None:
        listed = listed_files(run.spark, files.paths)
        if run.options.on_duplicate == "error":
            _refuse_copies_of_annotated(run, todo, listed, view.hits)
    progress = Progress("annotate chunk", len(todo))
    try:
        for n, chunk in enumerate(todo, start=1):
            if seen.table_version(run.store, run.table) != view.table_version:
                log.info("another writer committed to %s: looking up ids again", run.table)
                view.release()
                view = _look_up(run, todo[n - 1 :])
                if view.hits is not None and listed is None:
                    listed = listed_files(run.spark, files.paths)
            prepared = _prepared_chunk(run, chunk.paths, shuffled=True)
            mine = _chunk_repeats(run, repeated, chunk)
            if mine:  # ids of this chunk that an earlier chunk of this run committed
                prepared = _reject_copies(run, prepared, sorted(set(mine) & kept))
            if view.hits is not None and listed is not None:
                hits = seen.of_chunk(view.hits, chunk.index)
                prepared = skip_or_reject_annotated(prepared, hits, listed)
            prepared = mark_repeated_ids(prepared)  # co-partitioned: no shuffle
            label = f"hermes annotate chunk {n}/{len(todo)}"
            with job_description(run.spark, label):
                written, bad_counts, committed, wrote = _write_chunk(
                    run, prepared, chunk, view, report, track=mine
                )
            kept.update(wrote)
            _record_files(run, chunk)
            if not committed:
                report.chunks_skipped += 1
            reasons.update(bad_counts)
            progress.step(written, f"rejects {dict(bad_counts)}" if bad_counts else "")
    finally:
        view.release()
        if repeated is not None:
            repeated.unpersist()
    return reasons


def _annotate_full(run: _Run, files: InputFiles, report: AnnotateReport) -> Counter[str]:
    """Full mode: re-annotate every document, replace the version's rows in one commit."""
    report.chunks_total = 1
    prepared = _prepared_chunk(run, files.paths, shuffled=True)
    if run.options.on_duplicate == "error":
        _refuse_duplicates(prepared)
    prepared = mark_repeated_ids(prepared)
    with job_description(run.spark, "hermes annotate --mode full"):
        written, bad_counts, _, _ = _write_chunk(run, prepared, None, None, report)
    ledger.replace_version(run.spark, run.store, run.table, run.version, files.entries)
    Progress("annotate full", 1).step(written)
    return Counter(bad_counts)


def _prepared_chunk(run: _Run, files: Sequence[str], *, shuffled: bool = False) -> DataFrame:
    """The annotate input of ``files`` (lazy). ``shuffled``: hash-partitioned by
    ``doc_id`` — the one shuffle of the text, which the duplicate marking, the broadcast
    joins with the run's hits and the coding all reuse."""
    raw = read_corpus(run.spark, run.corpus, files)
    prepared = prepare(raw, run.corpus, run.model.codebook.dim)
    if shuffled:
        prepared = prepared.repartition(2 * default_parallelism(run.spark), "doc_id")
    return prepared


def _write_chunk(
    run: _Run,
    prepared: DataFrame,
    chunk: _Chunk | None,
    view: seen.Seen | None,
    report: AnnotateReport,
    *,
    track: Sequence[str] = (),
) -> tuple[int, dict[str, int], bool, list[str]]:
    """Code one chunk once (persisted), commit codes and rejects; ``chunk=None`` replaces
    the version's rows instead (full mode). Returns ``(rows, reject counts, committed,
    the ids of track that the chunk wrote)``."""
    version = run.version
    app_id = None if chunk is None else chunk.app_id
    index = 0 if chunk is None else chunk.index
    keep = [keep_name(c) for c in run.corpus.keep_cols]
    coded = code_rows(
        prepared,  # hash-partitioned by doc_id: the chunk's one shuffle of its text
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
        tasks = 2 * default_parallelism(run.spark)  # without rows_per_file: files per chunk
        codes = clustered_files(_codes_output(good, run), n_good, run.store, tasks)
        meta = {
            "hermes.chunk": str(index),
            VERSION_META: version,
            LEVELS_META: ",".join(map(str, run.model.levels)),
            DEVICE_META: run.device,
        }
        if view is not None:  # a later run tells a raced commit by this (see _settle)
            meta[seen.LOOKED_UP_META] = str(view.table_version)
        prior = None if view is None or view.rejects is None else seen.of_chunk(view.rejects, index)
        rejects = _rejects_output(coded, run, prior) if bad_counts or app_id is None else None
        if run.store_embeddings:  # side table first: the codes commit marks the chunk done
            _write_embeddings(run, good, app_id)
        committed = _commit(run, codes, rejects, app_id=app_id, metadata=meta)
        if committed and view is not None:
            _settle(run, view, good, report)
        written = n_good if committed else 0
        wrote = _written_of(run, good, track)
    finally:
        coded.unpersist()
    log.info("chunk %d committed=%s rejects=%s", index + 1, committed, bad_counts)
    return written, bad_counts, committed, wrote


def _written_of(run: _Run, good: DataFrame, ids: Sequence[str]) -> list[str]:
    """Which of ``ids`` (a chunk's ids repeated in other chunks; few) the chunk wrote."""
    if not ids:
        return []
    wanted = run.spark.createDataFrame([(i,) for i in ids], "doc_id string")
    rows = good.join(F.broadcast(wanted), "doc_id", "left_semi").select("doc_id").distinct()
    return [r["doc_id"] for r in rows.collect()]


def _chunk_repeats(run: _Run, repeated: DataFrame | None, chunk: _Chunk) -> list[str]:
    """The ids of ``chunk`` that other pending chunks hold too (from the run's id scan)."""
    if repeated is None:
        return []
    rows = repeated.where(F.col("chunk") == chunk.index).select("doc_id").collect()
    return [r["doc_id"] for r in rows]


def _reject_copies(run: _Run, prepared: DataFrame, ids: Sequence[str]) -> DataFrame:
    """Valid rows whose id is in ``ids`` (an earlier chunk wrote it) become later copies
    (``duplicate_doc_id``); a broadcast join, so the chunk's partitioning stays."""
    if not ids:
        return prepared
    earlier = run.spark.createDataFrame([(i, True) for i in ids], "doc_id string, _later boolean")
    later = F.col(REASON_COL).isNull() & F.coalesce(F.col("_later"), F.lit(False))
    return (
        prepared.join(F.broadcast(earlier), "doc_id", "left")
        .withColumn(
            REASON_COL, F.when(later, F.lit("duplicate_doc_id")).otherwise(F.col(REASON_COL))
        )
        .drop("_later")
    )


def clustered_files(codes: DataFrame, rows: int, store: DeltaStore, tasks: int) -> DataFrame:
    """A chunk's codes laid out for code-prefix reads: range-partitioned by
    ``CODES_CLUSTER_BY`` so each file holds a narrow run of ``(bucket1, bucket2)`` (the
    store then sorts within each file) and ``bucket1 = k`` reads few files.

    Lazy: Spark samples the bucket ranges (a small job over the chunk's persisted rows)
    and shuffles the codes (not the text) once on executors. Files are sized by rows
    (``delta.rows_per_file``, the key that caps every table's files), else one per task.
    """
    per_file = store.options.rows_per_file
    files = max(1, math.ceil(rows / per_file)) if per_file else tasks
    return codes.repartitionByRange(files, *CODES_CLUSTER_BY)


def _settle(run: _Run, view: seen.Seen, good: DataFrame, report: AnnotateReport) -> None:
    """After a chunk's codes commit: when another writer committed between this run's
    id look-up and its commit, keep one row per id of the chunk (the earliest)."""
    before = view.table_version
    after = seen.table_version(run.store, run.table)
    if after == before + 1:
        view.table_version = after  # only this commit happened: the look-up still holds
        return
    log.info("%s moved from version %d to %d during the chunk", run.table, before, after)
    report.duplicates_resolved += seen.resolve_duplicates(
        run.store, run.table, run.version, good.select("doc_id")
    )
    # view.table_version stays behind: the next chunk looks the ids up again


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


def _rejects_output(coded: DataFrame, run: _Run, prior: DataFrame | None) -> DataFrame:
    """Rejected rows: ``doc_id, reason, codebook_version, annotated_at, source_file``.

    In incremental mode, rows recorded before (``prior``: the run's look-up of the
    rejects of its pending files, e.g. under another chunking) are not recorded again.
    """
    bad = coded.where(F.col(REASON_COL).isNotNull()).select(
        "doc_id", REASON_COL, VERSION_COL, ANNOTATED_AT_COL, SOURCE_COL
    )
    if run.options.mode != "full" and prior is not None:
        bad = bad.join(prior, ["doc_id", REASON_COL, SOURCE_COL], "left_anti")
    # one file per chunk at most: a chunk's rejects are few (full mode: spread them)
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
                clusters = CODES_CLUSTER_BY if name == run.table else ()
                store.append(df, name, partition_by=parts, metadata=metadata, cluster_by=clusters)
        return True
    if rejects is not None:
        store.append(rejects, run.rejects, app_id=app_id, app_version=1, partition_by=parts)
    return store.append(
        codes,
        run.table,
        app_id=app_id,
        app_version=1,
        partition_by=parts,
        metadata=metadata,
        cluster_by=CODES_CLUSTER_BY,
    )


def _write_embeddings(run: _Run, good: DataFrame, app_id: str | None) -> None:
    """The optional float16 vectors table ``<CODES>_embeddings`` (never by default).

    Written before the chunk's codes commit, under the chunk's transaction id: a run
    killed between the two redoes the chunk, and this append is then a no-op."""
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


def _scan_duplicates(run: _Run, pending: Sequence[_Chunk]) -> DataFrame | None:
    """Find ids repeated across the pending chunks, before any of them is committed.

    ``--on-duplicate error`` refuses the run here (one scan of the pending files' id and
    text columns: validity decides what counts). For ``keep-first`` with several pending
    chunks, returns the (cached) ``(doc_id, chunk)`` of every id held by more than one
    chunk, from a scan of the id column only; each chunk then rejects its copies of the
    ids an earlier chunk of the run wrote (the first valid copy wins, as one chunk would
    decide). ``None`` when there is nothing to do.
    """
    error = run.options.on_duplicate == "error"
    if not pending or (len(pending) == 1 and not error):
        return None
    if error:
        files = [f for chunk in pending for f in chunk.paths]
        prepared = _prepared_chunk(run, files)
        chunk_files = chunk_of_files(run.spark, [(chunk.index, chunk.paths) for chunk in pending])
        _raise_if_duplicates(cross_chunk_duplicates(prepared, chunk_files))
        return None
    ids = _pending_ids(run, pending).where(F.col("doc_id").isNotNull())
    ids = ids.select("doc_id", "chunk").distinct().persist(StorageLevel.MEMORY_AND_DISK)
    try:
        if ids.where(F.col("chunk").isNull()).limit(1).count():
            raise HermesError(
                "the corpus files Spark read do not match the files listed for the run's "
                "chunks (file keys differ); nothing was written. Please report this with "
                "the corpus URI"
            )
        multi = ids.groupBy("doc_id").agg(F.count(F.lit(1)).alias("n")).where(F.col("n") > 1)
        across = ids.join(multi.select("doc_id"), "doc_id", "left_semi").cache()
        n = across.count()
    finally:
        ids.unpersist()
    log.info("%d (id, chunk) pairs repeat across the %d pending chunks", n, len(pending))
    if n == 0:
        across.unpersist()
        return None
    return across


def _refuse_copies_of_annotated(
    run: _Run, chunks: Sequence[_Chunk], listed: DataFrame, done: DataFrame
) -> None:
    """``--on-duplicate error``: stop before any commit when a document of ``chunks``
    repeats the id of one an earlier run annotated (``done``: ``doc_id, source_file``)
    from another file still in the corpus (``listed``)."""
    files = [f for chunk in chunks for f in chunk.paths]
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
