"""The once-per-run id look-up moves narrow keys, not the table's wide strings.

``seen.annotated_hits`` probes the version's rows with 64-bit hashes of the pending ids:
no shuffle carries a string column of the codes-table side (only longs, or the few matched
rows behind a broadcast), and the hits are the same when every hash collides.
"""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from hermes_spark.delta import get_store
from hermes_spark.paths import canonical_file_key, canonical_file_key_col
from hermes_spark.tasks import seen
from tests.spark.plans import nodes, output_types, plan_of, shuffles

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def codes_table(spark, tmp_path_factory) -> str:
    """A 2,000-row codes-like table: ids d0..d1999 of version v1, d0..d99 also of v0."""
    table = str(tmp_path_factory.mktemp("lookup") / "codes")
    rows = [(f"d{i}", f"file:/c/part-{i % 7}.parquet", "v1") for i in range(2_000)]
    rows += [(f"d{i}", "file:/c/old.parquet", "v0") for i in range(100)]
    frame = spark.createDataFrame(
        rows, "doc_id string, source_file string, codebook_version string"
    )
    get_store(spark).append(frame.repartition(4), table, partition_by=("codebook_version",))
    return table


def _pending(spark):
    """Pending ids: 300 annotated (d1700..d1999), 300 new, tagged with two chunks."""
    rows = [(f"d{i}", i % 2) for i in range(1_700, 2_300)]
    return spark.createDataFrame(rows, "doc_id string, chunk int")


def _hits(spark, table) -> tuple[int, list[tuple]]:
    hits, n = seen.annotated_hits(get_store(spark), table, "v1", _pending(spark))
    assert hits is not None
    try:
        return n, sorted(tuple(r) for r in hits.collect())
    finally:
        hits.unpersist()


def _wide_table_shuffles(df, table: str) -> list[str]:
    """Shuffles whose output holds a string and whose input is the table's scan directly
    (no other shuffle or broadcast in between)."""
    found = []
    for node in shuffles(plan_of(df)):
        if "string" not in output_types(node):
            continue
        for below, crossed in nodes(node.child()):
            if not crossed and below.nodeName().startswith("Scan") and table in below.toString():
                found.append(node.toString())
    return found


def test_the_lookup_shuffles_no_string_column_of_the_table(spark, codes_table, monkeypatch):
    # the path of a pending set too large to broadcast, at any size of this test's data
    monkeypatch.setattr(seen, "BROADCAST_IDS", 0)
    previous = spark.conf.get("spark.sql.autoBroadcastJoinThreshold")
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")
    store = get_store(spark)
    frames = []
    real_persist = type(_pending(spark)).persist

    def recording_persist(self, *args, **kw):
        frames.append(self)
        return real_persist(self, *args, **kw)

    monkeypatch.setattr(type(_pending(spark)), "persist", recording_persist)
    try:
        hits, n = seen.annotated_hits(store, codes_table, "v1", _pending(spark))
    finally:
        monkeypatch.undo()
        spark.conf.set("spark.sql.autoBroadcastJoinThreshold", previous)
    assert n == 300 and hits is not None
    assert sorted(r["doc_id"] for r in hits.collect()) == sorted(
        f"d{i}" for i in range(1_700, 2_000)
    )
    wide = [s for f in frames for s in _wide_table_shuffles(f, codes_table)]
    hits.unpersist()
    assert not wide, wide


def test_hits_are_the_same_when_every_id_hash_collides(spark, codes_table, monkeypatch):
    expected = _hits(spark, codes_table)
    assert expected[0] == 300
    assert {r[2] for r in expected[1]} == {0, 1}  # tagged with their chunk
    monkeypatch.setattr(seen, "id_hash", lambda col: F.lit(7).cast("long"))
    assert _hits(spark, codes_table) == expected


@pytest.mark.parametrize(
    ("spellings"),
    [
        ["/data/a b.parquet", "file:/data/a%20b.parquet", "file:///data/a%20b.parquet"],
        ["s3://bkt/p/x+y.parquet", "s3a://bkt/p/x+y.parquet", "S3N://bkt/p/x%2By.parquet"],
    ],
)
def test_one_canonical_key_for_every_spelling_of_a_file(spark, spellings):
    keys = {canonical_file_key(s) for s in spellings}
    assert len(keys) == 1
    frame = spark.createDataFrame([(s,) for s in spellings], "uri string")
    col_keys = {r[0] for r in frame.select(canonical_file_key_col(F.col("uri"))).collect()}
    assert col_keys == keys
