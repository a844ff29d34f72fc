"""The Delta table interface, table-argument parsing and the choice of backend.

Driver only. :func:`get_store` returns one of two backends behind :class:`DeltaStore`:

* ``native`` — Delta Lake on Spark (delta-spark: Databricks, or the jars ``make setup``
  fetches): Spark reads, writes and commits; tables are paths or catalog names.
* ``embedded`` — executors write plain Parquet, the driver commits those files with
  delta-rs; tables are paths only.

``delta.engine: auto`` (the default) takes native wherever Delta SQL answers on the
session, else embedded, and logs which one and why. Only this package knows which
backend is in use; callers see :class:`DeltaStore`.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from hermes_spark.errors import InvalidConfigError, InvalidInputError

log = logging.getLogger(__name__)

ENGINES = ("auto", "native", "embedded")
#: Delta's own default for ``delta.deletedFileRetentionDuration`` (7 days).
DEFAULT_RETENTION_HOURS = 168


@dataclass(frozen=True)
class DeltaSettings:
    """How hermes writes Delta tables: the one record of config section ``delta``
    (``config.DeltaConfig`` is this class). Validated on construction."""

    #: auto (native where Delta SQL answers, else embedded) | native | embedded
    engine: str = "auto"
    #: a checkpoint every this many commits keeps the log fast to read (embedded; native
    #: uses the table's ``delta.checkpointInterval``, whose default is the same 10)
    checkpoint_interval: int = 10
    #: at most this many rows per data file of every table hermes writes (Spark's
    #: maxRecordsPerFile; annotate also sizes a chunk's codes files by it); 0 = no limit.
    #: The one row-count key (``annotate.rows_per_file`` is its deprecated alias).
    rows_per_file: int = 1_000_000
    #: vacuum never removes files younger than this (protects writers still running)
    vacuum_retention_hours: int = DEFAULT_RETENTION_HOURS
    #: a catalog is configured: a bare single word is a table name, not a relative path
    catalog_names: bool = False
    #: each write task sorts its rows by these columns (when present), so with
    #: ``rows_per_file`` every file spans a narrow range and data skipping works
    sort_by: tuple[str, ...] = ("bucket1", "bucket2")
    #: native Delta: tables given ``cluster_by`` are created CLUSTER BY (liquid
    #: clustering) instead of partitioned; false: partitioned + Z-order by ``optimize``
    liquid_clustering: bool = True

    def __post_init__(self) -> None:
        sort_by: str | Sequence[str] | None = self.sort_by  # a config may give "a, b"
        if isinstance(sort_by, str):
            sort_by = [c.strip() for c in sort_by.split(",") if c.strip()]
        object.__setattr__(self, "sort_by", tuple(sort_by or ()))
        if self.engine not in ENGINES:
            raise InvalidConfigError(
                f"{self.engine!r} is not one of {', '.join(ENGINES)}", key="delta.engine"
            )
        value = self.checkpoint_interval
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidConfigError(
                f"must be a positive integer, got {value!r}", key="delta.checkpoint_interval"
            )
        for key in ("rows_per_file", "vacuum_retention_hours"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidConfigError(
                    f"must be an integer >= 0, got {value!r}", key=f"delta.{key}"
                )


_detected: dict[int, tuple[bool, str]] = {}


# ----------------------------------------------------------------- table arguments

_NAME_PART = r"(?:`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)"
_NAME = re.compile(rf"^{_NAME_PART}(?:\.{_NAME_PART}){{0,2}}$")


@dataclass(frozen=True)
class TableRef:
    """A table argument resolved to a catalog name or a path."""

    text: str
    is_name: bool

    @property
    def sql(self) -> str:
        """The table as a Spark SQL identifier (``db.t`` or ``delta.`/path```)."""
        if self.is_name:
            return self.text
        return "delta.`" + self.text.replace("`", "``") + "`"


def parse_table(table: str, *, catalog: bool = False) -> TableRef:
    """Resolve ``table`` to a catalog name (``db.t``, ``cat.schema.t``) or a path.

    A path has a ``/`` or a URI scheme. A dotted identifier of 2 or 3 parts is a name. A
    bare single word is a name only where a catalog is configured (``catalog``, which a
    store passes from its ``delta.catalog_names`` setting); otherwise it is refused, since
    it would silently become a relative directory. Raises :class:`InvalidInputError`
    saying which it took.
    """
    text = table.strip()
    if not text:
        raise InvalidInputError("empty table argument: give a path or a catalog name")
    if "/" in text or "://" in text or text.startswith("."):
        return TableRef(text, False)
    if not _NAME.match(text):
        raise InvalidInputError(
            f"table {table!r} is neither a path (no '/') nor a catalog name like db.codes "
            "or catalog.schema.codes; write ./" + text + " for a relative path"
        )
    if len(re.findall(_NAME_PART, text)) == 1 and not catalog:
        raise InvalidInputError(
            f"table {table!r} is a bare word: taken as neither a path nor a catalog "
            f"name. Write ./{text} for a directory here, or db.{text} for a table of "
            "the Spark catalog (set delta.catalog_names: true to allow bare names)"
        )
    return TableRef(text, True)


def is_catalog_name(table: str) -> bool:
    """True when ``table`` is a catalog name (no ``/`` and no URI scheme), not a path."""
    return "/" not in table and "://" not in table and not table.startswith(".")


# --------------------------------------------------------------- shared helpers


def check_txn_args(app_id: str | None, app_version: int | None) -> None:
    """Refuse half-given or negative application-transaction arguments."""
    if (app_id is None) != (app_version is None):
        raise InvalidInputError("app_id and app_version must be given together")
    if app_version is not None and app_version < 0:
        raise InvalidInputError(f"app_version must be >= 0, got {app_version}")


def hermes_keys(meta: Mapping[str, object]) -> dict[str, str]:
    """The ``hermes.*`` entries of a commit's metadata, as strings."""
    return {k: str(v) for k, v in meta.items() if k.startswith("hermes.")}


