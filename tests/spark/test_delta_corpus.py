"""A Delta corpus is read through the Delta reader: rows deleted with deletion vectors
are not annotated; the embedded fallback refuses what it cannot read correctly."""

from __future__ import annotations

import pytest
from deltalake import DeltaTable

from hermes_spark.corpus import _check_embedded_readable
from hermes_spark.delta import native_delta_available
from hermes_spark.errors import InvalidInputError
from tests.helpers import assert_clean_error, run_cli, skip_or_fail_in_ci, write_embedded_corpus

pytestmark = pytest.mark.spark

EMB = ("--embedding-col", "emb", "--tokens-col", "tokens")
DELETED = ("doc-00003", "doc-00010", "doc-00150")


@pytest.fixture()
def delta_corpus(spark, tmp_path, monkeypatch):
    monkeypatch.setenv("HERMES_DELTA_ENGINE", "native")  # the users' default with the jars
    if not native_delta_available(spark)[0]:
        skip_or_fail_in_ci("native Delta is not configured (make setup fetches the jars)")
    parquet = write_embedded_corpus(tmp_path / "parquet", n=200, dim=16, files=2)
    path = str(tmp_path / "delta")
    spark.read.parquet(str(parquet)).repartition(3).write.format("delta").option(
        "delta.enableDeletionVectors", "true"
    ).save(path)
    ids = ", ".join(f"'{i}'" for i in DELETED)
    spark.sql(f"DELETE FROM delta.`{path}` WHERE id IN ({ids})")
    return path


def test_rows_deleted_with_deletion_vectors_are_not_annotated(
    spark, delta_corpus, tmp_path, capsys
):
    dt = DeltaTable(delta_corpus)
    assert "deletionVectors" in (dt.protocol().reader_features or [])
    delete = next(h for h in dt.history() if h["operation"] == "DELETE")
    assert int(delete["operationMetrics"].get("numDeletionVectorsAdded", 0)) > 0  # a real DV
    common = ("--input", delta_corpus, "--input-format", "delta", *EMB)
    code, _, err = run_cli(
        capsys,
        "fit",
        *common,
        "--out",
        str(tmp_path / "cb"),
        "--levels",
        "4,3,2",
        "--sample-size",
        "150",
    )
    assert code == 0, err
    code, _, err = run_cli(
        capsys,
        "annotate",
        *common,
        "--codebook",
        str(tmp_path / "cb"),
        "--table",
        str(tmp_path / "codes"),
    )
    assert code == 0, err
    ids = set(spark.read.format("delta").load(str(tmp_path / "codes")).toPandas()["doc_id"])
    assert len(ids) == 200 - len(DELETED)
    assert not ids & set(DELETED)


def test_embedded_reader_refuses_deletion_vectors(delta_corpus, tmp_path, capsys):
    with pytest.raises(InvalidInputError, match=r"deletionVectors.*native Delta"):
        _check_embedded_readable(delta_corpus)


def test_a_path_that_is_not_a_delta_table(spark, tmp_path, capsys):
    corpus = write_embedded_corpus(tmp_path / "parquet", n=20, dim=16, files=1)
    code, _, err = run_cli(
        capsys,
        "fit",
        "--input",
        str(corpus),
        "--input-format",
        "delta",
        *EMB,
        "--out",
        str(tmp_path / "cb"),
    )
    assert_clean_error(code, err, "is not a Delta table")
