"""Delta store: real local Spark writes + real delta-rs commits, checked by two readers.

Every table is read back both by Spark (through the store) and independently by delta-rs
(``deltalake.DeltaTable(...).to_pyarrow_table``), so a wrong log entry shows up in either.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from hermes_spark.delta import DATA_DIR, file_stats, is_catalog_name
from hermes_spark.delta.embedded import EmbeddedDeltaStore
from hermes_spark.errors import ConflictError, InvalidInputError
from hermes_spark.schema import rejects_table_name

pytestmark = pytest.mark.spark

SCHEMA = T.StructType(
    [
        T.StructField("doc_id", T.StringType(), False),
        T.StructField("c1", T.IntegerType(), False),
        T.StructField("bucket3", T.LongType(), False),
        T.StructField("qerr1", T.FloatType(), False),
        T.StructField("quality", T.DoubleType(), True),
        T.StructField("ok", T.BooleanType(), True),
        T.StructField("annotated_at", T.TimestampType(), True),
        T.StructField("day", T.DateType(), True),
        T.StructField("vec", T.ArrayType(T.FloatType()), True),
        T.StructField("codebook_version", T.StringType(), True),
    ]
)
TS = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def make_rows(n: int, start: int = 0, version: str = "cb-a") -> list[tuple[Any, ...]]:
    """Rows covering every column type, with nulls in the nullable ones."""
    return [
        (
            f"d{i:04d}",
            i % 7,
            i * 10_000_000_000,
            i / 4,
            None if i % 3 == 0 else i * 1.5,
            None if i % 5 == 0 else i % 2 == 0,
            TS.replace(second=i % 60),
            date(2024, 1, 1 + i % 28),
            None if i % 4 == 0 else [i * 0.5, -1.25],
            version,
        )
        for i in range(start, start + n)
    ]


def normalize(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Comparable row: timestamps as epoch microseconds, arrays as tuples."""
    out = []
    for value in row:
        if isinstance(value, datetime):
            value = int(value.timestamp()) * 1_000_000 + value.microsecond
        elif isinstance(value, list):
            value = tuple(value)
        out.append(value)
    return tuple(out)


def spark_rows(df: DataFrame) -> list[tuple[Any, ...]]:
    """Sorted rows of a Spark DataFrame, timestamps as epoch microseconds (tz-proof)."""
    cols = [
        F.unix_micros(F.col(f.name)).alias(f.name)
        if isinstance(f.dataType, T.TimestampType)
        else F.col(f.name)
        for f in df.schema.fields
    ]
    return sorted((normalize(tuple(r)) for r in df.select(*cols).collect()), key=repr)


def delta_rs_rows(path: Path, columns: list[str]) -> list[tuple[Any, ...]]:
    """Sorted rows read by delta-rs alone (log replay + its own Parquet scan).

    An explicit local filesystem is passed because deltalake 1.6.6's default one aborts the
    interpreter at exit after ``to_pyarrow_table``.
    """
    fs = pafs.SubTreeFileSystem(str(path), pafs.LocalFileSystem())
    table = DeltaTable(str(path)).to_pyarrow_table(filesystem=fs)
    arrays = []
    for name in columns:
        column = table.column(name)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        arrays.append(column.to_pylist())
    return sorted((normalize(tuple(r)) for r in zip(*arrays, strict=True)), key=repr)


