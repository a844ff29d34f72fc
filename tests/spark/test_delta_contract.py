"""One contract, two backends: every test runs on native (delta-spark) and embedded (delta-rs).

The session of ``conftest.spark`` is built by hermes with the jars of ``make jars``, so both
backends run in it; ``get_store(spark, engine)`` picks one explicitly. Tables are checked by
the store that wrote them, by the other backend and by ``deltalake`` alone.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.delta.files import live_files
from hermes_spark.errors import InvalidConfigError
from hermes_spark.schema import LEVELS_META, VERSION_META, recorded_levels

pytestmark = pytest.mark.spark

ENGINES = ("native", "embedded")
COLUMNS = ["doc_id", "bucket1", "bucket2", "qerr1", "codebook_version"]


@pytest.fixture(params=ENGINES)
def store(request, spark: SparkSession) -> DeltaStore:
    try:
        return get_store(spark, request.param)
    except InvalidConfigError as exc:  # native needs `make jars`: a setup error, not a skip
        pytest.fail(f"native Delta is not available in the test session: {exc}")


def other(store: DeltaStore, spark: SparkSession) -> DeltaStore:
    return get_store(spark, "embedded" if store.name == "native" else "native")


def codes(spark: SparkSession, n: int, start: int = 0, version: str = "cb-a") -> DataFrame:
    rows = [
        (f"d{i:05d}", i % 8, (i % 8) * 4 + i % 4, i / 8, version) for i in range(start, start + n)
    ]
    return spark.createDataFrame(
        rows, "doc_id string, bucket1 bigint, bucket2 bigint, qerr1 float, codebook_version string"
    )


def rows_of(df: DataFrame) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in df.select(*COLUMNS).collect())


def deltalake_rows(path: Path) -> list[tuple[Any, ...]]:
    """Rows read by delta-rs alone (explicit filesystem: see test_delta_store)."""
    fs = pafs.SubTreeFileSystem(str(path), pafs.LocalFileSystem())
    table = DeltaTable(str(path)).to_pyarrow_table(filesystem=fs)
    return sorted(zip(*(table.column(c).to_pylist() for c in COLUMNS), strict=True))


def expected(spark: SparkSession, *frames: DataFrame) -> list[tuple[Any, ...]]:
    return sorted(r for f in frames for r in rows_of(f))


def test_retried_chunk_commits_once(store, spark, tmp_path) -> None:
    table = str(tmp_path / "codes")
    chunk = codes(spark, 40)
    assert store.append(chunk, table, app_id="chunk-7", app_version=1) is True
    assert store.append(chunk, table, app_id="chunk-7", app_version=1) is False  # the retry
    assert store.append(codes(spark, 5, 100), table, app_id="chunk-8", app_version=1) is True
    assert store.txn_version(table, "chunk-7") == 1
    assert store.txn_version(table, "chunk-9") is None
    assert rows_of(store.read(table)) == expected(spark, chunk, codes(spark, 5, 100))
    assert store.version(table) == 1  # two commits, the retry made none


def test_txn_recorded_by_one_backend_is_honoured_by_the_other(store, spark, tmp_path) -> None:
    table = str(tmp_path / "codes")
    assert store.append(codes(spark, 10), table, app_id="chunk-1", app_version=1)
    twin = other(store, spark)
    assert twin.txn_version(table, "chunk-1") == 1
    assert twin.append(codes(spark, 10), table, app_id="chunk-1", app_version=1) is False
    assert twin.read(table).count() == 10


def test_replace_partition_touches_only_that_partition(store, spark, tmp_path) -> None:
    table = str(tmp_path / "codes")
    store.append(codes(spark, 30, version="cb-a"), table, partition_by=("codebook_version",))
    store.append(codes(spark, 20, 500, "cb-b"), table, partition_by=("codebook_version",))
    kept = sorted(f["path"] for f in live_files(table) if "cb-b" in f["path"])
    new = codes(spark, 7, 900, "cb-a")
    store.replace_partition(new, table, "codebook_version", "cb-a")
    after = store.read(table)
    assert rows_of(after) == expected(spark, codes(spark, 20, 500, "cb-b"), new)
    assert sorted(f["path"] for f in live_files(table) if "cb-b" in f["path"]) == kept


def test_overwrite_replaces_data_and_schema(store, spark, tmp_path) -> None:
    table = str(tmp_path / "stats")
    store.append(codes(spark, 12), table)
    store.overwrite(codes(spark, 3, 50), table)
    assert rows_of(store.read(table)) == expected(spark, codes(spark, 3, 50))
    store.overwrite(spark.createDataFrame([(1, "x")], "level int, name string"), table)
    assert [tuple(r) for r in store.read(table).collect()] == [(1, "x")]


def test_commit_metadata_is_readable_by_stats(store, spark, tmp_path) -> None:
    table = str(tmp_path / "codes")
    meta = {VERSION_META: "cb-a", LEVELS_META: "8,4", "hermes.chunk": "0"}
    store.append(codes(spark, 9), table, app_id="c0", app_version=1, metadata=meta)
    store.append(codes(spark, 2, 70), table)
    newest, oldest = store.commit_metadata(table)
    assert oldest[VERSION_META] == "cb-a" and oldest["hermes.chunk"] == "0"
    assert VERSION_META not in newest
    assert recorded_levels(store, table, "cb-a") == [8, 4]
    for reader in (store, other(store, spark)):  # either backend reads either's metadata
        assert reader.commit_metadata(table)[1][LEVELS_META] == "8,4"


def test_history_lists_commits_newest_first(store, spark, tmp_path) -> None:
    table = str(tmp_path / "codes")
    store.append(codes(spark, 4), table)
    store.append(codes(spark, 4, 10), table, app_id="c1", app_version=1)
    store.overwrite(codes(spark, 1, 99), table)
    history = store.history(table)
    assert [c["version"] for c in history] == [2, 1, 0]
    assert history[1]["hermes.txn"] == "c1@1"
    assert store.version(table) == 2


def test_vacuum_keeps_young_files_and_removes_old_ones_at_zero(store, spark, tmp_path) -> None:
    table = str(tmp_path / "codes")
    store.append(codes(spark, 10), table)
    store.overwrite(codes(spark, 4, 100), table)
    assert store.vacuum(table) == []  # default retention: the replaced files are too young
    removed = store.vacuum(table, retention_hours=0)
    assert removed  # the first version's files
    assert rows_of(store.read(table)) == expected(spark, codes(spark, 4, 100))
    assert store.vacuum(table, retention_hours=0) == []


def test_two_concurrent_writers_both_commit(store, spark, tmp_path) -> None:
    table = str(tmp_path / "codes")
    store.append(codes(spark, 5), table)
    results: list[bool] = []
    errors: list[BaseException] = []

    def write(start: int) -> None:
        try:
            mine = get_store(spark, store.name)
            frame = codes(spark, 6, start)
            results.append(mine.append(frame, table, app_id=f"w{start}", app_version=1))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in (100, 200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert results == [True, True]
    want = expected(spark, codes(spark, 5), codes(spark, 6, 100), codes(spark, 6, 200))
    assert rows_of(store.read(table)) == want


def test_table_reads_back_identically_everywhere(store, spark, tmp_path) -> None:
    table = tmp_path / "codes"
    store.append(codes(spark, 25), str(table), partition_by=("codebook_version",))
    store.append(codes(spark, 25, 100, "cb-b"), str(table), partition_by=("codebook_version",))
    want = expected(spark, codes(spark, 25), codes(spark, 25, 100, "cb-b"))
    assert rows_of(store.read(str(table))) == want
    assert rows_of(other(store, spark).read(str(table))) == want
    assert deltalake_rows(table) == want
    # ... and the other backend can keep appending to it.
    other(store, spark).append(codes(spark, 3, 900), str(table), partition_by=("codebook_version",))
    assert store.read(str(table)).count() == 53


def test_files_are_sized_by_rows_and_skippable_by_bucket(store, spark, tmp_path) -> None:
    table = str(tmp_path / "codes")
    rows = 4000
    shuffled = codes(spark, rows).repartition(2, F.rand(seed=1))
    limited = get_store(spark, store.name)
    limited.options = type(store.options)(rows_per_file=250, sort_by=("bucket1", "bucket2"))
    limited.append(shuffled, table)
    files = live_files(table)
    assert sum(f["num_records"] for f in files) == rows
    assert max(f["num_records"] for f in files) <= 250
    assert len(files) >= rows // 250
    k = 3
    touched = [f for f in files if f["min"]["bucket1"] <= k <= f["max"]["bucket1"]]
    # Each task sorted its rows by bucket1: `bucket1 = 3` needs ~2 files per task, not all.
    assert len(touched) <= len(files) // 3
    n = limited.read(table).where(F.col("bucket1") == k).count()
    assert n == sum(1 for i in range(rows) if i % 8 == k)


def test_zorder_optimize_rewrites_files_and_keeps_rows(store, spark, tmp_path) -> None:
    table = str(tmp_path / "codes")
    unsorted = get_store(spark, store.name)
    unsorted.options = type(store.options)(rows_per_file=200, sort_by=())
    frame = codes(spark, 3000).repartition(3, F.rand(seed=2))
    unsorted.append(frame, table)
    before = live_files(table)
    assert len(before) >= 3000 // 200
    unsorted.optimize(table, ["bucket1", "bucket2"])
    assert unsorted.history(table)[0]["operation"] == "OPTIMIZE"
    assert {f["path"] for f in live_files(table)}.isdisjoint(f["path"] for f in before)
    assert rows_of(unsorted.read(table)) == expected(spark, codes(spark, 3000))


def _spy_log_reads(store: DeltaStore, monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """Record each read of the table's log: the commits asked for (None = the whole log).

    Native: every ``DeltaTable.history(limit)`` call (what ``DESCRIBE HISTORY`` reads).
    Embedded: every fresh open or full history read of a delta-rs table (``None``).
    """
    reads: list[int | None] = []
    if store.name == "native":
        import delta.tables

        history = delta.tables.DeltaTable.history

        def spied(self: Any, limit: int | None = None) -> Any:
            reads.append(limit)
            return history(self, limit)

        monkeypatch.setattr(delta.tables.DeltaTable, "history", spied)
        return reads
    init, full_history = DeltaTable.__init__, DeltaTable.history

    def opened(self: Any, *args: Any, **kwargs: Any) -> None:
        reads.append(None)
        init(self, *args, **kwargs)

    def listed(self: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(None)
        return full_history(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "__init__", opened)
    monkeypatch.setattr(DeltaTable, "history", listed)
    return reads


def test_txn_lookups_read_the_log_once_per_run_not_per_chunk(
    store, spark, tmp_path, monkeypatch
) -> None:
    table = str(tmp_path / "codes")
    for i in range(6):
        store.append(codes(spark, 2, 10 * i), table, app_id=f"c{i}", app_version=1)
    mine = get_store(spark, store.name)  # a fresh run: nothing cached yet
    reads = _spy_log_reads(store, monkeypatch)
    answers = [mine.txn_version(table, f"c{i % 8}") for i in range(24)]  # 24 chunks
    assert answers == [1 if i % 8 < 6 else None for i in range(24)]
    # one read of the whole log for the run; per chunk at most the newest commit
    assert reads.count(None) <= 1, reads
    assert all(n is None or n <= 1 for n in reads), reads
    # Another writer commits twice: the next lookups read those commits, not the log.
    other_writer = get_store(spark, store.name)
    other_writer.append(codes(spark, 2, 500), table, app_id="c6", app_version=1)
    other_writer.append(codes(spark, 2, 600), table, app_id="c7", app_version=1)
    reads.clear()
    assert [mine.txn_version(table, f"c{i}") for i in (6, 7, 8, 6)] == [1, 1, None, 1]
    assert None not in reads and all(n <= 2 for n in reads), reads


def test_native_codes_table_is_liquid_clustered_and_a_prefix_query_skips_files(
    spark, tmp_path
) -> None:
    native = get_store(spark, "native")
    native.options = type(native.options)(rows_per_file=250)  # sort_by: bucket1, bucket2
    table = str(tmp_path / "codes")
    layout: dict[str, Any] = {"partition_by": ("codebook_version",), "cluster_by": COLUMNS[1:3]}
    first = codes(spark, 4000).repartition(2, F.rand(seed=1))
    assert native.append(first, table, app_id="c0", app_version=1, **layout)
    later = codes(spark, 800, 5000).repartition(2, F.rand(seed=3))
    assert native.append(later, table, app_id="c1", app_version=1, **layout)  # no partitions
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{table}`").first()
    assert list(detail["clusteringColumns"]) == ["codebook_version", "bucket1", "bucket2"]
    assert list(detail["partitionColumns"]) == []
    assert native.txn_version(table, "c1") == 1
    k = 3
    want = sum(1 for i in [*range(4000), *range(5000, 5800)] if i % 8 == k)

    def files_for_k() -> tuple[int, int, int]:
        files = live_files(table)
        candidates = [f for f in files if f["min"]["bucket1"] <= k <= f["max"]["bucket1"]]
        hit = native.read(table).where(F.col("bucket1") == k)
        assert hit.count() == want
        read = hit.select(F.input_file_name().alias("f")).distinct().count()
        return len(files), len(candidates), read

    total, candidates, read = files_for_k()
    assert total >= 4800 // 250
    assert read <= candidates <= total // 3  # the stats rule out two thirds of the files
    native.optimize(table, ["bucket1", "bucket2"])  # clusters by the table's own keys
    assert str(native.history(table)[0]["operation"]).startswith("OPTIMIZE")
    total, candidates, read = files_for_k()
    assert read <= candidates < total or total == 1


def test_tables_explain_themselves_on_both_engines(store, spark, tmp_path):
    """The codes table's comment, column comments and hermes properties: DESCRIBE TABLE
    (native) and delta-rs metadata agree, whichever engine wrote them; a second call
    commits nothing."""
    from hermes_spark.delta.describe import TABLES, column_comment, describe_table

    table = str(tmp_path / "codes")
    store.append(codes(spark, 20), table)
    describe_table(store, table, "codes", {"codebook_version": "cb-a", "levels": "8,4"})
    version = store.version(table)
    describe_table(store, table, "codes", {"codebook_version": "cb-a", "levels": "8,4"})
    assert store.version(table) == version  # nothing changed: no metadata commit
    meta = DeltaTable(table).metadata()
    assert meta.description == TABLES["codes"]
    assert meta.configuration["hermes.codebook_version"] == "cb-a"
    assert meta.configuration["hermes.levels"] == "8,4" and "hermes.version" in meta.configuration
    fields = {f.name: (f.metadata or {}).get("comment") for f in DeltaTable(table).schema().fields}
    assert (
        fields["bucket2"] == column_comment("bucket2") and "bucket2 = bucket" in fields["bucket2"]
    )
    assert fields["qerr1"] == column_comment("qerr1")
    described = spark.sql(f"DESCRIBE TABLE EXTENDED delta.`{table}`").collect()
    comments = {r["col_name"]: r["comment"] for r in described}
    assert comments["bucket1"] == column_comment("bucket1")
    assert comments["codebook_version"] == column_comment("codebook_version")
    props = spark.sql(f"SHOW TBLPROPERTIES delta.`{table}`").collect()
    assert {r["key"]: r["value"] for r in props}["hermes.levels"] == "8,4"
    assert rows_of(store.read(table)) == rows_of(codes(spark, 20))  # data untouched


def test_delete_matched_deletes_the_rows_a_key_frame_matches(store, spark, tmp_path) -> None:
    """A MERGE delete: 3,000 keys (a predicate of 3,000 clauses is what it replaces), a
    condition on the key's columns, other partitions untouched."""
    table = str(tmp_path / "t")
    store.append(codes(spark, 6_000), table, partition_by=("codebook_version",))
    store.append(codes(spark, 100, version="cb-b"), table, partition_by=("codebook_version",))
    keys = spark.createDataFrame(
        [(f"d{i:05d}", 2) for i in range(0, 6_000, 2)], "doc_id string, below bigint"
    )
    condition = "t.doc_id = s.doc_id AND t.codebook_version = 'cb-a' AND t.bucket1 > s.below"
    deleted = store.delete_matched(table, keys, condition)
    kept = [r for r in rows_of(codes(spark, 6_000)) if int(r[0][1:]) % 2 or r[1] <= 2]
    assert deleted == 6_000 - len(kept) > 0
    assert deltalake_rows(tmp_path / "t") == sorted(
        kept + rows_of(codes(spark, 100, version="cb-b"))
    )
