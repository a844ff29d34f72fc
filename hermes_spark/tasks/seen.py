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
  writers resolving at once delete the same rows), deleted by a MERGE on the doubled ids.
* :func:`raced_commits` — chunk commits of the history that raced another writer; a run
  settles those nobody settled (their writer was killed after committing) at its start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hermes_spark.corpus import file_key
from hermes_spark.delta import DeltaStore
from hermes_spark.delta.store import parse_txn_marker
from hermes_spark.errors import InvalidInputError
from hermes_spark.schema import (
    ANNOTATED_AT_COL,
    REASON_COL,
    SOURCE_COL,
    VERSION_COL,
    VERSION_META,
)

log = logging.getLogger(__name__)

#: Pending ids up to this many are broadcast to the table scan; more are shuffle-joined
#: (Spark's runtime Bloom filter then prunes the table side).
BROADCAST_IDS = 2_000_000
#: Commit metadata of a chunk: the codes-table version its run's id look-up reflected.
LOOKED_UP_META = "hermes.looked_up"


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


def doubled_ids(store: DeltaStore, table: str, version: str, ids: DataFrame | None) -> DataFrame:
    """``(doc_id, first_at, first_file)`` of every id with more than one row of ``version``.

    Lazy; runs on executors: one scan of the version's ``doc_id, annotated_at,
    source_file`` (joined with ``ids`` when given — a shuffle join, never a broadcast of
    a chunk's ids) and a shuffle of those narrow columns. The keeper of an id is its
    earliest annotated row (ties: the lowest ``source_file``), the same for every writer.
    """
    rows = (
        store.read(table)
        .where(F.col(VERSION_COL) == version)
        .select("doc_id", ANNOTATED_AT_COL, SOURCE_COL)
    )
    if ids is not None:
        rows = rows.join(ids.select("doc_id").distinct(), "doc_id", "left_semi")
    first = F.min(F.struct(F.col(ANNOTATED_AT_COL).alias("at"), F.col(SOURCE_COL).alias("file")))
    return (
        rows.groupBy("doc_id")
        .agg(F.count(F.lit(1)).alias("n"), first.alias("first"))
        .where(F.col("n") > 1)
        .select(
            "doc_id",
            F.col("first.at").alias("first_at"),
            F.col("first.file").alias("first_file"),
        )
    )


#: The rows of a doubled id that are not its keeper (aliases: ``t`` table, ``s`` doubles).
_LATER_COPY = (
    "t.doc_id = s.doc_id AND t.{version_col} = '{version}' AND "
    f"(t.{ANNOTATED_AT_COL} > s.first_at OR (t.{ANNOTATED_AT_COL} = s.first_at AND "
    f"t.{SOURCE_COL} > s.first_file))"
)


def resolve_duplicates(
    store: DeltaStore, table: str, version: str, chunk_ids: DataFrame | None
) -> int:
    """Keep one row per doubled id of ``version``: the earliest annotated (driver).

    ``chunk_ids`` restricts the check to one chunk's ids (after a commit that raced
    another writer); ``None`` checks the whole version (settling a race found in the
    history). The later copies are deleted by a MERGE on the doubled ids
    (:meth:`DeltaStore.delete_matched`). Every writer applies the same rule, so resolving
    twice deletes nothing more. Returns the rows deleted.
    """
    doubles = doubled_ids(store, table, version, chunk_ids).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n = doubles.count()
        if n == 0:
            return 0
        quoted = version.replace("'", "''")
        condition = _LATER_COPY.format(version_col=VERSION_COL, version=quoted)
        deleted = store.delete_matched(table, doubles, condition)
    finally:
        doubles.unpersist()
    log.warning(
        "%s: %d ids of %s were committed by two writers; deleted %d later copies",
        table,
        n,
        version,
        deleted,
    )
    return deleted


def raced_commits(store: DeltaStore, table: str, version: str) -> list[str]:
    """Transaction ids of ``version``'s chunk commits that raced another writer (driver).

    A chunk commit records the table version its run's id look-up reflected
    (``hermes.looked_up``); a commit more than one version after it was preceded by
    another writer's commit, which may hold the same documents. Reads the history only.
    """
    if not store.exists(table):
        return []
    raced = []
    for commit in store.history(table):
        looked_up, txn = commit.get(LOOKED_UP_META), commit.get("hermes.txn")
        if commit.get(VERSION_META) != version or looked_up is None or txn is None:
            continue
        parsed = parse_txn_marker(str(txn))
        if parsed is not None and int(str(commit["version"])) > int(str(looked_up)) + 1:
            raced.append(parsed[0])
    return raced
