"""Annotate's incremental mode: only what the ledger does not hold, exactly once.

Driver orchestration. Pending are the files the version's ledger ``<CODES>_files``
(:mod:`hermes_spark.tasks.ledger`) does not record as finished (for a Delta corpus whose
version a run finished: only the files its log added since), in chunks
(``annotate.files_per_chunk``) with a transaction id each; a chunk whose codes commit is
in the table already only gets its ledger rows. The ids of all pending files are looked
up in the table once per run (:mod:`hermes_spark.tasks.seen`; again only after another
writer committed) and each chunk joins only its own few hits. After a chunk's commit,
when another writer committed since the look-up, one row per id is kept (the earliest);
raced commits a killed run never settled are settled at the start of the next run.
Ids repeated across the pending chunks are found by one scan of the id column; a chunk
rejects its copies of those an earlier chunk of the run wrote (a join on executors).
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Sequence

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hermes_spark.corpus import (
    InputFiles,
    chunk_entries,
    chunk_of_files,
    cross_chunk_duplicates,
    doc_id_column,
    file_key,
    listed_files,
    mark_repeated_ids,
    read_corpus,
)
from hermes_spark.errors import HermesError, InvalidInputError
from hermes_spark.object_stores import storage_of
from hermes_spark.paths import canonical_file_key, canonical_file_key_col
from hermes_spark.runtime import Progress, job_description
from hermes_spark.schema import REASON_COL, SOURCE_COL
from hermes_spark.tasks import corpus_log, ledger, seen
from hermes_spark.tasks.annotate_write import (
    AnnotateReport,
    AnnotateRun,
    Chunk,
    chunk_app_id,
    prepared_chunk,
    raise_if_duplicates,
    record_files,
    write_chunk,
)

__all__ = ["IncrementalMode", "skip_or_reject_annotated"]

log = logging.getLogger(__name__)


class IncrementalMode:
    """``annotate.mode: incremental``: new files only, one idempotent commit per chunk."""

    name = "incremental"
    replaces = False

    def pending(self, run: AnnotateRun, files: InputFiles, report: AnnotateReport) -> list[Chunk]:
        """Settle raced commits a killed run left, then the chunks still to write."""
        _settle_earlier_races(run, report)  # before any committed chunk is recorded
        return _pending_chunks(run, files, report)

    def look_up(self, run: AnnotateRun, chunks: Sequence[Chunk]) -> seen.Seen:
        """What the tables hold for the ids of ``chunks``."""
        return _look_up(run, chunks)

    def settle(
        self, run: AnnotateRun, view: seen.Seen, good: DataFrame, *, report: AnnotateReport
    ) -> None:
        """After a chunk's codes commit: keep one row per id when another writer raced."""
        _settle(run, view, good, report)

    def annotate(
        self, run: AnnotateRun, chunks: Sequence[Chunk], files: InputFiles, report: AnnotateReport
    ) -> Counter[str]:
        """Write ``chunks`` in order; returns the reject counts by reason."""
        return _annotate_chunks(self, run, chunks, files, report)


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


def _settle_earlier_races(run: AnnotateRun, report: AnnotateReport) -> None:
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


def _pending_chunks(run: AnnotateRun, files: InputFiles, report: AnnotateReport) -> list[Chunk]:
    """Chunks of the files the ledger does not hold; chunks whose codes commit is in the
    table already (a run killed before its ledger commit) get their ledger rows now.

    A Delta corpus whose version a run finished entirely is pending only in the files its
    log added with new rows since then (a compaction's rewrites are not new)."""
    finished = ledger.finished_files(run.store, run.table, run.version)
    pending = ledger.pending_entries(files.entries, finished)
    since = ledger.corpus_version(run.store, run.table, run.version)
    if run.corpus_version is not None and since is not None and since <= run.corpus_version:
        fresh = corpus_log.fresh_files(
            run.corpus.input or "", since, run.corpus_version, storage=storage_of(run.spark)
        )
        if fresh is not None:
            pending = [e for e in pending if canonical_file_key(e.uri) in fresh]
    report.files_finished_before = len(files.entries) - len(pending)
    groups = chunk_entries(pending, run.options.files_per_chunk)
    chunks = [Chunk(i, group, chunk_app_id(run.version, group)) for i, group in enumerate(groups)]
    report.chunks_total = len(chunks)
    todo = []
    for chunk in chunks:
        assert chunk.app_id is not None, "incremental chunks have a transaction id"
        if (run.store.txn_version(run.table, chunk.app_id) or 0) >= 1:
            report.chunks_skipped += 1
            log.info("chunk %s already committed: recording its files", chunk.app_id)
            record_files(run, chunk)
        else:
            todo.append(chunk)
    log.info(
        "%d of %d files finished before; %d chunks to annotate",
        report.files_finished_before,
        len(files.entries),
        len(todo),
    )
    return todo


def _look_up(run: AnnotateRun, chunks: Sequence[Chunk]) -> seen.Seen:
    """What the tables hold for the ids of ``chunks`` (once per run; driver).

    Hits and prior rejects carry the chunk they belong to (``chunk``; null where a file
    key did not match, which every chunk then joins), so a chunk joins only its own.
    """
    version_now = seen.table_version(run.store, run.table)
    ids = _pending_ids(run, chunks)
    hits, n_hits = seen.annotated_hits(run.store, run.table, run.version, ids)
    rejects = seen.prior_rejects(run.store, run.rejects, run.version, _chunk_keys(run, chunks))
    return seen.Seen(hits, rejects, n_hits, version_now)


