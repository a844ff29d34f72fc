"""The console script: bad input and config exit 2 with one readable paragraph."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import assert_clean_error, write_embedded_corpus
from tests.helpers import run_cli as run

pytestmark = pytest.mark.spark


def test_missing_text_column_names_the_columns_present(spark, tmp_path, capsys):
    pq.write_table(pa.table({"id": ["a"], "body": ["hello"]}), tmp_path / "c.parquet")
    code, _, err = run(
        capsys, "fit", "--input", str(tmp_path / "c.parquet"), "--out", str(tmp_path / "cb")
    )
    assert_clean_error(code, err, "'text' is missing", "Columns present: id, body")


def test_text_column_of_the_wrong_type(spark, tmp_path, capsys):
    pq.write_table(pa.table({"id": ["a"], "text": [3]}), tmp_path / "c.parquet")
    code, _, err = run(
        capsys, "fit", "--input", str(tmp_path / "c.parquet"), "--out", str(tmp_path / "cb")
    )
    assert_clean_error(code, err, "text column 'text' has type bigint")


def test_unknown_config_key(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("fit:\n  levles: [4, 4]\n")
    code, _, err = run(
        capsys, "fit", "--config", str(tmp_path / "c.yaml"), "--input", "x", "--out", "y"
    )
    assert_clean_error(code, err, "unknown key(s) levles", "known keys are")


def test_bad_level_flag(capsys):
    code, _, err = run(capsys, "fit", "--input", "x", "--out", "y", "--levels", "64,x")
    assert_clean_error(code, err, "fit.levels")


def test_missing_input(tmp_path, capsys):
    code, _, err = run(capsys, "fit", "--input", str(tmp_path / "nope"), "--out", "y")
    assert_clean_error(code, err, "does not exist")


def test_corrupt_artifact_refused(spark, tmp_path, capsys):
    corpus = write_embedded_corpus(tmp_path / "corpus", n=60, dim=16, files=1)
    flags = ["--input", str(corpus), "--embedding-col", "emb", "--tokens-col", "tokens"]
    code, out, _ = run(
        capsys,
        "fit",
        *flags,
        "--out",
        str(tmp_path / "cb"),
        "--levels",
        "4,2",
        "--sample-size",
        "60",
    )
    assert code == 0
    assert json.loads(out.strip().splitlines()[-1])["levels"] == [4, 2]
    (tmp_path / "cb" / "arrays.safetensors").write_bytes(b"garbage")
    code, _, err = run(
        capsys,
        "annotate",
        *flags,
        "--codebook",
        str(tmp_path / "cb"),
        "--table",
        str(tmp_path / "codes"),
    )
    assert_clean_error(code, err, "arrays.safetensors")


def test_duplicate_ids_with_on_duplicate_error(spark, tmp_path, capsys):
    corpus = write_embedded_corpus(tmp_path / "corpus", n=60, dim=16, files=1)
    table = pq.read_table(corpus / "part-000.parquet")
    pq.write_table(table.slice(0, 2), corpus / "part-001.parquet")
    flags = ["--input", str(corpus), "--embedding-col", "emb", "--tokens-col", "tokens"]
    assert run(capsys, "fit", *flags, "--out", str(tmp_path / "cb"), "--levels", "4,2")[0] == 0
    code, _, err = run(
        capsys,
        "annotate",
        *flags,
        "--codebook",
        str(tmp_path / "cb"),
        "--table",
        str(tmp_path / "codes"),
        "--on-duplicate",
        "error",
    )
    assert_clean_error(code, err, "repeats document ids", "'doc-00000' x2")
