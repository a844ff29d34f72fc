"""One annotate chunk, coded once and committed: the pieces both modes share.

Driver orchestration. A chunk's rows are coded by :func:`hermes_spark.coding.code_rows`
on executors (persisted once), then its rejects and its codes are committed to the
codes table under the chunk's transaction id (:func:`chunk_app_id`; none in full mode,
which replaces the version's rows), and its files are recorded in the ledger. What is
pending and how a commit is settled is the mode's (:mod:`hermes_spark.tasks.annotate_modes`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hermes_spark import io
from hermes_spark.api import HermesModel
from hermes_spark.coding import code_rows
from hermes_spark.config import AnnotateConfig, CorpusConfig
from hermes_spark.corpus import keep_name, prepare, read_corpus
from hermes_spark.delta import DeltaStore
from hermes_spark.errors import InvalidInputError
from hermes_spark.runtime import default_parallelism
from hermes_spark.schema import (
    ANNOTATED_AT_COL,
    DEVICE_META,
    LEVELS_META,
    REASON_COL,
    SOURCE_COL,
    SOURCE_ROW_COL,
    VERSION_COL,
    VERSION_META,
    embeddings_table_name,
)
from hermes_spark.tasks import ledger, seen

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
class AnnotateRun:
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
    #: whether the codes table records ``source_row`` (every new table does; one created
    #: before the column existed keeps its schema, and export joins its rows by id)
    source_rows: bool = True

    @property
    def version(self) -> str:
        return self.model.version


@dataclass(frozen=True)
class Chunk:
    """One pending chunk: its position among this run's chunks, files and transaction id
    (``None``: the chunk replaces the version's rows, full mode)."""

    index: int
    entries: tuple[io.FileEntry, ...]
    app_id: str | None

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(e.uri for e in self.entries)


def chunk_app_id(version: str, entries: Sequence[io.FileEntry]) -> str:
    """Transaction id of one chunk: codebook version + the chunk's files (name, size, mtime)."""
    h = hashlib.sha256()
    for entry in entries:
        h.update(f"{entry.uri}|{entry.size}|{entry.mtime_ns}\n".encode())
    return f"hermes-annotate:{version}:{h.hexdigest()[:24]}"


def record_files(run: AnnotateRun, chunk: Chunk) -> None:
    """The chunk's files, finished, into the version's ledger (one commit)."""
    assert chunk.app_id is not None, "full mode replaces the ledger instead"
    ledger.record_chunk(run.spark, run.store, run.table, run.version, chunk.entries, chunk.app_id)


def prepared_chunk(run: AnnotateRun, files: Sequence[str], *, shuffled: bool = False) -> DataFrame:
    """The annotate input of ``files`` (lazy). ``shuffled``: hash-partitioned by
    ``doc_id`` — the one shuffle of the text, which the duplicate marking, the broadcast
    joins with the run's hits and the coding all reuse."""
    raw = read_corpus(run.spark, run.corpus, files, store=run.store)
    prepared = prepare(raw, run.corpus, run.model.codebook.dim)
    if shuffled:
        prepared = prepared.repartition(2 * default_parallelism(run.spark), "doc_id")
    return prepared


def write_chunk(
    run: AnnotateRun,
    prepared: DataFrame,
    chunk: Chunk,
    view: seen.Seen | None,
    *,
    after_commit: Callable[[DataFrame], None] | None = None,
    track: DataFrame | None = None,
) -> tuple[int, dict[str, int], bool, DataFrame | None]:
    """Code one chunk once (persisted on executors), commit rejects and codes; a chunk
    without transaction id replaces the version's rows (full mode). ``view``: the run's
    look-up (incremental mode); ``after_commit`` gets the chunk's valid rows once its codes
    committed (the mode's settling). Returns ``(rows, reject counts, committed, the ids of
    track that the chunk wrote)``."""
    version = run.version
    app_id, index = chunk.app_id, chunk.index
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
            write_embeddings(run, good, app_id)
        committed = commit(run, codes, rejects, app_id=app_id, metadata=meta)
        if committed and after_commit is not None:
            after_commit(good)
        written = n_good if committed else 0
        wrote = _written_of(good, track)
    finally:
        coded.unpersist()
    log.info("chunk %d committed=%s rejects=%s", index + 1, committed, bad_counts)
    return written, bad_counts, committed, wrote


def _written_of(good: DataFrame, ids: DataFrame | None) -> DataFrame | None:
    """The ``doc_id`` of ``ids`` (the chunk's ids other pending chunks hold too) that the
    chunk wrote: a join on executors, checkpointed there while the chunk's rows are
    persisted, so later chunks that join it carry no lineage to this chunk's text."""
    if ids is None:
        return None
    wrote = good.join(F.broadcast(ids), "doc_id", "left_semi").select("doc_id").distinct()
    return wrote.localCheckpoint(eager=True)


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


def _codes_output(good: DataFrame, run: AnnotateRun) -> DataFrame:
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
        *([SOURCE_ROW_COL] if run.source_rows else []),
    ]
    keep = [F.col(keep_name(c)).alias(c) for c in run.corpus.keep_cols]
    return good.select(*cols, *keep)


def _rejects_output(coded: DataFrame, run: AnnotateRun, prior: DataFrame | None) -> DataFrame:
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


def commit(
    run: AnnotateRun,
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


def write_embeddings(run: AnnotateRun, good: DataFrame, app_id: str | None) -> None:
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


def version_rows(store: DeltaStore, table: str, version: str) -> int:
    """Rows of ``version`` in ``table`` (a count over the version's partition only)."""
    if not store.exists(table):
        return 0
    return store.read(table).where(F.col(VERSION_COL) == version).count()


def raise_if_duplicates(dups: DataFrame) -> None:
    examples = dups.orderBy(F.col("n").desc(), "doc_id").limit(5).collect()
    if examples:
        shown = ", ".join(f"{r['doc_id']!r} x{r['n']}" for r in examples)
        raise InvalidInputError(
            f"the corpus repeats document ids ({shown}, ...) and {{annotate.on_duplicate}} is "
            "error; nothing was written. Fix the ids or set {annotate.on_duplicate} keep-first "
            "to keep the first occurrence"
        )