def _pending_ids(run: AnnotateRun, chunks: Sequence[Chunk]) -> DataFrame:
    """``(doc_id, chunk)`` of every row of ``chunks`` (lazy): a scan of the id column and
    the file name only (Parquet), the chunk from a broadcast of the file keys; null
    where a file key matched none."""
    paths = [p for chunk in chunks for p in chunk.paths]
    raw = read_corpus(run.spark, run.corpus, paths, store=run.store)
    return (
        raw.select(
            doc_id_column(raw.schema, run.corpus).alias("doc_id"),
            canonical_file_key_col(F.col("_metadata.file_path")).alias("file"),
        )
        .join(F.broadcast(_chunk_keys(run, chunks)), "file", "left")
        .drop("file")
    )


def _chunk_keys(run: AnnotateRun, chunks: Sequence[Chunk]) -> DataFrame:
    """``(file, chunk)``: the canonical key of every pending file and its chunk (a few
    rows per chunk, built on the driver from the listing)."""
    rows = [(canonical_file_key(e.uri), c.index) for c in chunks for e in c.entries]
    return run.spark.createDataFrame(rows, "file string, chunk int")


def _annotate_chunks(
    mode: IncrementalMode,
    run: AnnotateRun,
    todo: Sequence[Chunk],
    files: InputFiles,
    report: AnnotateReport,
) -> Counter[str]:
    """One idempotent commit per pending chunk (``todo``), in order (driver)."""
    reasons: Counter[str] = Counter()
    if not todo:
        return reasons
    repeated = _scan_duplicates(run, todo)
    kept: DataFrame | None = None  # ids repeated across chunks that this run wrote
    view = mode.look_up(run, todo)
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
                view = mode.look_up(run, todo[n - 1 :])
                if view.hits is not None and listed is None:
                    listed = listed_files(run.spark, files.paths)
            prepared = prepared_chunk(run, chunk.paths, shuffled=True)
            mine = _chunk_repeats(repeated, chunk)
            if mine is not None and kept is not None:  # ids an earlier chunk committed
                prepared = _reject_copies(prepared, mine.join(kept, "doc_id", "left_semi"))
            if view.hits is not None and listed is not None:
                hits = seen.of_chunk(view.hits, chunk.index)
                prepared = skip_or_reject_annotated(prepared, hits, listed)
            prepared = mark_repeated_ids(prepared)  # co-partitioned: no shuffle
            settle = functools.partial(mode.settle, run, view, report=report)
            with job_description(run.spark, f"hermes annotate chunk {n}/{len(todo)}"):
                written, bad_counts, committed, wrote = write_chunk(
                    run, prepared, chunk, view, after_commit=settle, track=mine
                )
            if wrote is not None:
                kept = wrote if kept is None else kept.unionByName(wrote)
            record_files(run, chunk)
            if not committed:
                report.chunks_skipped += 1
            reasons.update(bad_counts)
            progress.step(written, f"rejects {dict(bad_counts)}" if bad_counts else "")
    finally:
        view.release()
        if repeated is not None:
            repeated.unpersist()
    return reasons


def _chunk_repeats(repeated: DataFrame | None, chunk: Chunk) -> DataFrame | None:
    """``doc_id`` of the ids of ``chunk`` that other pending chunks hold too (lazy, from
    the run's cached id scan; ``None`` when no id repeats across chunks)."""
    if repeated is None:
        return None
    return repeated.where(F.col("chunk") == chunk.index).select("doc_id")


def _reject_copies(prepared: DataFrame, earlier: DataFrame) -> DataFrame:
    """Valid rows whose id is in ``earlier`` (``doc_id``, distinct: an earlier chunk of
    the run wrote it) become later copies (``duplicate_doc_id``); a broadcast join, so
    the chunk's partitioning stays."""
    flagged = earlier.select("doc_id", F.lit(True).alias("_later"))
    later = F.col(REASON_COL).isNull() & F.coalesce(F.col("_later"), F.lit(False))
    return (
        prepared.join(F.broadcast(flagged), "doc_id", "left")
        .withColumn(
            REASON_COL, F.when(later, F.lit("duplicate_doc_id")).otherwise(F.col(REASON_COL))
        )
        .drop("_later")
    )


def _settle(run: AnnotateRun, view: seen.Seen, good: DataFrame, report: AnnotateReport) -> None:
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


def _scan_duplicates(run: AnnotateRun, pending: Sequence[Chunk]) -> DataFrame | None:
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
        prepared = prepared_chunk(run, files)
        chunk_files = chunk_of_files(run.spark, [(chunk.index, chunk.paths) for chunk in pending])
        raise_if_duplicates(cross_chunk_duplicates(prepared, chunk_files))
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
    run: AnnotateRun, chunks: Sequence[Chunk], listed: DataFrame, done: DataFrame
) -> None:
    """``--on-duplicate error``: stop before any commit when a document of ``chunks``
    repeats the id of one an earlier run annotated (``done``: ``doc_id, source_file``)
    from another file still in the corpus (``listed``)."""
    files = [f for chunk in chunks for f in chunk.paths]
    valid = prepared_chunk(run, files).where(F.col(REASON_COL).isNull())
    copies = skip_or_reject_annotated(valid, done, listed).where(F.col(REASON_COL).isNotNull())
    examples = copies.select("doc_id").orderBy("doc_id").limit(5).collect()
    if examples:
        shown = ", ".join(repr(r["doc_id"]) for r in examples)
        raise InvalidInputError(
            f"the corpus repeats the ids of documents already annotated from other files "
            f"({shown}, ...) and {{annotate.on_duplicate}} is error; nothing was written. "
            "Fix the ids or set {annotate.on_duplicate} keep-first to keep the annotated copies"
        )
