"""What the codes and rejects tables already hold for the documents of this run.

Driver orchestration of small Spark jobs, built **once per run** (and again only when
another writer commits meanwhile), never once per chunk:

* :func:`annotated_hits` — ``(doc_id, source_file)`` of the version's rows whose id is
  among the ids of the pending files. The pending ids (a compact key set, broadcast when
  small) probe the table's ``doc_id`` column once; each chunk then joins its rows against
  these few hits instead of against the whole table.
* :func:`prior_rejects` — rejects already recorded for rows of the pending files.
* :func:`resolve_duplicates` — after a commit that raced another writer, the version keeps
  exactly one row per id of the chunk: the earliest annotated (deterministic, so two
  writers resolving at once delete the same rows).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hermes_spark.corpus import file_key
from hermes_spark.delta import DeltaStore
from hermes_spark.errors import ConflictError, InvalidInputError
from hermes_spark.schema import ANNOTATED_AT_COL, REASON_COL, SOURCE_COL, VERSION_COL

log = logging.getLogger(__name__)

#: Pending ids up to this many are broadcast to the table scan; more are shuffle-joined
#: (Spark's runtime Bloom filter then prunes the table side).
BROADCAST_IDS = 2_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Seen:
    """The run's view of what the tables already hold for its pending documents."""

    hits: DataFrame | None  # doc_id, source_file (cached) or None when there are none
    rejects: DataFrame | None  # doc_id, reason, source_file (cached) or None
    n_hits: int = 0
    table_version: int = -1  # codes-table version the hits reflect (-1: no table)

    def release(self) -> None:
        """Unpersist the cached frames."""
        for frame in (self.hits, self.rejects):
            if frame is not None:
                frame.unpersist()


def table_version(store: DeltaStore, table: str) -> int:
    """Current Delta version of ``table``; -1 when it does not exist yet (driver)."""
    return store.version(table) if store.exists(table) else -1


def annotated_hits(
    store: DeltaStore, table: str, version: str, pending_ids: DataFrame
) -> tuple[DataFrame | None, int]:
    """``(doc_id, source_file)`` of ``version``'s rows whose id is in ``pending_ids``.

    ``pending_ids`` has a ``doc_id`` column (the pending files' ids, any duplicates). One
    job counts the distinct ids, one scans the table's ``doc_id, source_file`` columns of
    the version's partition against them; the (few) hits are cached for the run.
    """
    if not store.exists(table):
        return None, 0
    df = store.read(table)
    missing = {VERSION_COL, SOURCE_COL} - set(df.columns)
    if missing:
        raise InvalidInputError(
            f"table {table} has no {', '.join(sorted(missing))} column: not a codes table "
            "of this hermes version"
        )
    ids = pending_ids.select("doc_id").where(F.col("doc_id").isNotNull()).distinct()
    ids = ids.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n_ids = ids.count()
        if n_ids == 0:
            return None, 0
        keys = F.broadcast(ids) if n_ids <= BROADCAST_IDS else ids
        hits = (
            df.where(F.col(VERSION_COL) == version)
            .select("doc_id", SOURCE_COL)
            .join(keys, "doc_id", "left_semi")
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        n_hits = hits.count()
    finally:
        ids.unpersist()
    log.info("%d of %d pending ids already have a row of %s", n_hits, n_ids, version)
    if n_hits == 0:
        hits.unpersist()
        return None, 0
    return hits, n_hits


def prior_rejects(
    store: DeltaStore, rejects_table: str, version: str, pending_files: DataFrame
) -> DataFrame | None:
    """Rejects of ``version`` already recorded for rows of the pending files (cached).

    ``pending_files`` holds the pending files' keys (:func:`file_key`) in ``file``; the
    version's rejects partition is scanned once per run.
    """
    if not store.exists(rejects_table):
        return None
    done = (
        store.read(rejects_table)
        .where(F.col(VERSION_COL) == version)
        .select("doc_id", REASON_COL, SOURCE_COL)
        .withColumn("_file", file_key(F.col(SOURCE_COL)))
        .join(F.broadcast(pending_files.select(F.col("file").alias("_file"))), "_file")
        .drop("_file")
        .distinct()
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    if done.count() == 0:
        done.unpersist()
        return None
    return done


def resolve_duplicates(store: DeltaStore, table: str, version: str, chunk_ids: DataFrame) -> int:
    """Keep one row per id of ``chunk_ids`` in ``version``: the earliest annotated.

    Run after a commit that another writer's commit may have raced (driver; one scan of
    the version's ``doc_id, annotated_at`` for the chunk's ids, then a delete of the later
    copies). Both writers apply the same rule, so resolving twice deletes nothing more.
    Returns the rows deleted.
    """
    rows = (
        store.read(table)
        .where(F.col(VERSION_COL) == version)
        .select("doc_id", ANNOTATED_AT_COL)
        .join(F.broadcast(chunk_ids.select("doc_id").distinct()), "doc_id", "left_semi")
        .groupBy("doc_id")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.unix_micros(F.min(ANNOTATED_AT_COL)).alias("first"),
        )
        .where(F.col("n") > 1)
        .collect()
    )
    if not rows:
        return 0
    unsafe = [r["doc_id"] for r in rows if "\\" in r["doc_id"]]
    if unsafe:
        raise ConflictError(
            f"a concurrent annotate run committed {len(rows)} documents of {version} that "
            f"this run committed too (e.g. {unsafe[:3]!r}); their ids cannot be deleted by "
            "predicate. Drop the version (hermes versions --drop) and re-run"
        )
    deleted = store.delete(table, _later_copies_predicate(version, rows))
    log.warning(
        "%s: %d ids of %s were committed by two writers; deleted %d later copies",
        table,
        len(rows),
        version,
        deleted,
    )
    return deleted


def _later_copies_predicate(version: str, rows: Sequence[object]) -> str:
    def quote(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    clauses = []
    for r in rows:
        micros = int(r["first"])  # type: ignore[index]
        first = (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%f")
        clauses.append(
            f"(doc_id = {quote(r['doc_id'])} AND "  # type: ignore[index]
            f"{ANNOTATED_AT_COL} > '{first}Z')"  # a string literal: both engines cast it
        )
    return f"{VERSION_COL} = {quote(version)} AND ({' OR '.join(clauses)})"
