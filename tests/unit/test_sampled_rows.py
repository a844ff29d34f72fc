"""The executor side of reading sampled rows by position: the right rows, only the row
groups that hold them, positions past a file's end reported, canonical keys reopened."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import types as T

from hermes_spark.config import CorpusConfig
from hermes_spark.paths import canonical_file_key
from hermes_spark.sampled_rows import openable_uri, positional_files, rows_reader

MAN = ["doc_id", "stage1_bucket", "stage2_bucket", "repeats"]
SCHEMA = T.StructType(
    [
        T.StructField("doc_id", T.StringType()),
        T.StructField("stage1_bucket", T.LongType()),
        T.StructField("stage2_bucket", T.LongType()),
        T.StructField("repeats", T.IntegerType()),
        T.StructField("text", T.StringType()),
        T.StructField("_hermes_corpus_id", T.StringType()),
    ]
)


@pytest.fixture()
def corpus(tmp_path):
    """100 rows in row groups of 10 under a path with a space and a percent sign."""
    path = tmp_path / "a b%20c" / "part-0.parquet"
    path.parent.mkdir()
    ids = [f"d{i:03d}" for i in range(100)]
    pq.write_table(
        pa.table({"id": ids, "text": [f"text {i}" for i in ids], "n": list(range(100))}),
        path,
        row_group_size=10,
    )
    return path


def _manifest(key: str, rows: list[int]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "doc_id": [f"d{r:03d}" for r in rows],
            "stage1_bucket": pa.array([1] * len(rows), pa.int64()),
            "stage2_bucket": pa.array([2] * len(rows), pa.int64()),
            "repeats": pa.array([1] * len(rows), pa.int32()),
            "source_row": pa.array(rows, pa.int64()),
            "_hermes_file": [key] * len(rows),
        }
    )


def test_the_rows_at_their_positions_from_only_their_row_groups(corpus, monkeypatch):
    read_groups: list[list[int]] = []
    real = pq.ParquetFile.read_row_groups

    def recording(self, groups, *args, **kw):
        read_groups.append(list(groups))
        return real(self, groups, *args, **kw)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", recording)
    key = canonical_file_key(str(corpus))
    fn = rows_reader(MAN, ["text"], "id", SCHEMA)
    out = pa.Table.from_batches(list(fn(iter([_manifest(key, [3, 57, 58, 99])]))))
    assert out.column("text").to_pylist() == ["text d003", "text d057", "text d058", "text d099"]
    assert out.column("_hermes_corpus_id").to_pylist() == ["d003", "d057", "d058", "d099"]
    assert out.column("doc_id").to_pylist() == ["d003", "d057", "d058", "d099"]
    assert read_groups == [[0, 5, 9]]  # three of the ten row groups, not the file


def test_a_position_past_the_end_reads_a_null_id(corpus):
    key = canonical_file_key(str(corpus))
    fn = rows_reader(MAN, ["text"], "id", SCHEMA)
    out = pa.Table.from_batches(list(fn(iter([_manifest(key, [5, 100, 7_000])]))))
    assert out.column("_hermes_corpus_id").to_pylist() == ["d005", None, None]
    assert out.column("text").to_pylist() == ["text d005", None, None]


def test_rows_of_several_files_in_one_batch(tmp_path, corpus):
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"id": ["x0", "x1"], "text": ["zero", "one"]}), other)
    a, b = canonical_file_key(str(corpus)), canonical_file_key(str(other))
    batch = pa.concat_batches([_manifest(a, [1]), _manifest(b, [1, 0])])
    fn = rows_reader(MAN, ["text"], "id", SCHEMA)
    out = pa.Table.from_batches(list(fn(iter([batch]))))
    assert out.column("text").to_pylist() == ["text d001", "one", "zero"]
    assert out.column("_hermes_corpus_id").to_pylist() == ["d001", "x1", "x0"]


def test_canonical_keys_reopen_as_uris():
    assert openable_uri(canonical_file_key("file:/data/a%20b.parquet")) == "/data/a b.parquet"
    assert openable_uri(canonical_file_key("s3a://bucket/k/p.parquet")) == "s3://bucket/k/p.parquet"
    assert openable_uri(canonical_file_key("/x/50%.parquet")) == "/x/50%.parquet"


def test_which_corpora_are_read_by_position(corpus):
    listed = [str(corpus)]
    assert positional_files(CorpusConfig(input=str(corpus.parent)), listed) == {
        canonical_file_key(str(corpus))
    }
    assert positional_files(CorpusConfig(input="x", format="json"), listed) == set()
    assert positional_files(CorpusConfig(table="db.corpus"), listed) == set()
