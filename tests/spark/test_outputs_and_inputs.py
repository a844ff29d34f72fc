"""Outputs never destroy what hermes did not write; every input problem is a clear exit 2.

Through the CLI's ``execute()``: writing commands refuse a foreign target and leave it
untouched, a killed export's staging is recovered by the re-run, corrupt files and files
disagreeing on a column's type are named, Hadoop globs in ``--input`` work, and the
weights are checked before Spark starts.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from hermes_spark.config import SampleConfig
from hermes_spark.tasks.plan import compute_plan
from hermes_spark.tasks.sample import run_sample
from tests.helpers import assert_clean_error, run_cli, write_embedded_corpus

pytestmark = pytest.mark.spark

EMB = ("--embedding-col", "emb", "--tokens-col", "tokens")


@pytest.fixture(scope="module")
def manifest(spark, shared_codes, tmp_path_factory) -> str:
    """A manifest of the shared codes (uniform weights, one epoch at most)."""
    out = str(tmp_path_factory.mktemp("guard") / "manifest")
    settings = SampleConfig(budget_tokens=100_000, weights="uniform", stage2="random", seed=2)
    run_sample(
        spark,
        shared_codes["codes"],
        out,
        compute_plan(spark, settings, table=shared_codes["codes"]),
    )
    return out


def _foreign_table(path) -> pd.DataFrame:
    user = pd.DataFrame({"user_id": [1, 2, 3], "note": ["keep", "me", "please"]})
    write_deltalake(str(path), user)
    return user


def test_stats_and_sample_refuse_a_delta_table_of_another_schema(
    spark, shared_codes, tmp_path, capsys
):
    user = _foreign_table(tmp_path / "user_table")
    code, _, err = run_cli(
        capsys, "stats", "--table", shared_codes["codes"], "--out", str(tmp_path / "user_table")
    )
    assert_clean_error(code, err, str(tmp_path / "user_table"), "another schema", "did not write")
    sample = ("sample", "--table", shared_codes["codes"], "--budget-tokens", "50000")
    code, _, err = run_cli(capsys, *sample, "--out", str(tmp_path / "user_table"))
    assert_clean_error(code, err, str(tmp_path / "user_table"), "another schema")
    pd.testing.assert_frame_equal(DeltaTable(str(tmp_path / "user_table")).to_pandas(), user)


def test_writers_refuse_a_folder_of_user_files(spark, shared_codes, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.txt").write_text("years of work")
    for argv in (
        ("stats", "--table", shared_codes["codes"], "--out", str(folder)),
        ("mixtures", "--stats", shared_codes["stats"], "--dirichlet", "2", "--out", str(folder)),
        ("plan", "--stats", shared_codes["stats"], "--budget-tokens", "5e4", "--weights-out",
         str(folder)),
    ):  # fmt: skip
        code, _, err = run_cli(capsys, *argv)
        assert_clean_error(code, err, str(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.txt"]
    (tmp_path / "notes.json").write_text('{"mine": true}')
    code, _, err = run_cli(
        capsys, "plan", "--stats", shared_codes["stats"], "--budget-tokens", "5e4", "--out",
        str(tmp_path / "notes.json"),
    )  # fmt: skip
    assert_clean_error(code, err, "notes.json", "did not write")
    assert (tmp_path / "notes.json").read_text() == '{"mine": true}'


def test_own_outputs_are_still_replaced(spark, shared_codes, tmp_path, capsys):
    out = str(tmp_path / "stats")
    for _ in range(2):  # a re-run replaces its own STATS and STATS_levels
        code, _, err = run_cli(capsys, "stats", "--table", shared_codes["codes"], "--out", out)
        assert code == 0, err
    plan = ("plan", "--stats", shared_codes["stats"], "--budget-tokens", "5e4")
    for _ in range(2):
        code, _, err = run_cli(capsys, *plan, "--out", str(tmp_path / "p.json"))
        assert code == 0, err


def test_a_killed_export_is_recovered_by_the_rerun(spark, shared_codes, manifest, tmp_path, capsys):
    out = tmp_path / "train"
    export = ("export", "--manifest", manifest, "--input", shared_codes["corpus"], *EMB[:2])
    code, _, err = run_cli(capsys, *export, "--out", str(out), "--shards", "2")
    assert code == 0, err
    first = sorted(p.name for p in out.iterdir())
    (out / "mixture.json").unlink()  # killed after placing shards, before the last file
    (out / "_tmp_0123456789ab").mkdir()
    (out / "_tmp_0123456789ab" / "part-00000-x.parquet").write_bytes(b"half a file")
    code, _, err = run_cli(capsys, *export, "--out", str(out), "--shards", "2")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == first
    code, _, err = run_cli(capsys, *export, "--out", str(out), "--shards", "2")
    assert_clean_error(code, err, "--overwrite")  # a finished export is replaced only so


def _bad_corpus(root, *, bad: str):
    corpus = write_embedded_corpus(root, n=60, dim=16, files=2)
    if bad == "truncated":
        whole = (corpus / "part-000.parquet").read_bytes()
        (corpus / "part-002.parquet").write_bytes(whole[: len(whole) // 2])
    else:
        table = pq.read_table(corpus / "part-001.parquet")
        ids = pa.array(range(len(table)), type=pa.int64())
        pq.write_table(table.set_column(0, "id", ids), corpus / "part-001.parquet")
    return corpus


@pytest.mark.parametrize(
    ("bad", "needles"),
    [("truncated", ("part-002.parquet", "cannot be read")),
     ("id_type", ("part-001.parquet", "column id", "INT64"))],
)  # fmt: skip
def test_an_unreadable_or_disagreeing_file_is_named(spark, tmp_path, capsys, bad, needles):
    corpus = _bad_corpus(tmp_path / "c", bad=bad)
    code, _, err = run_cli(
        capsys, "fit", "--input", str(corpus), *EMB, "--out", str(tmp_path / "cb"),
        "--levels", "3,2", "--sample-size", "60",
    )  # fmt: skip
    assert_clean_error(code, err, *needles)
    assert not (tmp_path / "cb").exists()


def test_hadoop_glob_in_input_reads_the_matching_files(spark, tmp_path, capsys):
    corpus = write_embedded_corpus(tmp_path / "c", n=90, dim=16, files=3)
    code, out, err = run_cli(
        capsys, "fit", "--input", str(corpus / "part-00[01].parquet"), *EMB, "--out",
        str(tmp_path / "cb"), "--levels", "3,2", "--sample-size", "500",
    )  # fmt: skip
    assert code == 0, err
    assert "sample: 60 docs" in out  # the two matching files of 30 rows, not the third
    code, _, err = run_cli(
        capsys, "fit", "--input", str(corpus / "part-9[0-9].parquet"), *EMB, "--out",
        str(tmp_path / "cb2"),
    )  # fmt: skip
    assert_clean_error(code, err, "matches no file")


def test_weights_are_checked_before_spark_starts(shared_codes, tmp_path, capsys, monkeypatch):
    from hermes_spark.cli import commands

    def no_spark(cfg):
        raise AssertionError("Spark was started before the weights were checked")

    monkeypatch.setattr(commands, "_spark", no_spark)
    base = ("plan", "--stats", shared_codes["stats"], "--budget-tokens", "5e4")
    code, _, err = run_cli(capsys, *base, "--weights", "temperature:0")
    assert_clean_error(code, err, "temperature")
    (tmp_path / "w.json").write_text('{"1": 0.5, "1.2": 0.5}')
    code, _, err = run_cli(capsys, *base, "--weights", str(tmp_path / "w.json"))
    assert_clean_error(code, err, "'1.2'")
    code, _, err = run_cli(
        capsys, *base, "--weights", str(tmp_path / "w.json"), "--codebook", shared_codes["cb"]
    )
    assert_clean_error(code, err, "'1.2'")
    (tmp_path / "w2.json").write_text('{"9": 1.0}')  # K1 = 4: out of range
    code, _, err = run_cli(
        capsys, *base, "--weights", str(tmp_path / "w2.json"), "--codebook", shared_codes["cb"]
    )
    assert_clean_error(code, err, "out of range")


def test_a_codes_table_of_another_schema_and_a_missing_catalog_table(
    spark, manifest, tmp_path, capsys
):
    other = pd.DataFrame({"codebook_version": ["v1"], "user_id": [1]})
    write_deltalake(str(tmp_path / "other"), other)
    code, _, err = run_cli(
        capsys, "stats", "--table", str(tmp_path / "other"), "--out", str(tmp_path / "s")
    )
    assert_clean_error(code, err, str(tmp_path / "other"), "not a codes table", "bucket1")
    assert not (tmp_path / "s").exists()
    code, _, err = run_cli(
        capsys, "export", "--manifest", manifest, "--input-table", "default.no_such_corpus",
        "--out", str(tmp_path / "train"),
    )  # fmt: skip
    assert_clean_error(code, err, "default.no_such_corpus", "does not exist")
    assert not (tmp_path / "train").exists()