def txn_marker(app_id: str, app_version: int) -> str:
    """The ``hermes.txn`` value a commit of an application transaction records."""
    return f"{app_id}@{app_version}"


def parse_txn_marker(value: str) -> tuple[str, int] | None:
    """``(app_id, version)`` of a ``hermes.txn`` value, None if malformed."""
    app_id, sep, version = value.rpartition("@")
    return (app_id, int(version)) if sep and version.isdigit() else None


# ------------------------------------------------------------------------ backends


def _condition(exc: BaseException) -> str:
    get = getattr(exc, "getCondition", None) or getattr(exc, "getErrorClass", None)
    try:
        return str(get() or "") if get else ""
    except Exception:  # best effort on foreign exception types
        return ""


def native_delta_available(spark: SparkSession) -> tuple[bool, str]:
    """Whether Delta SQL works on ``spark``, and why (driver; cached per session).

    Asks Delta itself instead of reading confs or classes: ``DESCRIBE HISTORY`` of a path
    that does not exist answers with a Delta error (``DELTA_*``, "not a Delta table")
    wherever Delta is built in (Databricks, where ``spark.sql.extensions`` may be empty) or
    loaded, on classic and Spark Connect sessions alike; without Delta it is a parse or
    data-source error. No ``_jvm``, no files are touched.
    """
    key = id(spark)
    if key in _detected:
        return _detected[key]
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        found = (True, "Databricks Runtime ships Delta Lake")
    else:
        probe = f"/nonexistent/hermes-delta-probe-{uuid.uuid4().hex}"
        try:
            spark.sql(f"DESCRIBE HISTORY delta.`{probe}`").collect()
            found = (True, "DESCRIBE HISTORY answered")
        except Exception as exc:  # classic and Connect raise different types
            condition = _condition(exc)
            if condition.startswith("DELTA_") or "not a Delta table" in str(exc):
                found = (True, f"Delta SQL answered ({condition or 'not a Delta table'})")
            else:
                found = (False, f"Delta SQL is not available ({condition or type(exc).__name__})")
    _detected[key] = found
    return found


