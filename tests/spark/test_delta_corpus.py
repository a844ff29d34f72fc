"""A Delta corpus is read through the Delta reader by every job that reads a corpus (fit,
annotate, export, evaluate, rescore): rows deleted with deletion vectors are never read;
the embedded fallback refuses what it cannot read correctly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from hermes_spark.cli import execute
from hermes_spark.corpus import _check_embedded_readable
from hermes_spark.delta import native_delta_available
from hermes_spark.errors import InvalidInputError
from hermes_spark.paths import canonical_file_key, canonical_file_key_col
from tests.helpers import assert_clean_error, run_cli, skip_or_fail_in_ci, write_embedded_corpus

pytestmark = pytest.mark.spark

EMB = ("--embedding-col", "emb", "--tokens-col", "tokens")
DELETED = ("doc-00003", "doc-00010", "doc-00150")


@pytest.fixture(scope="module")
def delta_corpus(spark, tmp_path_factory):
    """A native Delta corpus (200 docs over 3 files) with 3 rows deleted by deletion vectors."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HERMES_DELTA_ENGINE", "native")  # the users' default with the jars
        if not native_delta_available(spark)[0]:
            skip_or_fail_in_ci("native Delta is not configured (make setup fetches the jars)")
        root = tmp_path_factory.mktemp("delta_corpus")
        parquet = write_embedded_corpus(root / "parquet", n=200, dim=16, files=2)
        path = str(root / "delta")
        spark.read.parquet(str(parquet)).repartition(3).write.format("delta").option(
            "delta.enableDeletionVectors", "true"
        ).save(path)
        ids = ", ".join(f"'{i}'" for i in DELETED)
        spark.sql(f"DELETE FROM delta.`{path}` WHERE id IN ({ids})")
        yield path


@pytest.fixture(scope="module")
def annotated(spark, delta_corpus, tmp_path_factory):
    """fit + annotate of the Delta corpus through the CLI (paths of codebook and codes)."""
    root = tmp_path_factory.mktemp("delta_annotated")
    common = ("--input", delta_corpus, "--input-format", "delta", *EMB)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HERMES_DELTA_ENGINE", "native")
        fit = ("fit", *common, "--out", str(root / "cb"), "--levels", "4,3,2")
        assert execute([*fit, "--sample-size", "150"]) == 0
        annotate = ("annotate", *common, "--codebook", str(root / "cb"))
        assert execute([*annotate, "--table", str(root / "codes")]) == 0
        yield {"root": root, "cb": str(root / "cb"), "codes": str(root / "codes")}


def test_rows_deleted_with_deletion_vectors_are_not_annotated(spark, delta_corpus, annotated):
    dt = DeltaTable(delta_corpus)
    assert "deletionVectors" in (dt.protocol().reader_features or [])
    delete = next(h for h in dt.history() if h["operation"] == "DELETE")
    assert int(delete["operationMetrics"].get("numDeletionVectorsAdded", 0)) > 0  # a real DV
    ids = set(spark.read.format("delta").load(annotated["codes"]).toPandas()["doc_id"])
    assert len(ids) == 200 - len(DELETED)
    assert not ids & set(DELETED)


