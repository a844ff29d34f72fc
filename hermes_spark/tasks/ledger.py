"""The per-version ledger of finished input files: ``<CODES>_files``.

Driver side. One row per input file an annotate chunk finished for a codebook version:
``codebook_version, file, size, mtime_ns, chunk, recorded_at`` (partitioned by
``codebook_version``). A later run skips every file whose ``(file, size, mtime_ns)`` the
ledger holds without reading the codes table, so a nightly run costs what its new files
cost.

The codes commit stays the source of truth. A chunk's ledger rows are appended right
after its codes commit, under the same Delta application transaction id, so writing them
again is a no-op; a run killed between the two commits leaves the chunk's files pending,
the re-run finds the chunk's transaction in the codes table and records the files then
(nothing is annotated twice: pending documents are checked against the table's ids).
The ledger only ever lags the codes table, never leads it, so a missing row costs a
re-read, never a lost or doubled document.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hermes_spark import io
from hermes_spark.delta import DeltaStore
from hermes_spark.schema import VERSION_COL

log = logging.getLogger(__name__)

LEDGER_SCHEMA = (
    f"{VERSION_COL} string, file string, size bigint, mtime_ns bigint, chunk string, "
    "recorded_at timestamp"
)

FileKey = tuple[str, int, int]


def ledger_table_name(table: str) -> str:
    """``<CODES>_files``: a sibling path or, for a catalog name, a sibling table."""
    return f"{table.rstrip('/')}_files"


def entry_key(entry: io.FileEntry) -> FileKey:
    """What identifies one finished file: URI, size and modification time."""
    return (entry.uri, int(entry.size), int(entry.mtime_ns))


def finished_files(store: DeltaStore, table: str, version: str) -> set[FileKey]:
    """Keys of every file the ledger of ``table`` records for ``version`` (driver).

    One scan of the version's ledger partition; the result has one entry per finished
    input file (never per document).
    """
    name = ledger_table_name(table)
    if not store.exists(name):
        return set()
    rows = (
        store.read(name)
        .where(F.col(VERSION_COL) == version)
        .select("file", "size", "mtime_ns")
        .distinct()
        .collect()
    )
    return {(r["file"], int(r["size"]), int(r["mtime_ns"])) for r in rows}


#: ``file`` of a marker row: the chunk named in ``chunk`` raced another writer and its
#: doubled rows were settled (no real file has this key).
SETTLED_MARK = "hermes:settled"


def recorded_chunks(store: DeltaStore, table: str, version: str) -> set[str]:
    """Transaction ids of every chunk the ledger of ``table`` holds for ``version``
    (recorded files or a settled-race marker; driver, one row per chunk)."""
    name = ledger_table_name(table)
    if not store.exists(name):
        return set()
    rows = (
        store.read(name).where(F.col(VERSION_COL) == version).select("chunk").distinct().collect()
    )
    return {r["chunk"] for r in rows}


def record_settled(
    spark: SparkSession, store: DeltaStore, table: str, version: str, app_ids: Sequence[str]
) -> None:
    """Mark the raced chunks ``app_ids`` as settled (one append of marker rows; driver)."""
    rows = [(version, SETTLED_MARK, 0, 0, app_id) for app_id in sorted(app_ids)]
    frame = spark.createDataFrame(rows, LEDGER_SCHEMA.rsplit(",", 1)[0])
    frame = frame.withColumn("recorded_at", F.current_timestamp()).coalesce(1)
    store.append(frame, ledger_table_name(table), partition_by=(VERSION_COL,))


#: ``file`` of a marker row: every file of the Delta corpus as of version ``size`` was
#: finished by one run (later runs read only files the corpus's log added since).
CORPUS_MARK = "hermes:corpus-version"


def corpus_version(store: DeltaStore, table: str, version: str) -> int | None:
    """The newest Delta corpus version a run of ``version`` finished entirely (driver)."""
    found = _max_mark(store, table, version, CORPUS_MARK, -1)
    return None if found < 0 else found


def record_corpus_version(
    spark: SparkSession, store: DeltaStore, table: str, version: str, corpus_version: int
) -> None:
    """Record that every file of the corpus at ``corpus_version`` is finished (driver)."""
    _append_mark(
        spark, store, table, version, CORPUS_MARK, corpus_version, f"corpus@{corpus_version}"
    )


#: ``file`` of a marker row: every codes commit up to table version ``size`` was checked
#: for unsettled races (a later run reads only the history after it).
RACES_MARK = "hermes:races-checked"


def races_checked(store: DeltaStore, table: str, version: str) -> int:
    """The codes-table version up to which races were checked (-1: never; driver)."""
    return _max_mark(store, table, version, RACES_MARK, -1)


def record_races_checked(
    spark: SparkSession, store: DeltaStore, table: str, version: str, through: int
) -> None:
    """Record that every codes commit up to ``through`` was checked for races (driver)."""
    _append_mark(spark, store, table, version, RACES_MARK, through, f"races@{through}")


def _max_mark(store: DeltaStore, table: str, version: str, mark: str, default: int) -> int:
    name = ledger_table_name(table)
    if not store.exists(name):
        return default
    row = (
        store.read(name)
        .where((F.col(VERSION_COL) == version) & (F.col("file") == mark))
        .agg(F.max("size").alias("v"))
        .first()
    )
    return default if row is None or row["v"] is None else int(row["v"])


def _append_mark(
    spark: SparkSession,
    store: DeltaStore,
    table: str,
    version: str,
    mark: str,
    value: int,
    chunk: str,
) -> None:
    rows = [(version, mark, int(value), 0, chunk)]
    frame = spark.createDataFrame(rows, LEDGER_SCHEMA.rsplit(",", 1)[0])
    frame = frame.withColumn("recorded_at", F.current_timestamp()).coalesce(1)
    store.append(frame, ledger_table_name(table), partition_by=(VERSION_COL,))


def pending_entries(entries: Iterable[io.FileEntry], finished: set[FileKey]) -> list[io.FileEntry]:
    """The listed files the ledger does not hold (a changed size or mtime is pending)."""
    return [e for e in entries if entry_key(e) not in finished]


def _rows_frame(
    spark: SparkSession, version: str, entries: Sequence[io.FileEntry], chunk: str
) -> DataFrame:
    rows = [(version, e.uri, int(e.size), int(e.mtime_ns), chunk) for e in entries]
    frame = spark.createDataFrame(rows, LEDGER_SCHEMA.rsplit(",", 1)[0])
    # a few rows built on the driver: one file per chunk
    return frame.withColumn("recorded_at", F.current_timestamp()).coalesce(1)


def record_chunk(
    spark: SparkSession,
    store: DeltaStore,
    table: str,
    version: str,
    entries: Sequence[io.FileEntry],
    app_id: str,
) -> bool:
    """Append the chunk's files under the chunk's transaction id (idempotent; driver)."""
    frame = _rows_frame(spark, version, entries, app_id)
    return store.append(
        frame,
        ledger_table_name(table),
        app_id=app_id,
        app_version=1,
        partition_by=(VERSION_COL,),
    )


def replace_version(
    spark: SparkSession,
    store: DeltaStore,
    table: str,
    version: str,
    entries: Sequence[io.FileEntry],
) -> None:
    """``--mode full``: the version's ledger becomes exactly ``entries`` (one commit)."""
    name = ledger_table_name(table)
    frame = _rows_frame(spark, version, entries, f"hermes-annotate-full:{version}")
    if store.exists(name):
        store.replace_partition(frame, name, VERSION_COL, version)
    else:
        store.append(frame, name, partition_by=(VERSION_COL,))


def forget_version(store: DeltaStore, table: str, version: str) -> None:
    """Drop the version's ledger rows (its codes rows were dropped)."""
    name = ledger_table_name(table)
    if store.exists(name):
        store.delete(name, f"{VERSION_COL} = '{version}'")
