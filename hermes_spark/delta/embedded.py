"""Embedded backend: Spark writes Parquet, delta-rs commits it on the driver (paths only).

Executors write plain Parquet files into a fresh ``<table>/data/<run-id>/`` directory;
then the driver commits exactly those files to the Delta log with delta-rs in one atomic
commit, reading only file listings and Parquet footers, never data. Every
``checkpoint_interval`` commits a checkpoint is written so opening the log stays cheap,
and an opened table is kept and brought up to date incrementally, so txn lookups cost the
commits since the last lookup, not the whole log.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import reduce
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, create_table_with_add_actions
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from hermes_spark.delta.files import (
    DATA_DIR,
    Location,
    add_action,
    add_files,
    check_compatible,
    check_partition_columns,
    delta_schema,
    file_location,
    is_hidden,
    remove_empty_dirs,
    spark_schema,
)
from hermes_spark.delta.store import DeltaStore, check_txn_args, hermes_keys, txn_marker
from hermes_spark.errors import ConflictError, InvalidInputError

log = logging.getLogger(__name__)

#: Commit attempts of an append before a conflict becomes a ConflictError.
MAX_COMMIT_ATTEMPTS = 5


@dataclass(frozen=True)
class Staged:
    """Parquet files one run wrote under ``<table>/data/<run-id>/``, not yet committed."""

    run_id: str
    directory: str  # in ``Location.fs``
    actions: list[AddAction]


class EmbeddedDeltaStore(DeltaStore):
    """Spark writes Parquet, delta-rs commits it on the driver; tables are paths only."""

    name = "embedded"

    def __init__(self, spark: Any, options: Any = None) -> None:
        super().__init__(spark, options)
        #: tables opened by this store, kept up to date incrementally (one per location)
        self._tables: dict[str, DeltaTable] = {}

    # ----------------------------------------------------------------- locations

    def _locate(self, table: str) -> Location:
        if self.ref(table).is_name:
            raise InvalidInputError(
                f"{table!r} is a catalog name; catalog tables need native Delta "
                "(delta-spark: `hermes-spark setup-jars`, or Databricks). Give a path instead."
            )
        parsed = urlparse(table)
        if parsed.scheme in ("", "file"):
            path = os.path.abspath(parsed.path if parsed.scheme else table)
            return Location(path, f"file://{path}", pafs.LocalFileSystem(), path)
        fs, root = pafs.FileSystem.from_uri(table)
        uri = table.rstrip("/")
        return Location(uri, uri, fs, root.rstrip("/"))

    def _open(self, loc: Location, table: str) -> DeltaTable | None:
        """The table at its newest version, None if nothing is there yet.

        A table opened before is brought up to date with the commits since (incremental);
        InvalidInputError if the location holds something that is not Delta.
        """
        cache = self._tables
        known = cache.get(loc.uri)
        if known is not None:
            known.update_incremental()
            return known
        if DeltaTable.is_deltatable(loc.uri):
            cache[loc.uri] = DeltaTable(loc.uri)
            return cache[loc.uri]
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

    def _forget(self, loc: Location) -> None:
        self._tables.pop(loc.uri, None)

    def _open_existing(self, table: str) -> tuple[Location, DeltaTable]:
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
        for path, values in add_files(delta_table, part_cols):
            groups.setdefault(values, []).append(loc.spark_path(file_location(loc, path)))
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
        """From the snapshot's txn actions (checkpoint + commits since): no log scan."""
        loc = self._locate(table)
        delta_table = self._open(loc, table)
        return None if delta_table is None else delta_table.transaction_version(app_id)

    def version(self, table: str) -> int:
        return self._open_existing(table)[1].version()

    def history(self, table: str, limit: int | None = None) -> list[dict[str, object]]:
        _, delta_table = self._open_existing(table)
        commits = sorted(delta_table.history(limit), key=lambda c: -int(c.get("version", 0)))
        return [
            {"version": int(c.get("version", 0)), "operation": c.get("operation"), **_keys(c)}
            for c in commits
        ]

    def commit_metadata(self, table: str) -> list[dict[str, str]]:
        return [
            {k: str(v) for k, v in c.items() if k.startswith("hermes.")}
            for c in self.history(table)
        ]

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
        cluster_by: Sequence[str] = (),
    ) -> bool:
        """Stage ``df`` as Parquet (executors), then commit it with delta-rs (driver).

        ``cluster_by`` is not a delta-rs layout: files are partitioned by ``partition_by``
        and sorted by ``sort_by`` within each task, and every file carries min/max
        statistics of each top-level column (``bucket1``, ``bucket2``, ...) for skipping.
        """
        check_txn_args(app_id, app_version)
        loc = self._locate(table)
        delta_table = self._open(loc, table)
        if delta_table is not None:
            if _already_committed(delta_table, app_id, app_version):
                log.info("%s: %s v%s already committed, skipping", table, app_id, app_version)
                return False
            check_compatible(delta_table, df.schema, partition_by, table)
        staged = self._stage(df, loc, partition_by)
        return self._commit_append(
            loc=loc,
            table=table,
            staged=staged,
            df_schema=df.schema,
            partition_by=partition_by,
            app_id=app_id,
            app_version=app_version,
            metadata=metadata,
        )

    def overwrite(self, df: DataFrame, table: str, *, partition_by: Sequence[str] = ()) -> None:
        """Stage ``df`` as Parquet (executors), then replace the table in one commit (driver)."""
        loc = self._locate(table)
        delta_table = self._open(loc, table)
        planned = None
        if delta_table is not None:
            planned = delta_table.version()
            current = list(delta_table.metadata().partition_columns)
            if current != list(partition_by):
                raise InvalidInputError(
                    f"{table} is partitioned by {current}, not {list(partition_by)}; an "
                    "overwrite cannot change the partitioning (delete the table first)"
                )
        staged = self._stage(df, loc, partition_by)
        if planned is None:
            self._commit_append(
                loc=loc,
                table=table,
                staged=staged,
                df_schema=df.schema,
                partition_by=partition_by,
                app_id=None,
                app_version=None,
                metadata=None,
            )
            return
        self._commit_replace(
            loc=loc,
            table=table,
            staged=staged,
            schema=delta_schema(df.schema),
            partition_by=partition_by,
            planned=planned,
            partition_filters=None,
        )

    def replace_partition(self, df: DataFrame, table: str, column: str, value: str) -> None:
        """Stage ``df`` (executors), then swap it for the partition's files in one commit."""
        loc, delta_table = self._open_existing(table)
        planned = delta_table.version()
        partition_by = list(delta_table.metadata().partition_columns)
        if partition_by != [column]:
            raise InvalidInputError(
                f"{table} is partitioned by {partition_by}, not [{column!r}]: cannot replace "
                f"the partition {column}={value!r} alone"
            )
        check_compatible(delta_table, df.schema, partition_by, table)
        staged = self._stage(df.where(F.col(column) == value), loc, partition_by)
        self._commit_replace(
            loc=loc,
            table=table,
            staged=staged,
            schema=delta_table.schema(),
            partition_by=partition_by,
            planned=planned,
            partition_filters=[(column, "=", value)],
        )

    def describe(
        self,
        table: str,
        comment: str,
        columns: Mapping[str, str],
        properties: Mapping[str, str],
    ) -> None:
        loc, delta_table = self._open_existing(table)
        meta = delta_table.metadata()
        if meta.description != comment:
            delta_table.alter.set_table_description(comment)
        config = meta.configuration or {}
        changed = {k: v for k, v in properties.items() if config.get(k) != v}
        if changed:
            delta_table.alter.set_table_properties(changed, raise_if_not_exists=False)
        current = {f.name: (f.metadata or {}).get("comment") for f in delta_table.schema().fields}
        for name, text in columns.items():
            if name in current and current[name] != text:
                delta_table.alter.set_column_metadata(name, {"comment": text})
        self._after_commit(loc, table, "describe")

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

    def delete_matched(self, table: str, keys: DataFrame, condition: str) -> int:
        """A delta-rs ``MERGE ... WHEN MATCHED THEN DELETE`` on the driver.

        ``keys`` is brought to the driver as Arrow (delta-rs merges from local data): it
        must be small (e.g. the ids two writers doubled), never a table-sized frame.
        """
        _, delta_table = self._open_existing(table)
        source = keys.toArrow()
        if source.num_rows == 0:
            return 0
        try:
            metrics = (
                delta_table.merge(source, condition, source_alias="s", target_alias="t")
                .when_matched_delete()
                .execute()
            )
        except CommitFailedError as exc:
            raise ConflictError(
                f"delete from {table} conflicted with a concurrent commit: {exc}; re-run it"
            ) from exc
        return int(metrics.get("num_target_rows_deleted", 0) or 0)

    def vacuum(
        self, table: str, *, dry_run: bool = False, retention_hours: int | None = None
    ) -> list[str]:
        """Full delta-rs vacuum of unreferenced files older than the retention (driver).

        "Full" includes files no commit ever referenced (staged files of killed runs), so
        the retention is what protects a writer still running: its staged files are
        younger than ``retention_hours`` (default ``delta.vacuum_retention_hours``).
        """
        loc, delta_table = self._open_existing(table)
        hours = self.options.vacuum_retention_hours if retention_hours is None else retention_hours
        candidates = delta_table.vacuum(
            retention_hours=int(hours),
            dry_run=True,
            enforce_retention_duration=False,
            full=True,
        )
        # delta-rs applies the retention to removed files; files no commit ever named
        # (staging of a running writer) are kept here by their age.
        cutoff = datetime.now(UTC).timestamp() - hours * 3600
        removed = []
        for relative in candidates:
            info = loc.fs.get_file_info(file_location(loc, relative))
            if info.type == pafs.FileType.NotFound:
                continue  # delta-rs lists tombstones whose files an earlier vacuum removed
            if info.mtime is None or info.mtime.timestamp() <= cutoff:
                removed.append(relative)
        if not dry_run:
            for relative in removed:
                loc.fs.delete_file(file_location(loc, relative))
            remove_empty_dirs(loc.fs, f"{loc.root}/{DATA_DIR}")
        log.info(
            "vacuum %s (retention %dh): %d files %s",
            table,
            hours,
            len(removed),
            "would be removed" if dry_run else "removed",
        )
        return sorted(removed)

    def optimize(self, table: str, zorder_by: Sequence[str]) -> None:
        """delta-rs Z-order on the driver (it reads and rewrites the files itself)."""
        loc, delta_table = self._open_existing(table)
        metrics = delta_table.optimize.z_order(list(zorder_by))
        self._after_commit(loc, table, f"z-order by {list(zorder_by)} ({metrics})")

    # -------------------------------------------------------------------- helpers

    def _stage(self, df: DataFrame, loc: Location, partition_by: Sequence[str]) -> Staged:
        """Write ``df`` under ``data/<run-id>/`` (executors); list files and footers (driver)."""
        check_partition_columns(df.schema, partition_by)
        run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"
        directory = f"{loc.root}/{DATA_DIR}/{run_id}"
        log.info("staging Parquet files in %s", directory)
        self._write_parquet(df, f"{loc.spark_uri}/{DATA_DIR}/{run_id}", partition_by)
        infos = loc.fs.get_file_info(pafs.FileSelector(directory, recursive=True))
        data = []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            if is_hidden(posixpath.relpath(info.path, directory)):
                loc.fs.delete_file(info.path)  # _SUCCESS, .crc checksums: never table data
            else:
                data.append(info)
        with ThreadPoolExecutor(max_workers=16) as pool:
            actions = list(pool.map(lambda i: add_action(loc, i, partition_by), data))
        return Staged(run_id, directory, actions)

    def _write_parquet(self, df: DataFrame, uri: str, partition_by: Sequence[str]) -> None:
        """Spark job: the caller's partitions become files of at most ``rows_per_file`` rows."""
        # "error" = errorifexists; Spark Connect's client knows only the short name
        writer = self.clustered(df).write.mode("error").partitionBy(*partition_by)
        if self.options.rows_per_file:
            writer = writer.option("maxRecordsPerFile", self.options.rows_per_file)
        writer.parquet(uri)

    def _properties(
        self,
        staged: Staged,
        metadata: Mapping[str, str] | None,
        app_id: str | None,
        app_version: int | None,
    ) -> CommitProperties:
        """Commit info: hermes keys top level (delta-rs) and as ``userMetadata`` (Spark)."""
        keys = {"hermes.engine": self.name, "hermes.run_id": staged.run_id, **dict(metadata or {})}
        txns = []
        if app_id is not None:
            keys["hermes.txn"] = txn_marker(app_id, int(app_version or 0))
            txns = [Transaction(app_id, int(app_version or 0))]
        custom = {**keys, "userMetadata": json.dumps(keys, sort_keys=True)}
        return CommitProperties(custom_metadata=custom, app_transactions=txns)

    def _commit_append(
        self,
        *,
        loc: Location,
        table: str,
        staged: Staged,
        df_schema: T.StructType,
        partition_by: Sequence[str],
        app_id: str | None,
        app_version: int | None,
        metadata: Mapping[str, str] | None,
    ) -> bool:
        """Commit staged files as an append (creating the table), retrying conflicts.

        Appends are blind, so a retry on the newest snapshot is safe; a txn that a racing
        writer committed meanwhile makes this one skip (returns False).
        """
        props = self._properties(staged, metadata, app_id, app_version)
        last_error: Exception | None = None
        for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
            delta_table = self._open(loc, table)
            if delta_table is not None:
                if _already_committed(delta_table, app_id, app_version):
                    log.info("%s: %s v%s committed meanwhile", table, app_id, app_version)
                    loc.fs.delete_dir(staged.directory)
                    return False
                try:  # the table may have been created by a racing writer
                    check_compatible(delta_table, df_schema, partition_by, table)
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
                    delta_table.create_write_transaction(
                        [*staged.actions],  # the parameter is a list of adds and removes
                        "append",
                        schema=delta_table.schema(),
                        partition_by=list(partition_by) or None,
                        commit_properties=props,
                    )
            except DeltaError as exc:
                created_meanwhile = delta_table is None and DeltaTable.is_deltatable(loc.uri)
                if not isinstance(exc, CommitFailedError) and not created_meanwhile:
                    raise
                last_error = exc
                self._forget(loc)
                log.warning("%s: commit attempt %d conflicted (%s); retrying", table, attempt, exc)
                continue
            self._after_commit(loc, table, f"append of {len(staged.actions)} files")
            return True
        loc.fs.delete_dir(staged.directory)
        raise ConflictError(
            f"could not commit to {table}: {MAX_COMMIT_ATTEMPTS} attempts conflicted with "
            f"concurrent writers (last: {last_error}). Nothing was written; re-run the job."
        )

    def _commit_replace(
        self,
        *,
        loc: Location,
        table: str,
        staged: Staged,
        schema: Any,
        partition_by: Sequence[str],
        planned: int,
        partition_filters: list[tuple[str, str, str]] | None,
    ) -> None:
        """Commit staged files as an overwrite of the snapshot ``planned`` (no blind retry).

        The removes are those of version ``planned``, the snapshot the caller's data was
        planned on; a commit that landed since either survives (delta-rs resolves it) or
        makes this fail with ConflictError — it is never silently overwritten.
        """
        delta_table = DeltaTable(loc.uri, version=planned)
        props = self._properties(staged, None, None, None)
        try:
            delta_table.create_write_transaction(
                [*staged.actions],
                "overwrite",
                schema=schema,
                partition_by=list(partition_by) or None,
                partition_filters=partition_filters,
                commit_properties=props,
            )
        except CommitFailedError as exc:
            loc.fs.delete_dir(staged.directory)
            raise ConflictError(
                f"overwrite of {table} conflicted with a concurrent commit after version "
                f"{planned} ({exc}); nothing was replaced: re-run to re-plan on the new data"
            ) from exc
        self._after_commit(loc, table, f"overwrite with {len(staged.actions)} files")

    def _after_commit(self, loc: Location, table: str, what: str) -> None:
        """Log the commit and write a checkpoint every ``checkpoint_interval`` versions."""
        delta_table = self._open(loc, table)
        version = delta_table.version() if delta_table is not None else -1
        log.info("%s: %s committed as version %d", table, what, version)
        every = self.options.checkpoint_interval
        if delta_table is not None and every and version > 0 and version % every == 0:
            delta_table.create_checkpoint()
            log.info("%s: checkpoint at version %d", table, version)


def _keys(commit: Mapping[str, Any]) -> dict[str, str]:
    """hermes keys of one commit: from ``userMetadata`` (either backend) or top level."""
    found = hermes_keys(commit)
    raw = commit.get("userMetadata")
    if isinstance(raw, str):
        try:
            meta = json.loads(raw)
        except json.JSONDecodeError:
            meta = {}
        if isinstance(meta, dict):
            found.update(hermes_keys(meta))
    return found


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
