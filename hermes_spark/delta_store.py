"""Delta Lake tables behind one interface, with a native and an embedded backend.

:func:`get_store` picks the backend once per session:

* :class:`NativeDeltaStore` — the Delta Lake Spark extension is on the classpath
  (Databricks, ``--packages io.delta:delta-spark``): Spark reads, writes and commits.
* :class:`EmbeddedDeltaStore` — everything else: executors write plain Parquet files into a
  fresh ``<table>/data/<run-id>/`` directory, then the driver commits exactly those files to
  the Delta log with delta-rs in one atomic commit (reading only file listings and Parquet
  footers, never data).

Both produce standard Delta tables that the other backend, and any Delta reader, can read.
Tables are a path (local path or URI) or, with the native backend only, a catalog name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import posixpath
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import reduce
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Schema, Transaction
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, create_table_with_add_actions
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.utils import AnalysisException

from hermes_spark.errors import ConflictError, InvalidInputError
from hermes_spark.session import native_delta_available

log = logging.getLogger(__name__)

#: Sub-directory of an embedded table where each run stages its Parquet files.
DATA_DIR = "data"
#: Commit attempts of the embedded writer before a conflict becomes a ConflictError.
MAX_COMMIT_ATTEMPTS = 5
#: String statistics are cut to this many characters (Delta Spark does the same).
STRING_STATS_PREFIX = 32
#: Partition column types whose Hive directory value equals Delta's partition value string.
PARTITION_TYPES = (
    T.StringType,
    T.ByteType,
    T.ShortType,
    T.IntegerType,
    T.LongType,
    T.BooleanType,
    T.DateType,
)
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_TXN_SCHEMA = "txn struct<appId: string, version: bigint>"


def rejects_table(table: str) -> str:
    """Name or path of the rejects table that belongs to ``table``."""
    return f"{table.rstrip('/')}_rejects"


def is_catalog_name(table: str) -> bool:
    """True when ``table`` is a catalog name (no ``/`` and no URI scheme), not a path."""
    return "/" not in table and "://" not in table


def get_store(spark: SparkSession) -> DeltaStore:
    """The native store when the Delta extension is loaded, else the embedded one (driver)."""
    native = native_delta_available(spark)
    store: DeltaStore = NativeDeltaStore(spark) if native else EmbeddedDeltaStore(spark)
    log.info("Delta engine: %s", store.name)
    return store


class DeltaStore(ABC):
    """Reads, appends, overwrites, deletes and vacuums Delta tables.

    Every method is called on the driver; the Spark jobs it starts run on executors.
    """

    name: str

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    @abstractmethod
    def exists(self, table: str) -> bool:
        """True when ``table`` is an existing Delta table."""

    def check_writable(self, table: str) -> None:
        """Raise :class:`InvalidInputError` when ``table`` holds something that is not Delta.

        Called before a job starts so a wrong ``--table`` fails in seconds, not after hours.
        """
        self.exists(table)

    @abstractmethod
    def read(self, table: str) -> DataFrame:
        """The current snapshot as a lazy DataFrame; InvalidInputError if not a Delta table."""

    @abstractmethod
    def append(
        self,
        df: DataFrame,
        table: str,
        *,
        app_id: str | None = None,
        app_version: int | None = None,
        partition_by: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> bool:
        """Append ``df`` in one commit, creating the table if needed.

        With ``app_id``/``app_version`` the append is idempotent: it is skipped (returns
        False) when the table already holds a commit of ``app_id`` at a version
        ``>= app_version``. Returns True when it committed.
        """

    @abstractmethod
    def overwrite(self, df: DataFrame, table: str, *, partition_by: Sequence[str] = ()) -> None:
        """Replace the whole table (data and schema) with ``df`` in one commit."""

    @abstractmethod
    def commit_metadata(self, table: str) -> list[dict[str, str]]:
        """The ``hermes.*`` metadata of every commit still in the log, newest first (driver)."""

    @abstractmethod
    def replace_partition(self, df: DataFrame, table: str, column: str, value: str) -> None:
        """Replace the rows of partition ``column = value`` with ``df`` in one commit.

        Files of every other partition are untouched (neither rewritten nor re-added);
        the table's schema and partitioning are kept. Every row of ``df`` must belong to
        that partition.
        """

    @abstractmethod
    def delete(self, table: str, predicate: str) -> int:
        """Delete the rows matching the SQL ``predicate``; returns how many were deleted."""

    @abstractmethod
    def txn_version(self, table: str, app_id: str) -> int | None:
        """Latest version committed by ``app_id``, None if never (or no table yet)."""

    @abstractmethod
    def vacuum(
        self, table: str, *, dry_run: bool = False, retention_hours: int | None = None
    ) -> list[str]:
        """Remove data files the table no longer references; returns their paths.

        ``retention_hours=None`` is the backend default: 0 for the embedded store (also
        removes staged files of killed runs at once, so never run it beside a writer), the
        table's ``delta.deletedFileRetentionDuration`` for the native one.
        """

    @abstractmethod
    def version(self, table: str) -> int:
        """Current version of the Delta table."""


# --------------------------------------------------------------------------- native


class NativeDeltaStore(DeltaStore):
    """Delta Lake on Spark (delta-spark); tables may be paths or catalog names."""

    name = "native"

    def _table(self, table: str) -> Any:
        from delta.tables import DeltaTable as SparkDeltaTable

        if is_catalog_name(table):
            return SparkDeltaTable.forName(self.spark, table)
        self._require(table)
        return SparkDeltaTable.forPath(self.spark, table)

    def _require(self, table: str) -> None:
        if not self.exists(table):
            raise InvalidInputError(f"{table} is not a Delta table (or does not exist)")

    def exists(self, table: str) -> bool:
        from delta.tables import DeltaTable as SparkDeltaTable

        if is_catalog_name(table):
            return bool(self.spark.catalog.tableExists(table))
        return bool(SparkDeltaTable.isDeltaTable(self.spark, table))

    def read(self, table: str) -> DataFrame:
        self._require(table)
        if is_catalog_name(table):
            return self.spark.read.table(table)
        return self.spark.read.format("delta").load(table)

    def _save(self, writer: Any, table: str) -> None:
        from delta.exceptions import ConcurrentModificationException

        try:
            if is_catalog_name(table):
                writer.saveAsTable(table)
            else:
                writer.save(table)
        except ConcurrentModificationException as exc:
            raise ConflictError(f"concurrent commit to {table} conflicted: {exc}") from exc

    def append(
        self,
        df: DataFrame,
        table: str,
        *,
        app_id: str | None = None,
        app_version: int | None = None,
        partition_by: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> bool:
        _check_txn_args(app_id, app_version)
        writer = df.write.format("delta").mode("append")
        if partition_by:  # an empty partitionBy() would clash with a partitioned table
            writer = writer.partitionBy(*partition_by)
        if app_id is not None and app_version is not None:
            done = self.txn_version(table, app_id)
            if done is not None and done >= app_version:
                log.info("%s: %s v%d already committed, skipping", table, app_id, app_version)
                return False
            # Delta itself skips the commit if a racing writer recorded this txn first.
            writer = writer.option("txnAppId", app_id).option("txnVersion", app_version)
        if metadata:
            writer = writer.option("userMetadata", json.dumps(dict(metadata), sort_keys=True))
        self._save(writer, table)
        return True

    def overwrite(self, df: DataFrame, table: str, *, partition_by: Sequence[str] = ()) -> None:
        writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        self._save(writer, table)

    def commit_metadata(self, table: str) -> list[dict[str, str]]:
        rows = self._table(table).history().select("version", "userMetadata").collect()
        found = []
        for row in sorted(rows, key=lambda r: -r["version"]):
            try:
                meta = json.loads(row["userMetadata"] or "{}")
            except json.JSONDecodeError:  # another writer's free-text metadata
                meta = {}
            found.append(_hermes_keys(meta if isinstance(meta, dict) else {}))
        return found

    def replace_partition(self, df: DataFrame, table: str, column: str, value: str) -> None:
        self._require(table)
        quoted = value.replace("'", "''")
        writer = df.write.format("delta").mode("overwrite")
        writer = writer.option("replaceWhere", f"{column} = '{quoted}'")
        self._save(writer, table)

    def delete(self, table: str, predicate: str) -> int:
        delta_table = self._table(table)
        before = self.version(table)
        delta_table.delete(predicate)
        last = delta_table.history(1).select("version", "operationMetrics").first()
        if last is None or last["version"] == before:
            return 0
        metrics = last["operationMetrics"] or {}
        if "numDeletedRows" in metrics:
            return int(metrics["numDeletedRows"])
        # Metadata-only deletes may not report rows: count them in the previous version.
        reader = self.spark.read.format("delta").option("versionAsOf", before)
        old = reader.table(table) if is_catalog_name(table) else reader.load(table)
        return int(old.where(predicate).count())

    def txn_version(self, table: str, app_id: str) -> int | None:
        if not self.exists(table):
            return None
        location = table
        if is_catalog_name(table):
            location = self._table(table).detail().select("location").first()[0]
        return delta_log_txn_version(self.spark, location, app_id)

    def vacuum(
        self, table: str, *, dry_run: bool = False, retention_hours: int | None = None
    ) -> list[str]:
        self._require(table)
        ident = table if is_catalog_name(table) else f"delta.`{table}`"
        retain = "" if retention_hours is None else f" RETAIN {int(retention_hours)} HOURS"
        check = "spark.databricks.delta.retentionDurationCheck.enabled"
        previous = self.spark.conf.get(check, "true")
        if retention_hours is not None:
            self.spark.conf.set(check, "false")
        try:
            rows = self.spark.sql(f"VACUUM {ident}{retain} DRY RUN").collect()
            paths = sorted(str(row[0]) for row in rows)
            if not dry_run:
                self.spark.sql(f"VACUUM {ident}{retain}").collect()
        finally:
            self.spark.conf.set(check, previous or "true")
        return paths

    def version(self, table: str) -> int:
        return int(self._table(table).history(1).select("version").first()[0])


def _hermes_keys(meta: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in meta.items() if k.startswith("hermes.")}


def delta_log_txn_version(spark: SparkSession, location: str, app_id: str) -> int | None:
    """Highest ``txn`` version of ``app_id`` in the Delta log at ``location``.

    Reads the commit JSONs and Parquet checkpoints with Spark (tiny), so it works wherever
    Spark can read the table's files. Txn versions only grow, so the maximum over the
    retained log is the current one.
    """
    log_dir = f"{location.rstrip('/')}/_delta_log"
    reader = spark.read.schema(_TXN_SCHEMA)
    frames = []
    for load, pattern in ((reader.json, "*.json"), (reader.parquet, "*.checkpoint*.parquet")):
        with contextlib.suppress(AnalysisException):  # e.g. no Parquet checkpoint yet
            frames.append(load(f"{log_dir}/{pattern}"))
    if not frames:
        return None
    txns = reduce(DataFrame.unionByName, frames)
    row = txns.where(F.col("txn.appId") == app_id).agg(F.max("txn.version")).first()
    return None if row is None or row[0] is None else int(row[0])


# ------------------------------------------------------------------------- embedded


@dataclass(frozen=True)
class _Location:
    """Where an embedded table lives, as each library needs to see it."""

    uri: str  # for delta-rs: an absolute local path or a URI
    spark_uri: str  # for Spark
    fs: pafs.FileSystem  # for listings and footers
    root: str  # the table root inside ``fs``

    def spark_path(self, file_uri: str) -> str:
        """A file location from delta-rs or ``fs`` as Spark should read it."""
        if "://" in file_uri:
            return file_uri
        if self.uri.startswith("/"):
            return f"file://{file_uri}"
        return f"{self.spark_uri}/{posixpath.relpath(file_uri, self.root)}"


@dataclass(frozen=True)
class _Staged:
    """Parquet files one run wrote under ``<table>/data/<run-id>/``, not yet committed."""

    run_id: str
    directory: str  # in ``_Location.fs``
    actions: list[AddAction]


class EmbeddedDeltaStore(DeltaStore):
    """Spark writes Parquet, delta-rs commits it on the driver; tables are paths only."""

    name = "embedded"

    # ----------------------------------------------------------------- locations

    def _locate(self, table: str) -> _Location:
        if is_catalog_name(table):
            raise InvalidInputError(
                f"{table!r} looks like a catalog name; catalog tables need native Delta "
                "(delta-spark on the classpath). Give a path instead."
            )
        parsed = urlparse(table)
        if parsed.scheme in ("", "file"):
            path = os.path.abspath(parsed.path if parsed.scheme else table)
            return _Location(path, f"file://{path}", pafs.LocalFileSystem(), path)
        fs, root = pafs.FileSystem.from_uri(table)
        uri = table.rstrip("/")
        return _Location(uri, uri, fs, root.rstrip("/"))

    def _open(self, loc: _Location, table: str) -> DeltaTable | None:
        """The table, None if nothing is there yet; InvalidInputError if it is not Delta."""
        if DeltaTable.is_deltatable(loc.uri):
            return DeltaTable(loc.uri)
        info = loc.fs.get_file_info(loc.root)
        if info.type == pafs.FileType.NotFound:
            return None
        if info.type == pafs.FileType.Directory:
            entries = loc.fs.get_file_info(pafs.FileSelector(loc.root))
            names = {posixpath.basename(entry.path) for entry in entries}
            # Empty, or only staged files of a first run that never committed.
            if all(n == DATA_DIR or n[:1] in "._" for n in names):
                return None
        raise InvalidInputError(f"{table} exists but is not a Delta table (no _delta_log)")

    def _open_existing(self, table: str) -> tuple[_Location, DeltaTable]:
        loc = self._locate(table)
        delta_table = self._open(loc, table)
        if delta_table is None:
            raise InvalidInputError(f"{table} is not a Delta table (it does not exist)")
        return loc, delta_table

    # ---------------------------------------------------------------------- reads

    def exists(self, table: str) -> bool:
        return DeltaTable.is_deltatable(self._locate(table).uri)

    def check_writable(self, table: str) -> None:
        loc = self._locate(table)
        self._open(loc, table)

    def read(self, table: str) -> DataFrame:
        """Plan a Spark scan of exactly the files of the current snapshot (driver).

        Partitioned tables get one scan per distinct partition value, with the partition
        columns added as literals (few values, e.g. codebook versions, are expected).
        """
        loc, delta_table = self._open_existing(table)
        _check_plain_parquet(delta_table, table)
        schema = spark_schema(delta_table.schema())
        part_cols = list(delta_table.metadata().partition_columns)
        if not part_cols:
            files = [loc.spark_path(uri) for uri in delta_table.file_uris()]
            if not files:
                return self.spark.createDataFrame([], schema)
            return self.spark.read.schema(schema).parquet(*files)
        data_schema = T.StructType([f for f in schema.fields if f.name not in part_cols])
        groups: dict[tuple[Any, ...], list[str]] = {}
        for path, values in _add_files(delta_table, part_cols):
            groups.setdefault(values, []).append(loc.spark_path(_file_location(loc, path)))
        if not groups:
            return self.spark.createDataFrame([], schema)
        frames = []
        for values, files in groups.items():
            literals = dict(zip(part_cols, values, strict=True))
            scan = self.spark.read.schema(data_schema).parquet(*files)
            columns: list[Column] = [
                F.lit(literals[f.name]).cast(f.dataType).alias(f.name)
                if f.name in literals
                else scan[f.name]
                for f in schema.fields
            ]
            frames.append(scan.select(*columns))
        return reduce(DataFrame.union, frames)

    def txn_version(self, table: str, app_id: str) -> int | None:
        loc = self._locate(table)
        delta_table = self._open(loc, table)
        return None if delta_table is None else delta_table.transaction_version(app_id)

    def version(self, table: str) -> int:
        return self._open_existing(table)[1].version()

    # --------------------------------------------------------------------- writes

    def append(
        self,
        df: DataFrame,
        table: str,
        *,
        app_id: str | None = None,
        app_version: int | None = None,
        partition_by: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> bool:
        """Stage ``df`` as Parquet (executors), then commit it with delta-rs (driver)."""
        _check_txn_args(app_id, app_version)
        loc = self._locate(table)
        delta_table = self._open(loc, table)
        if delta_table is not None:
            if _already_committed(delta_table, app_id, app_version):
                log.info("%s: %s v%s already committed, skipping", table, app_id, app_version)
                return False
            _check_compatible(delta_table, df.schema, partition_by, table)
        staged = self._stage(df, loc, partition_by)
        return self._commit(
            loc, table, staged, df.schema, partition_by, "append", app_id, app_version, metadata
        )

    def overwrite(self, df: DataFrame, table: str, *, partition_by: Sequence[str] = ()) -> None:
        """Stage ``df`` as Parquet (executors), then replace the table in one commit (driver)."""
        loc = self._locate(table)
        delta_table = self._open(loc, table)
        if delta_table is not None:
            current = list(delta_table.metadata().partition_columns)
            if current != list(partition_by):
                raise InvalidInputError(
                    f"{table} is partitioned by {current}, not {list(partition_by)}; an "
                    "overwrite cannot change the partitioning (delete the table first)"
                )
        staged = self._stage(df, loc, partition_by)
        self._commit(loc, table, staged, df.schema, partition_by, "overwrite", None, None, None)

    def commit_metadata(self, table: str) -> list[dict[str, str]]:
        _, delta_table = self._open_existing(table)
        history = sorted(delta_table.history(), key=lambda c: -int(c.get("version", 0)))
        return [_hermes_keys(commit) for commit in history]

    def replace_partition(self, df: DataFrame, table: str, column: str, value: str) -> None:
        """Stage ``df`` (executors), then swap it for the partition's files in one commit."""
        loc, delta_table = self._open_existing(table)
        partition_by = list(delta_table.metadata().partition_columns)
        if partition_by != [column]:
            raise InvalidInputError(
                f"{table} is partitioned by {partition_by}, not [{column!r}]: cannot replace "
                f"the partition {column}={value!r} alone"
            )
        _check_compatible(delta_table, df.schema, partition_by, table)
        staged = self._stage(df.where(F.col(column) == value), loc, partition_by)
        self._commit(
            loc,
            table,
            staged,
            df.schema,
            partition_by,
            "overwrite",
            None,
            None,
            None,
            partition_filters=[(column, "=", value)],
        )

    def delete(self, table: str, predicate: str) -> int:
        """Delete matching rows with delta-rs on the driver (it rewrites the touched files)."""
        _, delta_table = self._open_existing(table)
        try:
            metrics = delta_table.delete(predicate)
        except CommitFailedError as exc:
            raise ConflictError(
                f"delete from {table} conflicted with a concurrent commit: {exc}; re-run it"
            ) from exc
        return int(metrics.get("num_deleted_rows", 0) or 0)

    def vacuum(
        self, table: str, *, dry_run: bool = False, retention_hours: int | None = None
    ) -> list[str]:
        """Full delta-rs vacuum (every unreferenced file, staged orphans included); driver."""
        loc, delta_table = self._open_existing(table)
        removed = delta_table.vacuum(
            retention_hours=retention_hours or 0,
            dry_run=dry_run,
            enforce_retention_duration=False,
            full=True,
        )
        if not dry_run:
            _remove_empty_dirs(loc.fs, f"{loc.root}/{DATA_DIR}")
        log.info(
            "vacuum %s: %d files %s",
            table,
            len(removed),
            "would be removed" if dry_run else "removed",
        )
        return sorted(removed)

    # -------------------------------------------------------------------- helpers

    def _stage(self, df: DataFrame, loc: _Location, partition_by: Sequence[str]) -> _Staged:
        """Write ``df`` under ``data/<run-id>/`` (executors); list files and footers (driver)."""
        _check_partition_columns(df.schema, partition_by)
        run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"
        directory = f"{loc.root}/{DATA_DIR}/{run_id}"
        log.info("staging Parquet files in %s", directory)
        self._write_parquet(df, f"{loc.spark_uri}/{DATA_DIR}/{run_id}", partition_by)
        infos = loc.fs.get_file_info(pafs.FileSelector(directory, recursive=True))
        data = []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            if _is_hidden(posixpath.relpath(info.path, directory)):
                loc.fs.delete_file(info.path)  # _SUCCESS, .crc checksums: never table data
            else:
                data.append(info)
        with ThreadPoolExecutor(max_workers=16) as pool:
            actions = list(pool.map(lambda i: _add_action(loc, i, partition_by), data))
        return _Staged(run_id, directory, actions)

    def _write_parquet(self, df: DataFrame, uri: str, partition_by: Sequence[str]) -> None:
        """Spark job: the caller's partitions become the Parquet files (no repartition)."""
        # "error" = errorifexists; Spark Connect's client knows only the short name
        df.write.mode("error").partitionBy(*partition_by).parquet(uri)

    def _commit(
        self,
        loc: _Location,
        table: str,
        staged: _Staged,
        df_schema: T.StructType,
        partition_by: Sequence[str],
        mode: str,
        app_id: str | None,
        app_version: int | None,
        metadata: Mapping[str, str] | None,
        partition_filters: list[tuple[str, str, str]] | None = None,
    ) -> bool:
        """Commit the staged files in one delta-rs transaction (driver), retrying conflicts.

        An overwrite with ``partition_filters`` replaces only those partitions and keeps
        the table's schema.
        """
        txns = [] if app_id is None else [Transaction(app_id, int(app_version or 0))]
        props = CommitProperties(
            custom_metadata={
                "hermes.engine": self.name,
                "hermes.run_id": staged.run_id,
                **dict(metadata or {}),
            },
            app_transactions=txns,
        )
        last_error: Exception | None = None
        for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
            delta_table = self._open(loc, table)
            if delta_table is not None and mode == "append":
                if _already_committed(delta_table, app_id, app_version):
                    log.info("%s: %s v%s committed meanwhile", table, app_id, app_version)
                    loc.fs.delete_dir(staged.directory)
                    return False
                try:  # the table may have been created by a racing writer
                    _check_compatible(delta_table, df_schema, partition_by, table)
                except InvalidInputError:
                    loc.fs.delete_dir(staged.directory)
                    raise
            try:
                if delta_table is None:
                    create_table_with_add_actions(
                        loc.uri,
                        delta_schema(df_schema),
                        staged.actions,
                        partition_by=list(partition_by),
                        commit_properties=props,
                    )
                else:
                    keep_schema = mode == "append" or partition_filters is not None
                    schema = delta_table.schema() if keep_schema else delta_schema(df_schema)
                    delta_table.create_write_transaction(
                        staged.actions,
                        mode,
                        schema=schema,
                        partition_by=list(partition_by) or None,
                        partition_filters=partition_filters,
                        commit_properties=props,
                    )
            except DeltaError as exc:
                created_meanwhile = delta_table is None and DeltaTable.is_deltatable(loc.uri)
                if not isinstance(exc, CommitFailedError) and not created_meanwhile:
                    raise
                last_error = exc
                log.warning("%s: commit attempt %d conflicted (%s); retrying", table, attempt, exc)
                continue
            log.info("%s: %s of %d files committed", table, mode, len(staged.actions))
            return True
        loc.fs.delete_dir(staged.directory)
        raise ConflictError(
            f"could not commit to {table}: {MAX_COMMIT_ATTEMPTS} attempts conflicted with "
            f"concurrent writers (last: {last_error}). Nothing was written; re-run the job."
        )


