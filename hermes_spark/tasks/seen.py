"""What the codes and rejects tables already hold for the documents of this run.

Driver orchestration of small Spark jobs, built **once per run** (and again only when
another writer commits meanwhile), never once per chunk:

* :func:`annotated_hits` — ``(doc_id, source_file, chunk)`` of the version's rows whose
  id is among the ids of the pending files. 64-bit hashes of the pending ids probe the
  table once (only longs move); each chunk then joins its rows against its own few hits
  instead of against the whole table.
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
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from hermes_spark.delta import DeltaStore
from hermes_spark.delta.store import parse_txn_marker
from hermes_spark.errors import InvalidInputError
from hermes_spark.paths import canonical_file_key_col
from hermes_spark.schema import (
    ANNOTATED_AT_COL,
    REASON_COL,
    SOURCE_COL,
    VERSION_COL,
    VERSION_META,
)

log = logging.getLogger(__name__)

#: Distinct pending id hashes (8 bytes each) up to this many are broadcast to the table
#: scan; more are shuffle-joined as longs (only the matched hashes are then broadcast).
BROADCAST_IDS = 8_000_000
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


def id_hash(doc_id: Column) -> Column:
    """The narrow join key of a document id: a 64-bit hash (collisions are resolved on
    the exact ids of the few rows whose hash matched)."""
    return F.xxhash64(doc_id)


def annotated_hits(
    store: DeltaStore, table: str, version: str, pending_ids: DataFrame
) -> tuple[DataFrame | None, int]:
    """``(doc_id, source_file[, chunk])`` of ``version``'s rows whose id is pending.

    ``pending_ids`` has a ``doc_id`` column (the pending files' ids, any duplicates) and
    optionally ``chunk`` (the pending chunk each id was read in; the hits then carry it,
    so a chunk joins only its own). Narrow keys: only 64-bit id hashes cross the network
    on the table side — broadcast to the table scan when the pending ids are few, else
    shuffled as longs — and the table's wide ``doc_id, source_file`` are read only for
    rows whose hash matched (a broadcast join with the matched hashes). Hash collisions
    are resolved by an exact join of the pending ids with those few rows (broadcast, so
    the pending side does not move either). The hits are cached for the run (driver
    orchestration of executor jobs).
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
    tag = ["chunk"] if "chunk" in pending_ids.columns else []
    pending = pending_ids.select("doc_id", *tag).where(F.col("doc_id").isNotNull())
    keys = pending.select(id_hash(F.col("doc_id")).alias("_k")).distinct()
    keys = keys.persist(StorageLevel.MEMORY_AND_DISK)
    versioned = df.where(F.col(VERSION_COL) == version)
    matched: DataFrame | None = None
    try:
        n_keys = keys.count()
        if n_keys == 0:
            return None, 0
        if n_keys > BROADCAST_IDS:  # shuffle longs only, then broadcast the matches
            table_keys = versioned.select(id_hash(F.col("doc_id")).alias("_k"))
            keys = _swap(keys, table_keys.join(keys, "_k", "left_semi").distinct())
            n_keys = keys.count()
        candidates = (
            versioned.select("doc_id", SOURCE_COL, id_hash(F.col("doc_id")).alias("_k"))
            .join(F.broadcast(keys), "_k", "left_semi")
            .drop("_k")
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        matched = candidates
        if n_keys == 0 or candidates.count() == 0:
            return None, 0
        hits = (
            pending.join(F.broadcast(candidates), "doc_id")  # exact ids: collisions go
            .select("doc_id", SOURCE_COL, *tag)
            .distinct()
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        n_hits = hits.select("doc_id").distinct().count()
    finally:
        keys.unpersist()
        if matched is not None:
            matched.unpersist()
    log.info("%d of the pending ids already have a row of %s", n_hits, version)
    if n_hits == 0:
        hits.unpersist()
        return None, 0
    return hits, n_hits


def _swap(old: DataFrame, new: DataFrame) -> DataFrame:
    """Persist ``new`` (computed from ``old``) and release ``old``."""
    new = new.persist(StorageLevel.MEMORY_AND_DISK)
    new.count()
    old.unpersist()
    return new


def prior_rejects(
    store: DeltaStore, rejects_table: str, version: str, pending_files: DataFrame
) -> DataFrame | None:
    """Rejects of ``version`` already recorded for rows of the pending files (cached).

    ``pending_files`` holds ``(file, chunk)``: each pending file's canonical key
    (:func:`hermes_spark.paths.canonical_file_key`) and its chunk, which the rejects then
    carry. The version's rejects partition is scanned once per run.
    """
    if not store.exists(rejects_table):
        return None
    done = (
        store.read(rejects_table)
        .where(F.col(VERSION_COL) == version)
        .select("doc_id", REASON_COL, SOURCE_COL)
        .withColumn("file", canonical_file_key_col(F.col(SOURCE_COL)))
        .join(F.broadcast(pending_files.select("file", "chunk")), "file")
        .drop("file")
        .distinct()
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    if done.count() == 0:
        done.unpersist()
        return None
    return done


def of_chunk(tagged: DataFrame, chunk: int) -> DataFrame:
    """The rows of a chunk-tagged look-up frame that belong to ``chunk`` (untagged rows,
    whose file key matched no pending file, belong to every chunk); ``chunk`` dropped."""
    if "chunk" not in tagged.columns:
        return tagged
    mine = (F.col("chunk") == chunk) | F.col("chunk").isNull()
    return tagged.where(mine).drop("chunk").distinct()


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


def raced_commits(
    store: DeltaStore, table: str, version: str, after: int = -1
) -> tuple[list[str], int]:
    """Transaction ids of ``version``'s chunk commits newer than table version ``after``
    that raced another writer, and the table version the history was read at (driver).

    A chunk commit records the table version its run's id look-up reflected
    (``hermes.looked_up``); a commit more than one version after it was preceded by
    another writer's commit, which may hold the same documents. Reads only the commits
    after ``after`` from the history (never the data).
    """
    if not store.exists(table):
        return [], -1
    now = store.version(table)
    if now <= after:
        return [], now
    raced = []
    for commit in store.history(table, limit=now - after):
        looked_up, txn = commit.get(LOOKED_UP_META), commit.get("hermes.txn")
        if int(str(commit["version"])) <= after or commit.get(VERSION_META) != version:
            continue
        if looked_up is None or txn is None:
            continue
        parsed = parse_txn_marker(str(txn))
        if parsed is not None and int(str(commit["version"])) > int(str(looked_up)) + 1:
            raced.append(parsed[0])
    return raced, now