class DeltaStore(ABC):
    """Reads, appends, overwrites, deletes and vacuums Delta tables.

    Every method is called on the driver; the Spark jobs it starts run on executors.
    """

    name: str

    def __init__(self, spark: SparkSession, options: DeltaSettings | None = None) -> None:
        self.spark = spark
        self.options = options or DeltaSettings()

    def clustered(self, df: DataFrame) -> DataFrame:
        """``df`` sorted within its partitions by the ``sort_by`` columns it has (no shuffle).

        Runs on executors as part of the write: each task's files then cover a narrow range
        of ``bucket1, bucket2``, so a prefix query reads few files.
        """
        columns = [c for c in self.options.sort_by if c in df.columns]
        return df.sortWithinPartitions(*columns) if columns else df

    def ref(self, table: str) -> TableRef:
        """``table`` parsed as a path or catalog name (:func:`parse_table`)."""
        return parse_table(table, catalog=self.options.catalog_names)

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
        cluster_by: Sequence[str] = (),
    ) -> bool:
        """Append ``df`` in one commit, creating the table if needed.

        With ``app_id``/``app_version`` the append is idempotent (Delta's application
        transaction): it is skipped (returns False) when the table already holds a commit
        of ``app_id`` at a version ``>= app_version``. Returns True when it committed.

        ``cluster_by`` is a layout hint for a table this call creates: native Delta with
        liquid clustering (``delta.liquid_clustering``) creates it ``CLUSTER BY
        (partition_by + cluster_by)`` and unpartitioned (Delta allows one or the other);
        otherwise the table is partitioned by ``partition_by`` and each write task sorts
        by ``sort_by``. Appends to a clustered table ignore ``partition_by``.
        """

    @abstractmethod
    def overwrite(self, df: DataFrame, table: str, *, partition_by: Sequence[str] = ()) -> None:
        """Replace the whole table (data and schema) with ``df`` in one commit.

        Only the files of the snapshot current when the call starts are removed: a commit
        that lands meanwhile makes the overwrite fail (:class:`ConflictError`) or survive
        it, never vanish.
        """

    @abstractmethod
    def commit_metadata(self, table: str) -> list[dict[str, str]]:
        """The ``hermes.*`` metadata of every commit still in the log, newest first (driver)."""

    @abstractmethod
    def history(self, table: str, limit: int | None = None) -> list[dict[str, object]]:
        """``version``, ``operation`` and ``hermes.*`` keys of each commit, newest first
        (the newest ``limit`` commits only, when given: the log is read no further)."""

    @abstractmethod
    def replace_partition(self, df: DataFrame, table: str, column: str, value: str) -> None:
        """Replace the rows of partition ``column = value`` with ``df`` in one commit.

        Files of every other partition are untouched (neither rewritten nor re-added);
        the table's schema and partitioning are kept. Every row of ``df`` must belong to
        that partition. Concurrent commits are never dropped (see :meth:`overwrite`).
        """

    def describe(
        self,
        table: str,
        comment: str,
        columns: Mapping[str, str],
        properties: Mapping[str, str],
    ) -> None:
        """Set the table comment, column comments and properties, committing only what
        differs from the current metadata (see :mod:`hermes_spark.delta.describe`)."""
        log.info("%s cannot describe tables; %s keeps no comments", type(self).__name__, table)

    @abstractmethod
    def delete(self, table: str, predicate: str) -> int:
        """Delete the rows matching the SQL ``predicate``; returns how many were deleted."""

    @abstractmethod
    def delete_matched(self, table: str, keys: DataFrame, condition: str) -> int:
        """Delete the rows of ``table`` (alias ``t``) that match a row of ``keys`` (alias
        ``s``) under the SQL join ``condition``: a MERGE, so the size of ``keys`` never
        becomes the size of a predicate. Returns how many rows were deleted."""

    @abstractmethod
    def txn_version(self, table: str, app_id: str) -> int | None:
        """Latest version committed by ``app_id``, None if never (or no table yet)."""

    @abstractmethod
    def vacuum(
        self, table: str, *, dry_run: bool = False, retention_hours: int | None = None
    ) -> list[str]:
        """Remove data files the table no longer references; returns their paths.

        Guarantee: a file younger than the retention is never removed, so the staged or
        uncommitted files of a writer that started less than ``retention_hours`` ago
        survive. ``None`` means ``delta.vacuum_retention_hours`` (default 168 h, Delta's
        own default); 0 removes every unreferenced file at once — only when no writer runs.
        """

    @abstractmethod
    def version(self, table: str) -> int:
        """Current version of the Delta table."""

    @abstractmethod
    def optimize(self, table: str, zorder_by: Sequence[str]) -> None:
        """Rewrite the files Z-ordered by ``zorder_by`` (e.g. ``bucket1, bucket2``); a
        liquid-clustered table is clustered by its own keys instead.

        Afterwards each file covers a narrow range of those columns, so a query on a code
        prefix (``bucket1 = k``) skips most files by their min/max statistics.
        """