def expected(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted((normalize(r) for r in rows), key=repr)


@pytest.fixture
def store(spark: SparkSession) -> EmbeddedDeltaStore:
    return EmbeddedDeltaStore(spark)


@pytest.fixture
def codes(spark: SparkSession):
    def build(n: int, start: int = 0, version: str = "cb-a") -> DataFrame:
        return spark.createDataFrame(make_rows(n, start, version), SCHEMA)

    return build


def run_dirs(table: Path) -> list[str]:
    data = table / DATA_DIR
    return sorted(os.listdir(data)) if data.exists() else []


# ----------------------------------------------------------------------- selection


def test_names_and_rejects_table() -> None:
    assert is_catalog_name("main.hermes.codes")
    assert not is_catalog_name("/data/codes")
    assert not is_catalog_name("s3://bucket/codes")
    assert rejects_table_name("/data/codes/") == "/data/codes_rejects"
    assert rejects_table_name("main.hermes.codes") == "main.hermes.codes_rejects"


# ---------------------------------------------------------------- append and read


def test_append_creates_table_both_readers_see_same_rows(store, codes, tmp_path) -> None:
    table = tmp_path / "codes"
    rows = make_rows(40)
    assert not store.exists(str(table))

    assert store.append(codes(40), str(table), app_id="annotate", app_version=1) is True

    assert store.exists(str(table))
    assert store.version(str(table)) == 0  # the first append creates the table: one commit
    assert store.txn_version(str(table), "annotate") == 1
    read = store.read(str(table))
    assert [(f.name, f.dataType) for f in read.schema.fields] == [
        (f.name, f.dataType) for f in SCHEMA.fields
    ]
    assert spark_rows(read) == expected(rows)
    assert delta_rs_rows(table, SCHEMA.fieldNames()) == expected(rows)
    # staged under data/<run-id>/, without Spark's _SUCCESS / .crc side files
    (run,) = run_dirs(table)
    staged = sorted(os.listdir(table / DATA_DIR / run))
    assert staged and all(name.endswith(".parquet") for name in staged)


def test_append_records_footer_statistics(store, codes, tmp_path) -> None:
    table = tmp_path / "codes"
    store.append(codes(20), str(table))
    actions = pa.table(DeltaTable(str(table)).get_add_actions(flatten=True)).to_pylist()
    assert sum(a["num_records"] for a in actions) == 20
    assert min(a["min.c1"] for a in actions) == 0
    assert max(a["max.c1"] for a in actions) == 6
    assert sum(a["null_count.quality"] for a in actions) == 7  # i % 3 == 0 for i < 20
    assert min(a["min.doc_id"] for a in actions) == "d0000"
    assert max(a["max.doc_id"] for a in actions) == "d0019"


def test_same_app_version_commits_once(store, codes, tmp_path) -> None:
    table = str(tmp_path / "codes")
    assert store.append(codes(10), table, app_id="job", app_version=3) is True
    assert store.append(codes(10), table, app_id="job", app_version=3) is False
    assert store.append(codes(10), table, app_id="job", app_version=2) is False

    assert store.read(table).count() == 10
    assert store.version(table) == 0
    assert len(run_dirs(tmp_path / "codes")) == 1  # skipped appends stage nothing

    assert store.append(codes(5, start=10), table, app_id="job", app_version=4) is True
    assert store.txn_version(table, "job") == 4
    assert store.read(table).count() == 15


def test_racing_writer_that_wins_makes_the_other_skip(store, codes, tmp_path, monkeypatch):
    table = tmp_path / "codes"
    store.append(codes(5), str(table), app_id="other", app_version=1)
    original = DeltaTable.create_write_transaction
    calls = []

    def rival_commits_first(self: DeltaTable, *args: Any, **kwargs: Any) -> None:
        if not calls:  # between our txn check and our commit, a rival records the txn
            rival = DeltaTable(str(table))
            props = CommitProperties(app_transactions=[Transaction("job", 1)])
            original(rival, [], "append", schema=rival.schema(), commit_properties=props)
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "create_write_transaction", rival_commits_first)
    assert store.append(codes(5, start=5), str(table), app_id="job", app_version=1) is False
    assert len(calls) == 1  # conflicted once, then saw the rival's txn and stopped
    assert store.read(str(table)).count() == 5
    assert len(run_dirs(table)) == 1  # the loser's staged files are gone


