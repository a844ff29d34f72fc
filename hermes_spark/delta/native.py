"""Native backend: Delta Lake on Spark (delta-spark); tables are paths or catalog names.

Driver only; the reads and writes run as Spark jobs. Nothing here reads ``_delta_log``
files by path (Unity Catalog forbids path access to managed tables): appends are made
idempotent with Delta's own ``txnAppId``/``txnVersion`` writer options, hermes keys travel
in the commit's ``userMetadata`` and txn lookups read ``DESCRIBE HISTORY`` — once per run
and table, then only the commits since — so they cost O(1) per chunk. Works on Spark
Connect wherever delta-spark's Python ``DeltaTable`` does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, DataFrameWriter, Row

from hermes_spark.delta.store import (
    DeltaStore,
    check_txn_args,
    hermes_keys,
    parse_txn_marker,
    txn_marker,
)
from hermes_spark.errors import ConflictError, InvalidInputError

log = logging.getLogger(__name__)

#: Error conditions / class names Delta raises for a lost optimistic-concurrency race.
_CONFLICTS = ("Concurrent", "DELTA_CONCURRENT", "ProtocolChanged", "MetadataChanged")


class NativeDeltaStore(DeltaStore):
    """Delta Lake on Spark: reads, writes, commits and history through Delta's APIs."""

    name = "native"

    def __init__(self, spark: Any, options: Any = None) -> None:
        super().__init__(spark, options)
        #: table -> (version seen, {app_id: highest txn version}) built from history
        self._txns: dict[str, tuple[int, dict[str, int]]] = {}
        #: table -> its liquid-clustering keys (only tables known to be clustered)
        self._clustered: dict[str, list[str]] = {}

    # ----------------------------------------------------------------- plumbing

    def _delta_table(self, table: str) -> Any:
        from delta.tables import DeltaTable

        ref = self.ref(table)
        if ref.is_name:
            return DeltaTable.forName(self.spark, ref.text)
        self._require(table)
        return DeltaTable.forPath(self.spark, ref.text)

    def _require(self, table: str) -> None:
        if not self.exists(table):
            raise InvalidInputError(f"{table} is not a Delta table (or does not exist)")

    def _writer(self, df: DataFrame, mode: str, partition_by: Sequence[str]) -> DataFrameWriter:
        writer = self.clustered(df).write.format("delta").mode(mode)
        if partition_by:  # an empty partitionBy() would clash with a partitioned table
            writer = writer.partitionBy(*partition_by)
        if self.options.rows_per_file:
            writer = writer.option("maxRecordsPerFile", self.options.rows_per_file)
        return writer

    def _save(self, writer: DataFrameWriter, table: str, *, creating: bool) -> None:
        ref = self.ref(table)
        if creating and self.options.checkpoint_interval:
            writer = writer.option("delta.checkpointInterval", self.options.checkpoint_interval)
        try:
            if ref.is_name:
                writer.saveAsTable(ref.text)
            else:
                writer.save(ref.text)
        except Exception as exc:
            if any(mark in f"{type(exc).__name__} {exc}"[:2000] for mark in _CONFLICTS):
                raise ConflictError(
                    f"concurrent commit to {table} conflicted: {str(exc)[:500]}; nothing was "
                    "written, re-run the job"
                ) from exc
            raise

    def _history_rows(self, table: str, limit: int | None = None) -> list[Row]:
        frame = self._delta_table(table).history(limit)
        rows: list[Row] = frame.select("version", "operation", "userMetadata").collect()
        return rows

    def _commits_after(self, table: str, version: int) -> list[Row]:
        """Every commit newer than ``version`` (all of them when ``version`` < 0).

        ``history(n)`` gives the newest ``n`` commits *when it runs*: a writer committing
        between reading the table's version and reading its history would push older
        commits out of that window. Widen it until it reaches back to ``version + 1``.
        """
        if version < 0:
            return self._history_rows(table)
        limit = max(self.version(table) - version, 1)
        while True:
            rows = self._history_rows(table, limit)
            versions = [int(r["version"]) for r in rows]
            if not versions or min(versions) <= version + 1 or len(rows) < limit:
                return [r for r in rows if int(r["version"]) > version]
            limit = max(versions) - version

    # ---------------------------------------------------------------------- reads

    def exists(self, table: str) -> bool:
        from delta.tables import DeltaTable

        ref = self.ref(table)
        if ref.is_name:
            return bool(self.spark.catalog.tableExists(ref.text))
        return bool(DeltaTable.isDeltaTable(self.spark, ref.text))

    def check_writable(self, table: str) -> None:
        """A local path holding files but no Delta log fails now, not after the job."""
        ref = self.ref(table)
        if ref.is_name or "://" in ref.text or self.exists(table):
            return
        path = Path(ref.text[5:] if ref.text.startswith("file:") else ref.text)
        if path.is_dir() and any(not p.name.startswith((".", "_")) for p in path.iterdir()):
            raise InvalidInputError(f"{table} exists but is not a Delta table (no _delta_log)")
        if path.is_file():
            raise InvalidInputError(f"{table} is a file, not a Delta table")

    def read(self, table: str) -> DataFrame:
        self._require(table)
        ref = self.ref(table)
        if ref.is_name:
            return self.spark.read.table(ref.text)
        return self.spark.read.format("delta").load(ref.text)

    def version(self, table: str) -> int:
        return int(self._history_rows(table, 1)[0]["version"])

    def history(self, table: str, limit: int | None = None) -> list[dict[str, object]]:
        rows = sorted(self._history_rows(table, limit), key=lambda r: -int(r["version"]))
        return [
            {"version": int(r["version"]), "operation": r["operation"], **_user_keys(r)}
            for r in rows
        ]

    def commit_metadata(self, table: str) -> list[dict[str, str]]:
        return [
            {k: str(v) for k, v in c.items() if k.startswith("hermes.")}
            for c in self.history(table)
        ]

    def txn_version(self, table: str, app_id: str) -> int | None:
        """Highest version of ``app_id`` recorded in the commits' ``hermes.txn`` (history).

        The first lookup of a table reads its history once; later ones read only the
        commits since. Commits older than the log retention are no longer in the history:
        such a chunk is then re-computed, and Delta's own ``txnAppId`` check still stops
        its write from committing twice.
        """
        if not self.exists(table):
            return None
        current = self.version(table)
        seen, txns = self._txns.get(table, (-1, {}))
        if current != seen:
            txns = dict(txns)
            rows = self._commits_after(table, seen)
            for row in rows:
                marker = _user_keys(row).get("hermes.txn")
                parsed = parse_txn_marker(marker) if marker else None
                if parsed:
                    txns[parsed[0]] = max(parsed[1], txns.get(parsed[0], -1))
            newest = max([current, *(int(r["version"]) for r in rows)])
            self._txns[table] = (newest, txns)
        return txns.get(app_id)

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
        check_txn_args(app_id, app_version)
        existed = self.exists(table)
        if not existed and cluster_by and self.options.liquid_clustering:
            existed = self._create_clustered(df, table, [*partition_by, *cluster_by])
        if existed and self.clustering_columns(table):
            partition_by = ()  # a clustered table has no partitions
        writer = self._writer(df, "append", partition_by)
        keys = {"hermes.engine": self.name, **dict(metadata or {})}
        before = -1
        if app_id is not None and app_version is not None:
            done = self.txn_version(table, app_id)
            if done is not None and done >= app_version:
                log.info("%s: %s v%d already committed, skipping", table, app_id, app_version)
                return False
            before = self.version(table) if existed else -1
            keys["hermes.txn"] = txn_marker(app_id, app_version)
            # Delta itself skips the commit if a racing writer recorded this txn first.
            writer = writer.option("txnAppId", app_id).option("txnVersion", app_version)
        writer = writer.option("userMetadata", json.dumps(keys, sort_keys=True))
        if not existed and self.ref(table).is_name and app_id is not None:
            # CREATE TABLE AS SELECT ignores txn and userMetadata options: create the
            # (empty) catalog table first, then append in a commit of its own.
            self._save(self._writer(df.limit(0), "append", partition_by), table, creating=True)
            before, existed = self.version(table), True
        self._save(writer, table, creating=not existed)
        if app_id is None:
            return True
        return self._committed_since(table, before, keys["hermes.txn"])

    def clustering_columns(self, table: str) -> list[str]:
        """The liquid-clustering keys of ``table`` (``DESCRIBE DETAIL``), [] if none."""
        if table in self._clustered:
            return self._clustered[table]
        row = self.spark.sql(f"DESCRIBE DETAIL {self.ref(table).sql}").first()
        fields = row.asDict() if row is not None else {}
        columns = [str(c) for c in (fields.get("clusteringColumns") or [])]
        if columns:  # a table never loses its clustering by our hand: cache it
            self._clustered[table] = columns
        return columns

    def _create_clustered(self, df: DataFrame, table: str, columns: Sequence[str]) -> bool:
        """Create ``table`` empty with ``df``'s schema, ``CLUSTER BY (columns)``.

        Returns True when the table exists afterwards. Where this Delta has no liquid
        clustering (older than 3.1), logs why and returns False: the caller then creates
        a partitioned table, and ``optimize`` Z-orders it.
        """
        ddl = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in df.schema.fields)
        keys = ", ".join(f"`{c}`" for c in columns)
        props = ""
        if self.options.checkpoint_interval:
            props = " TBLPROPERTIES ('delta.checkpointInterval' = "
            props += f"'{int(self.options.checkpoint_interval)}')"
        ident = self.ref(table).sql
        try:
            self.spark.sql(
                f"CREATE TABLE IF NOT EXISTS {ident} ({ddl}) USING DELTA CLUSTER BY ({keys}){props}"
            ).collect()
        except Exception as exc:  # parse error / unsupported feature on an older Delta
            if self.exists(table):  # a racing writer created it
                return True
            log.warning(
                "%s: liquid clustering is not available (%s); creating it partitioned, "
                "Z-order it with optimize",
                table,
                str(exc).splitlines()[0][:200],
            )
            return False
        log.info("%s: created with liquid clustering by %s", table, list(columns))
        return True

    def _committed_since(self, table: str, before: int, marker: str) -> bool:
        """True when a commit after version ``before`` carries our ``hermes.txn`` marker."""
        rows = self._commits_after(table, before)
        ours = any(_user_keys(r).get("hermes.txn") == marker for r in rows)
        if not ours:
            log.info("%s: %s committed meanwhile by another writer, skipped", table, marker)
        return ours

    def overwrite(self, df: DataFrame, table: str, *, partition_by: Sequence[str] = ()) -> None:
        existed = self.exists(table)
        writer = self._writer(df, "overwrite", partition_by).option("overwriteSchema", "true")
        writer = writer.option("userMetadata", json.dumps({"hermes.engine": self.name}))
        self._save(writer, table, creating=not existed)

    def replace_partition(self, df: DataFrame, table: str, column: str, value: str) -> None:
        self._require(table)
        quoted = value.replace("'", "''")
        writer = self._writer(df, "overwrite", ())
        writer = writer.option("replaceWhere", f"`{column}` = '{quoted}'")
        writer = writer.option("userMetadata", json.dumps({"hermes.engine": self.name}))
        self._save(writer, table, creating=False)

    def describe(
        self,
        table: str,
        comment: str,
        columns: Mapping[str, str],
        properties: Mapping[str, str],
    ) -> None:
        ref = self.ref(table)
        detail = self._delta_table(table).detail().select("description", "properties").first()
        props = dict(detail["properties"] or {}) if detail else {}
        wanted = {**properties, "comment": comment}
        changed = {
            k: v for k, v in wanted.items()
            if (props.get(k) if k != "comment" else (detail and detail["description"])) != v
        }  # fmt: skip
        if changed:
            pairs = ", ".join(f"'{_sql(k)}' = '{_sql(v)}'" for k, v in changed.items())
            self.spark.sql(f"ALTER TABLE {ref.sql} SET TBLPROPERTIES ({pairs})")
        current = {f.name: f.metadata.get("comment") for f in self.read(table).schema.fields}
        todo = [f"`{n}` COMMENT '{_sql(t)}'" for n, t in columns.items() if current.get(n, t) != t]
        if not todo:
            return
        try:  # one statement for every column (Spark 4)
            self.spark.sql(f"ALTER TABLE {ref.sql} ALTER COLUMN {', '.join(todo)}")
        except Exception:  # an older parser: one column at a time
            for clause in todo:
                self.spark.sql(f"ALTER TABLE {ref.sql} ALTER COLUMN {clause}")

    def delete(self, table: str, predicate: str) -> int:
        delta_table = self._delta_table(table)
        before = self.version(table)
        delta_table.delete(predicate)
        last = delta_table.history(1).select("version", "operationMetrics").first()
        if last is None or last["version"] == before:
            return 0
        metrics = last["operationMetrics"] or {}
        if "numDeletedRows" in metrics:
            return int(metrics["numDeletedRows"])
        # Metadata-only deletes may not report rows: count them in the previous version.
        ref = self.ref(table)
        reader = self.spark.read.format("delta").option("versionAsOf", before)
        old = reader.table(ref.text) if ref.is_name else reader.load(ref.text)
        return int(old.where(predicate).count())

    def delete_matched(self, table: str, keys: DataFrame, condition: str) -> int:
        """A Delta ``MERGE ... WHEN MATCHED THEN DELETE`` (a distributed join; ``keys`` is
        never collected)."""
        before = self.version(table)
        target = self._delta_table(table).alias("t")
        target.merge(keys.alias("s"), condition).whenMatchedDelete().execute()
        last = self._delta_table(table).history(1).select("version", "operationMetrics").first()
        if last is None or last["version"] == before:
            return 0
        return int((last["operationMetrics"] or {}).get("numTargetRowsDeleted", 0) or 0)

    def vacuum(
        self, table: str, *, dry_run: bool = False, retention_hours: int | None = None
    ) -> list[str]:
        """``VACUUM`` with the retention (default ``delta.vacuum_retention_hours``).

        Below Delta's 168 h safety check the check is switched off for this command only.
        """
        self._require(table)
        ident = self.ref(table).sql
        hours = self.options.vacuum_retention_hours if retention_hours is None else retention_hours
        retain = f" RETAIN {int(hours)} HOURS"
        check = "spark.databricks.delta.retentionDurationCheck.enabled"
        lowered = hours < 168
        previous = self.spark.conf.get(check, "true") if lowered else None
        if lowered:
            self.spark.conf.set(check, "false")
        try:
            rows = self.spark.sql(f"VACUUM {ident}{retain} DRY RUN").collect()
            paths = sorted(str(row[0]) for row in rows)
            if not dry_run:
                self.spark.sql(f"VACUUM {ident}{retain}").collect()
        finally:
            if lowered:
                self.spark.conf.set(check, previous or "true")
        return paths

    def optimize(self, table: str, zorder_by: Sequence[str]) -> None:
        """``OPTIMIZE`` so a prefix query (``bucket1 = k``) skips most files.

        A liquid-clustered table is clustered by its own keys (``OPTIMIZE``, incremental:
        only files not yet clustered are rewritten); any other is ``ZORDER BY zorder_by``.
        """
        self._require(table)
        if self.clustering_columns(table):
            self.spark.sql(f"OPTIMIZE {self.ref(table).sql}").collect()
            return
        self._delta_table(table).optimize().executeZOrderBy(*zorder_by)


def _sql(text: str) -> str:
    """``text`` inside a single-quoted SQL string literal."""
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _user_keys(row: Row) -> dict[str, str]:
    raw = row["userMetadata"]
    try:
        meta = json.loads(raw) if raw else {}
    except json.JSONDecodeError:  # another writer's free-text metadata
        meta = {}
    return hermes_keys(meta) if isinstance(meta, dict) else {}
