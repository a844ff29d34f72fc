"""Parquet footers → Delta ``stats``, add actions, and Spark ↔ Delta schema conversion.

Driver only (footers and listings, never data). Used by the embedded backend to commit
files Spark wrote, and by tests to look at a table's add actions.
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import types as T

from hermes_spark.errors import InvalidInputError

if TYPE_CHECKING:  # delta-rs is the [local] extra: imported where the embedded engine runs
    from deltalake import DeltaTable, Schema
    from deltalake.transaction import AddAction

#: Sub-directory of an embedded table where each run stages its Parquet files.
DATA_DIR = "data"
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
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


@dataclass(frozen=True)
class Location:
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
    from deltalake import Schema

    return Schema.from_json(json.dumps(_loosen(schema.jsonValue())))


def spark_schema(schema: Schema) -> T.StructType:
    """Spark schema of a Delta (delta-rs) schema."""
    return T.StructType.fromJson(json.loads(schema.to_json()))


def check_compatible(
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


def check_partition_columns(schema: T.StructType, partition_by: Sequence[str]) -> None:
    fields = {f.name: f for f in schema.fields}
    for name in partition_by:
        if name not in fields:
            raise InvalidInputError(f"partition column {name!r} is not a column of the data")
        if not isinstance(fields[name].dataType, PARTITION_TYPES):
            raise InvalidInputError(
                f"partition column {name!r} has type {fields[name].dataType.simpleString()}; "
                "the embedded Delta writer partitions by string, integer, boolean or date only"
            )


def is_hidden(relative: str) -> bool:
    return any(part[:1] in "._" for part in relative.split("/"))


def add_files(
    delta_table: DeltaTable, part_cols: Sequence[str]
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(log path, partition values) of every file of the current snapshot."""
    actions = pa.table(delta_table.get_add_actions(flatten=True))
    columns = [actions.column("path").to_pylist()]
    columns += [actions.column(f"partition.{c}").to_pylist() for c in part_cols]
    for path, *values in zip(*columns, strict=True):
        yield path, tuple(values)


def file_location(loc: Location, log_path: str) -> str:
    """A Delta log path (percent-encoded, relative or absolute URI) as a file location."""
    if "://" in log_path:
        return unquote(log_path)
    if log_path.startswith("/") and log_path.startswith(loc.root + "/"):
        return log_path  # an absolute path inside the table (delta-rs vacuum lists some so)
    return f"{loc.root}/{unquote(log_path)}"


def add_action(loc: Location, info: pafs.FileInfo, partition_by: Sequence[str]) -> AddAction:
    """AddAction of one staged file: Hive partition values from its path, stats from footer."""
    relative = posixpath.relpath(info.path, loc.root)
    values: dict[str, str | None] = {}
    for part in relative.split("/")[2:-1]:  # data/<run-id>/k=v/.../file
        key, _, raw = part.partition("=")
        if key in partition_by:
            value = unquote(raw)
            values[key] = None if value == HIVE_NULL else value
    footer = pq.read_metadata(info.path, filesystem=loc.fs)
    mtime_ns = info.mtime_ns or datetime.now(UTC).timestamp() * 1e9
    from deltalake.transaction import AddAction

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


def remove_empty_dirs(fs: pafs.FileSystem, directory: str) -> None:
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


def live_files(uri: str) -> list[dict[str, Any]]:
    """``path``, ``num_records`` and column ``min``/``max`` of each file of the snapshot.

    Reads the add actions of a path table with delta-rs (any writer's table): for tests
    and diagnostics of data skipping, never on a native-mode code path.
    """
    from deltalake import DeltaTable

    actions = pa.table(DeltaTable(uri).get_add_actions(flatten=True)).to_pylist()
    files = []
    for action in actions:
        files.append(
            {
                "path": action["path"],
                "num_records": action.get("num_records"),
                "min": {k[4:]: v for k, v in action.items() if k.startswith("min.")},
                "max": {k[4:]: v for k, v in action.items() if k.startswith("max.")},
            }
        )
    return files