def test_threads_racing_on_one_txn_commit_once(spark, codes, tmp_path) -> None:
    table = str(tmp_path / "codes")
    EmbeddedDeltaStore(spark).append(codes(3), table)
    results: list[bool] = []

    def write(start: int) -> None:
        results.append(
            EmbeddedDeltaStore(spark).append(codes(4, start), table, app_id="a", app_version=1)
        )

    threads = [threading.Thread(target=write, args=(s,)) for s in (100, 200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True]
    assert EmbeddedDeltaStore(spark).read(table).count() == 7


def test_persistent_conflicts_raise_conflict_error(store, codes, tmp_path, monkeypatch) -> None:
    table = tmp_path / "codes"
    store.append(codes(5), str(table))

    def always_conflicts(self: DeltaTable, *args: Any, **kwargs: Any) -> None:
        raise CommitFailedError("Failed to commit transaction: Concurrent transaction failed.")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", always_conflicts)
    with pytest.raises(ConflictError, match="conflicted with concurrent writers"):
        store.append(codes(5, start=5), str(table), app_id="job", app_version=1)
    monkeypatch.undo()
    assert store.read(str(table)).count() == 5
    assert len(run_dirs(table)) == 1
    assert store.txn_version(str(table), "job") is None


def test_empty_append_creates_empty_table_and_records_txn(store, spark, tmp_path) -> None:
    table = str(tmp_path / "empty")
    assert store.append(spark.createDataFrame([], SCHEMA), table, app_id="j", app_version=0)
    read = store.read(table)
    assert read.count() == 0
    assert read.schema.fieldNames() == SCHEMA.fieldNames()
    assert store.txn_version(table, "j") == 0


# ------------------------------------------------------------ staging and vacuum


def test_uncommitted_staged_files_are_invisible_and_vacuumed(store, codes, tmp_path) -> None:
    table = tmp_path / "codes"
    store.append(codes(8), str(table))
    orphan = table / DATA_DIR / "killed-run"
    codes(6, start=100).write.parquet(str(orphan))  # a run killed before its commit

    assert store.read(str(table)).count() == 8
    assert len(delta_rs_rows(table, ["doc_id"])) == 8

    would = store.vacuum(str(table), dry_run=True, retention_hours=0)
    assert would and all(p.startswith(f"{DATA_DIR}/killed-run/") for p in would)
    assert orphan.exists()

    removed = store.vacuum(str(table), retention_hours=0)
    assert sorted(removed) == sorted(would)
    assert not orphan.exists()
    assert spark_rows(store.read(str(table))) == expected(make_rows(8))


def test_overwrite_replaces_everything(store, codes, spark, tmp_path) -> None:
    table = tmp_path / "stats"
    store.append(codes(10), str(table))
    store.overwrite(codes(3, start=50), str(table))

    assert store.version(str(table)) == 1
    assert spark_rows(store.read(str(table))) == expected(make_rows(3, start=50))
    assert delta_rs_rows(table, SCHEMA.fieldNames()) == expected(make_rows(3, start=50))

    other = spark.createDataFrame([(1, "x")], "level int, name string")
    store.overwrite(other, str(table))  # stats outputs may change shape
    assert [tuple(r) for r in store.read(str(table)).collect()] == [(1, "x")]
    assert store.vacuum(str(table), retention_hours=0)  # old files go
    assert store.read(str(table)).count() == 1  # the current snapshot stays readable
    assert store.read(str(table)).count() == 1


def test_append_with_other_schema_is_refused(store, codes, spark, tmp_path) -> None:
    table = str(tmp_path / "codes")
    store.append(codes(3), table)
    with pytest.raises(InvalidInputError, match="schema differs"):
        store.append(codes(3).drop("quality"), table)
    with pytest.raises(InvalidInputError, match="partitioned by"):
        store.append(codes(3), table, partition_by=["codebook_version"])


# ------------------------------------------------------------ partitions and delete


def test_partitioned_append_reads_back_partition_column(store, codes, tmp_path) -> None:
    table = tmp_path / "codes"
    odd = "cb v1:x%"  # Spark escapes ':' and '%' in the directory name
    rows = make_rows(6, version="cb-a") + make_rows(4, start=6, version=odd)
    rows += [(*make_rows(1, start=10)[0][:-1], None)]
    df = codes(6).unionByName(codes(4, 6, odd)).unionByName(codes(1, 10, None))

    store.append(df, str(table), partition_by=["codebook_version"])

    (run,) = run_dirs(table)
    parts = sorted(os.listdir(table / DATA_DIR / run))
    assert "codebook_version=cb-a" in parts and len(parts) == 3
    read = store.read(str(table))
    assert read.schema.fieldNames() == SCHEMA.fieldNames()
    assert spark_rows(read) == expected(rows)
    assert delta_rs_rows(table, SCHEMA.fieldNames()) == expected(rows)
    assert DeltaTable(str(table)).metadata().partition_columns == ["codebook_version"]


def test_delete_by_predicate(store, codes, tmp_path) -> None:
    table = tmp_path / "codes"
    df = codes(6, version="cb-a").unionByName(codes(5, start=6, version="cb-b"))
    store.append(df, str(table), partition_by=["codebook_version"])

    assert store.delete(str(table), "codebook_version = 'cb-a'") == 6
    left = make_rows(5, start=6, version="cb-b")
    assert spark_rows(store.read(str(table))) == expected(left)

    # a predicate on a data column makes delta-rs rewrite files (pruned by our stats)
    assert store.delete(str(table), "c1 >= 5") == sum(1 for r in left if r[1] >= 5)
    kept = [r for r in left if r[1] < 5]
    assert spark_rows(store.read(str(table))) == expected(kept)
    assert delta_rs_rows(table, SCHEMA.fieldNames()) == expected(kept)
    assert store.delete(str(table), "codebook_version = 'nope'") == 0


# ------------------------------------------------------------------------ errors


def test_non_delta_directory_is_invalid_input(store, codes, spark, tmp_path) -> None:
    plain = tmp_path / "plain"
    codes(2).write.parquet(str(plain))
    assert not store.exists(str(plain))
    with pytest.raises(InvalidInputError, match="is not a Delta table"):
        store.read(str(plain))
    with pytest.raises(InvalidInputError, match="is not a Delta table"):
        store.append(codes(2), str(plain))
    with pytest.raises(InvalidInputError, match="is not a Delta table"):
        store.read(str(tmp_path / "missing"))
    with pytest.raises(InvalidInputError, match="catalog"):
        store.read("main.hermes.codes")


# ----------------------------------------------------------- helpers (no Spark job)


def test_file_stats_are_safe_bounds(tmp_path) -> None:
    import pyarrow.parquet as pq

    ts = pa.array([datetime(2024, 1, 1, 0, 0, 0, 1500, tzinfo=UTC)], pa.timestamp("us", "UTC"))
    data = pa.table(
        {
            "ts": ts,
            "long": ["a" * 40],
            "f": pa.array([float("nan")], pa.float64()),
            "b": [True],
            "n": pa.array([None], pa.int64()),
        }
    )
    pq.write_table(data, tmp_path / "f.parquet")
    stats = json.loads(file_stats(pq.read_metadata(tmp_path / "f.parquet")))
    assert stats["numRecords"] == 1
    assert stats["minValues"]["ts"] == "2024-01-01T00:00:00.001Z"  # floored to ms
    assert stats["maxValues"]["ts"] == "2024-01-01T00:00:00.002Z"  # ceiled to ms
    assert stats["minValues"]["long"] == "a" * 32
    assert "long" not in stats["maxValues"]  # a cut max would be below the real one
    assert "b" not in stats["minValues"]
    assert stats["nullCount"] == {"ts": 0, "long": 0, "f": 0, "b": 0, "n": 1}


def test_replace_partition_touches_no_other_partition(store, codes, tmp_path) -> None:
    table = tmp_path / "codes"
    odd = "cb v1:x%'"
    df = codes(6, version="cb-a").unionByName(codes(5, start=6, version=odd))
    store.append(df, str(table), partition_by=["codebook_version"])

    def files_of(version: str) -> set[str]:
        adds = pa.table(DeltaTable(str(table)).get_add_actions(flatten=True)).to_pandas()
        return set(adds.loc[adds["partition.codebook_version"] == version, "path"])

    untouched, replaced = files_of("cb-a"), files_of(odd)
    store.replace_partition(codes(2, start=40, version=odd), str(table), "codebook_version", odd)

    assert files_of("cb-a") == untouched
    assert files_of(odd).isdisjoint(replaced)
    rows = make_rows(6, version="cb-a") + make_rows(2, start=40, version=odd)
    assert spark_rows(store.read(str(table))) == expected(rows)
    assert delta_rs_rows(table, SCHEMA.fieldNames()) == expected(rows)
    with pytest.raises(InvalidInputError, match="partitioned by"):
        store.replace_partition(codes(1), str(table), "c1", "0")


# ------------------------------------------------- issue 9: regressions of the embedded store


def test_overwrite_never_drops_a_row_appended_while_it_ran(store, codes, tmp_path, monkeypatch):
    table = tmp_path / "stats"
    store.append(codes(4), str(table))
    stage = EmbeddedDeltaStore._stage

    rivals: list[int] = []

    def rival_appends_after_staging(self, *args: Any, **kwargs: Any):
        staged = stage(self, *args, **kwargs)
        if not rivals:  # once: the rival's own append stages through here too
            rivals.append(1)
            EmbeddedDeltaStore(self.spark).append(codes(1, start=777), str(table))
        return staged

    monkeypatch.setattr(EmbeddedDeltaStore, "_stage", rival_appends_after_staging)
    with contextlib.suppress(ConflictError):  # failing is allowed; dropping the row is not
        store.overwrite(codes(2, start=50), str(table))
    monkeypatch.undo()
    ids = {r["doc_id"] for r in store.read(str(table)).collect()}
    assert "d0777" in ids
    assert ids in ({"d0777", "d0050", "d0051"}, {"d0777", "d0000", "d0001", "d0002", "d0003"})


def test_default_vacuum_keeps_the_staged_files_of_a_running_writer(store, codes, tmp_path):
    table = tmp_path / "codes"
    store.append(codes(3), str(table))
    in_flight = table / DATA_DIR / "20990101T000000-running"
    codes(2, start=40).write.parquet(str(in_flight))  # staged, not yet committed
    assert store.vacuum(str(table)) == []
    assert any(in_flight.rglob("*.parquet"))
    assert store.read(str(table)).count() == 3


def test_checkpoint_every_n_commits(spark, codes, tmp_path) -> None:
    from hermes_spark.delta import DeltaSettings

    store = EmbeddedDeltaStore(spark, DeltaSettings(checkpoint_interval=3))
    table = tmp_path / "codes"
    for i in range(8):
        store.append(codes(1, start=i), str(table), app_id=f"c{i}", app_version=1)
    log_dir = table / "_delta_log"
    points = sorted(int(p.name.split(".")[0]) for p in log_dir.glob("*.checkpoint.parquet"))
    assert points == [3, 6]
    assert json.loads((log_dir / "_last_checkpoint").read_text())["version"] == 6
    # The log before the checkpoint is no longer needed to know the txns.
    for version in range(6):
        (log_dir / f"{version:020d}.json").unlink()
    fresh = EmbeddedDeltaStore(spark)
    assert fresh.txn_version(str(table), "c1") == 1 and fresh.txn_version(str(table), "c7") == 1
    assert fresh.read(str(table)).count() == 8


def test_txn_lookups_reuse_the_opened_log(store, codes, tmp_path, monkeypatch) -> None:
    table = str(tmp_path / "codes")
    for i in range(3):
        store.append(codes(1, start=i), table, app_id=f"c{i}", app_version=1)
    opened: list[str] = []
    init = DeltaTable.__init__

    def counting_init(self, uri: Any, *args: Any, **kwargs: Any) -> None:
        opened.append(str(uri))
        init(self, uri, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "__init__", counting_init)
    lookups = [store.txn_version(table, f"c{i % 4}") for i in range(40)]
    assert lookups.count(None) == 10 and lookups.count(1) == 30
    assert opened == []  # brought up to date incrementally, never re-read from scratch


# ------------------------------------------------------------ catalog names (native)


def test_native_catalog_table_by_name(spark, codes, tmp_path) -> None:
    from hermes_spark.delta import get_store

    native = get_store(spark, "native")
    spark.sql(f"CREATE DATABASE IF NOT EXISTS hermes_t LOCATION '{tmp_path / 'wh'}'")
    try:
        name = "hermes_t.codes"
        assert not native.exists(name)
        assert native.append(codes(5), name, app_id="c0", app_version=1) is True
        assert native.append(codes(5), name, app_id="c0", app_version=1) is False
        assert native.exists(name) and native.read(name).count() == 5
        assert native.txn_version(name, "c0") == 1
        assert spark.table(name).count() == 5  # a real catalog table
        assert (tmp_path / "wh" / "codes" / "_delta_log").is_dir()
        assert native.delete(name, "c1 = 0") == sum(1 for i in range(5) if i % 7 == 0)
        assert rejects_table_name(name) == "hermes_t.codes_rejects"
    finally:
        spark.sql("DROP DATABASE IF EXISTS hermes_t CASCADE")


def test_bare_table_word_is_a_clean_exit_2(capsys, tmp_path, monkeypatch) -> None:
    from tests.helpers import assert_clean_error, run_cli

    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "stats", "--table", "codes", "--out", str(tmp_path / "s"))
    assert_clean_error(code, err, "'codes'", "bare word", "./codes")