# ------------------------------------------------------------- schema conversion


def _loosen(node: Any) -> Any:
    """Schema JSON with every nullability flag set to True (files are always nullable)."""
    if isinstance(node, dict):
        flags = {"nullable", "containsNull", "valueContainsNull"}
        return {k: True if k in flags else _loosen(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_loosen(v) for v in node]
    return node


def _type_key(data_type: T.DataType) -> str:
    """Comparable form of a Spark type that ignores nullability and metadata."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "metadata"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return json.dumps(strip(_loosen(data_type.jsonValue())), sort_keys=True)


def delta_schema(schema: T.StructType) -> Schema:
    """Delta (delta-rs) schema of a Spark schema; both share the same JSON format."""
    return Schema.from_json(json.dumps(_loosen(schema.jsonValue())))


def spark_schema(schema: Schema) -> T.StructType:
    """Spark schema of a Delta (delta-rs) schema."""
    return T.StructType.fromJson(json.loads(schema.to_json()))


def _check_compatible(
    delta_table: DeltaTable, schema: T.StructType, partition_by: Sequence[str], table: str
) -> None:
    current = list(delta_table.metadata().partition_columns)
    if current != list(partition_by):
        raise InvalidInputError(
            f"{table} is partitioned by {current}, but the append asks for {list(partition_by)}"
        )
    have = {f.name: _type_key(f.dataType) for f in spark_schema(delta_table.schema()).fields}
    new = {f.name: _type_key(f.dataType) for f in schema.fields}
    if have != new:
        missing = sorted(set(have) - set(new))
        extra = sorted(set(new) - set(have))
        changed = sorted(k for k in set(have) & set(new) if have[k] != new[k])
        raise InvalidInputError(
            f"cannot append to {table}: schema differs (missing columns {missing}, "
            f"unknown columns {extra}, changed types {changed})"
        )


def _check_partition_columns(schema: T.StructType, partition_by: Sequence[str]) -> None:
    fields = {f.name: f for f in schema.fields}
    for name in partition_by:
        if name not in fields:
            raise InvalidInputError(f"partition column {name!r} is not a column of the data")
        if not isinstance(fields[name].dataType, PARTITION_TYPES):
            raise InvalidInputError(
                f"partition column {name!r} has type {fields[name].dataType.simpleString()}; "
                "the embedded Delta writer partitions by string, integer, boolean or date only"
            )


def _check_txn_args(app_id: str | None, app_version: int | None) -> None:
    if (app_id is None) != (app_version is None):
        raise InvalidInputError("app_id and app_version must be given together")
    if app_version is not None and app_version < 0:
        raise InvalidInputError(f"app_version must be >= 0, got {app_version}")


def _already_committed(
    delta_table: DeltaTable, app_id: str | None, app_version: int | None
) -> bool:
    if app_id is None or app_version is None:
        return False
    done = delta_table.transaction_version(app_id)
    return done is not None and done >= app_version


def _check_plain_parquet(delta_table: DeltaTable, table: str) -> None:
    """Refuse tables whose files cannot be read as plain Parquet by column name."""
    mode = delta_table.metadata().configuration.get("delta.columnMapping.mode") or "none"
    if mode != "none":
        raise InvalidInputError(
            f"{table} uses column mapping ({mode}); read it with native Delta (delta-spark)"
        )
    features = delta_table.protocol().reader_features or []
    if "deletionVectors" in features and delta_table.deletion_vectors().read_all().num_rows:
        raise InvalidInputError(
            f"{table} has deletion vectors; read it with native Delta (delta-spark)"
        )


# ----------------------------------------------------------------- files and stats


def _is_hidden(relative: str) -> bool:
    return any(part[:1] in "._" for part in relative.split("/"))


def _add_files(
    delta_table: DeltaTable, part_cols: Sequence[str]
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(log path, partition values) of every file of the current snapshot."""
    actions = pa.table(delta_table.get_add_actions(flatten=True))
    columns = [actions.column("path").to_pylist()]
    columns += [actions.column(f"partition.{c}").to_pylist() for c in part_cols]
    for path, *values in zip(*columns, strict=True):
        yield path, tuple(values)


def _file_location(loc: _Location, log_path: str) -> str:
    """A Delta log path (percent-encoded, relative or absolute URI) as a file location."""
    if "://" in log_path:
        return unquote(log_path)
    return f"{loc.root}/{unquote(log_path)}"


def _add_action(loc: _Location, info: pafs.FileInfo, partition_by: Sequence[str]) -> AddAction:
    """AddAction of one staged file: Hive partition values from its path, stats from footer."""
    relative = posixpath.relpath(info.path, loc.root)
    values: dict[str, str | None] = {}
    for part in relative.split("/")[2:-1]:  # data/<run-id>/k=v/.../file
        key, _, raw = part.partition("=")
        if key in partition_by:
            value = unquote(raw)
            values[key] = None if value == _HIVE_NULL else value
    footer = pq.read_metadata(info.path, filesystem=loc.fs)
    mtime_ns = info.mtime_ns or datetime.now(UTC).timestamp() * 1e9
    # delta-rs percent-encodes the path itself when it writes the log.
    return AddAction(
        relative, int(info.size or 0), values, int(mtime_ns // 1_000_000), True, file_stats(footer)
    )


def file_stats(footer: pq.FileMetaData) -> str:
    """Delta ``stats`` JSON of one Parquet file from its footer alone.

    Top-level primitive columns only; min/max are left out wherever they could mislead
    data skipping (booleans, binary, decimals, NaN, long strings' max, naive timestamps).
    """
    schema = footer.schema.to_arrow_schema()
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    leaf = 0
    for field in schema:
        width = _leaf_count(field.type)
        if width == 1 and not pa.types.is_nested(field.type):
            chunks = [
                footer.row_group(g).column(leaf).statistics for g in range(footer.num_row_groups)
            ]
            if all(s is not None and s.has_null_count for s in chunks):
                nulls[field.name] = sum(int(s.null_count) for s in chunks)
            present = [s for s in chunks if s is not None and s.has_min_max]
            if present and len(present) == len(chunks):
                low = _stat_value(min(s.min for s in present), upper=False)
                high = _stat_value(max(s.max for s in present), upper=True)
                if low is not None:
                    mins[field.name] = low
                if high is not None:
                    maxs[field.name] = high
        leaf += width
    stats = {
        "numRecords": footer.num_rows,
        "minValues": mins,
        "maxValues": maxs,
        "nullCount": nulls,
    }
    return json.dumps(stats, separators=(",", ":"))


def _leaf_count(data_type: pa.DataType) -> int:
    if pa.types.is_struct(data_type):
        return sum(_leaf_count(data_type.field(i).type) for i in range(data_type.num_fields))
    if pa.types.is_map(data_type):
        return _leaf_count(data_type.key_type) + _leaf_count(data_type.item_type)
    if (
        pa.types.is_list(data_type)
        or pa.types.is_large_list(data_type)
        or (pa.types.is_fixed_size_list(data_type))
    ):
        return _leaf_count(data_type.value_type)
    return 1


def _stat_value(value: Any, *, upper: bool) -> Any:
    """JSON value of a footer min (``upper=False``) or max, or None to leave it out."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        if len(value) <= STRING_STATS_PREFIX:
            return value
        return None if upper else value[:STRING_STATS_PREFIX]
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return None
        value = value.astimezone(UTC)
        floored = value.replace(microsecond=value.microsecond // 1000 * 1000)
        if upper and floored != value:
            floored += timedelta(milliseconds=1)
        return floored.strftime("%Y-%m-%dT%H:%M:%S.") + f"{floored.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    return None  # bytes, Decimal, ...


def _remove_empty_dirs(fs: pafs.FileSystem, directory: str) -> None:
    """Delete directories under ``directory`` that hold no file any more (deepest first)."""
    infos = fs.get_file_info(pafs.FileSelector(directory, recursive=True, allow_not_found=True))
    dirs = sorted(
        (i.path for i in infos if i.type == pafs.FileType.Directory),
        key=lambda p: p.count("/"),
        reverse=True,
    )
    holding = {posixpath.dirname(i.path) for i in infos if i.type == pafs.FileType.File}
    for path in dirs:
        if not any(h == path or h.startswith(path + "/") for h in holding):
            fs.delete_dir(path)