def test_sample_export_evaluate_rescore_read_a_delta_corpus(
    spark, delta_corpus, annotated, monkeypatch, capsys
):
    """Every job that reads the corpus reads the Delta corpus through its table reader:
    export finds every sampled text (none of the deleted rows), evaluate scores the
    held-out documents' corpus vectors, rescore recomputes every row's quality."""
    from udfs.quality import quality_scores

    monkeypatch.setenv("HERMES_DELTA_ENGINE", "native")
    root, codes = annotated["root"], annotated["codes"]
    corpus = ("--input", delta_corpus, "--input-format", "delta")
    sample = ("sample", "--table", codes, "--out", str(root / "man"), "--budget-share", "0.5")
    code, _, err = run_cli(capsys, *sample, "--weights", "uniform")
    assert code == 0, err
    code, out, err = run_cli(
        capsys, "export", "--manifest", str(root / "man"), *corpus, "--embedding-col", "emb",
        "--out", str(root / "train"), "--shards", "2",
    )  # fmt: skip
    assert code == 0, err
    manifest = spark.read.format("delta").load(str(root / "man")).toPandas()
    rows = pd.concat([pd.read_parquet(f) for f in sorted((root / "train").glob("part-*"))])
    assert len(rows) == int(manifest["repeats"].sum()) > 0
    texts = spark.read.format("delta").load(delta_corpus).toPandas().set_index("id")["text"]
    assert rows["text"].tolist() == texts.loc[rows["doc_id"]].tolist()
    assert not set(rows["doc_id"]) & set(DELETED)

    code, out, err = run_cli(
        capsys, "evaluate", *corpus, *EMB, "--table", codes, "--codebook", annotated["cb"],
        "--sample", "40", "--baselines", "", "--label-cols", "cluster", "--in-sample",
    )  # fmt: skip
    assert code == 0, err
    code, out, err = run_cli(capsys, "rescore", "--table", codes, *corpus)
    assert code == 0, err
    assert f"rescored {200 - len(DELETED)} of {200 - len(DELETED)} rows" in out
    after = spark.read.format("delta").load(codes).toPandas().set_index("doc_id")
    expect = quality_scores(texts.loc[after.index].reset_index(drop=True))
    np.testing.assert_allclose(after["quality"].to_numpy(), expect.to_numpy())


def test_only_files_without_deletion_vectors_are_read_by_position(spark, delta_corpus):
    """Export reads a Delta file's rows by position only when no deletion vector masks
    rows of it; the files with one are joined by id through the Delta reader."""
    from hermes_spark.config import CorpusConfig
    from hermes_spark.sampled_rows import positional_files

    table = DeltaTable(delta_corpus)
    files = [canonical_file_key(u) for u in table.file_uris()]
    masked = {
        canonical_file_key(str(p))
        for p in pa.table(table.deletion_vectors()).column("filepath").to_pylist()
    }
    assert masked and len(masked) < len(files)
    cfg = CorpusConfig(input=delta_corpus, format="delta")
    assert positional_files(cfg, files) == set(files) - masked


def test_export_reads_a_catalog_table_corpus(spark, delta_corpus, annotated, monkeypatch, capsys):
    """``--input-table`` names the corpus wherever one is read (export here)."""
    monkeypatch.setenv("HERMES_DELTA_ENGINE", "native")
    root = annotated["root"]
    spark.sql(f"CREATE TABLE IF NOT EXISTS dv_corpus USING delta LOCATION '{delta_corpus}'")
    if not (root / "man").exists():
        man = ("sample", "--table", annotated["codes"], "--out", str(root / "man"))
        assert execute([*man, "--budget-share", "0.5", "--weights", "uniform"]) == 0
    try:
        code, _, err = run_cli(
            capsys, "export", "--manifest", str(root / "man"), "--input-table", "dv_corpus",
            "--embedding-col", "emb", "--out", str(root / "train_t"), "--shards", "1",
        )  # fmt: skip
    finally:
        spark.sql("DROP TABLE IF EXISTS dv_corpus")  # the data stays: an external table
    assert code == 0, err
    rows = pd.read_parquet(next((root / "train_t").glob("part-*")))
    manifest = spark.read.format("delta").load(str(root / "man")).toPandas()
    assert len(rows) == int(manifest["repeats"].sum())


def test_driver_and_column_file_keys_agree(spark):
    """One canonical key per file: every spelling of a location (Spark's, delta-rs',
    s3 vs s3a) gives the same key on the driver and in a Column expression."""
    spellings = {
        "file:/data/a%20b+c.parquet": "file:/data/a b+c.parquet",
        "file:///data/a%20b+c.parquet": "file:/data/a b+c.parquet",
        "s3a://bucket/x/part-0.parquet": "s3:/bucket/x/part-0.parquet",
        "s3://bucket/x/part-0.parquet": "s3:/bucket/x/part-0.parquet",
    }
    df = spark.createDataFrame([(k,) for k in spellings], "p string")
    got = dict(df.select("p", canonical_file_key_col(F.col("p")).alias("k")).collect())
    assert got == spellings
    assert {k: canonical_file_key(k) for k in spellings} == spellings
    assert canonical_file_key("/data/a b+c.parquet") == "file:/data/a b+c.parquet"


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
