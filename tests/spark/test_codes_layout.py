"""The codes table's file layout: annotate writes each chunk's files clustered by code
prefix, and ``hermes optimize`` clusters the table, so ``bucket1 = k`` reads few files."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from tests.helpers import assert_clean_error, run_cli, write_embedded_corpus

pytestmark = pytest.mark.spark

EMB = ("--embedding-col", "emb", "--tokens-col", "tokens")
ROWS_PER_FILE = 20


@pytest.fixture(scope="module")
def annotated(spark, tmp_path_factory):
    """A 600-document corpus, its codebook fitted here; annotate writes 20-row files."""
    root = tmp_path_factory.mktemp("codes_layout")
    corpus = write_embedded_corpus(root / "corpus", n=600, dim=16, files=2)
    config = root / "hermes.yaml"
    config.write_text(f"delta:\n  rows_per_file: {ROWS_PER_FILE}\n")
    cb, table = root / "cb", root / "codes"
    common = ("--config", str(config), "--input", str(corpus), *EMB)
    fit = ("fit", *common, "--out", str(cb), "--levels", "8,4,2", "--sample-size", "300")
    return {"config": str(config), "table": table, "fit": fit, "cb": cb, "common": common}


def _files_holding(table, k: int) -> tuple[int, int]:
    """(files whose bucket1 range holds k, all files): what Delta's data skipping reads."""
    adds = pa.table(DeltaTable(str(table)).get_add_actions(flatten=True)).to_pandas()
    hit = (adds["min.bucket1"] <= k) & (adds["max.bucket1"] >= k)
    return int(hit.sum()), len(adds)


def _prefix_reads(table) -> dict[int, float]:
    codes = DeltaTable(str(table)).to_pandas()
    shares = {}
    for k in sorted(codes["bucket1"].unique()):
        hit, total = _files_holding(table, int(k))
        shares[int(k)] = hit / total
    return shares


def test_annotate_clusters_files_and_optimize_keeps_them_clustered(annotated, capsys):
    code, _, err = run_cli(capsys, *annotated["fit"])
    assert code == 0, err
    table = annotated["table"]
    code, _, err = run_cli(
        capsys, "annotate", *annotated["common"], "--codebook", str(annotated["cb"]),
        "--table", str(table),
    )  # fmt: skip
    assert code == 0, err
    before = DeltaTable(str(table)).to_pandas()
    assert len(before) == 600
    _, files = _files_holding(table, 0)
    assert files >= 600 // ROWS_PER_FILE
    shares = _prefix_reads(table)
    assert len(shares) >= 4, shares  # several level-1 buckets are in use
    assert max(shares.values()) <= 1 / 3, shares  # right after annotate, no OPTIMIZE yet

    version = DeltaTable(str(table)).version()
    code, out, err = run_cli(
        capsys, "optimize", "--config", annotated["config"], "--table", str(table)
    )
    assert code == 0, err
    assert "clustered" in out
    dt = DeltaTable(str(table))
    assert dt.version() > version
    assert dt.history(1)[0]["operation"] == "OPTIMIZE"
    after = dt.to_pandas()
    key = ["doc_id"]
    pd.testing.assert_frame_equal(
        after.sort_values(key).reset_index(drop=True),
        before.sort_values(key).reset_index(drop=True),
    )
    # a table this small compacts to a file or two: the rows are what must not change


def test_optimize_refuses_a_table_that_is_not_a_codes_table(spark, tmp_path, capsys):
    code, _, err = run_cli(capsys, "optimize", "--table", str(tmp_path / "nothing"))
    assert_clean_error(code, err, "does not exist")
    other = tmp_path / "other"
    write_deltalake(str(other), pd.DataFrame({"doc_id": ["a"], "x": [1]}))
    code, _, err = run_cli(capsys, "optimize", "--table", str(other))
    assert_clean_error(code, err, "not a codes table", "bucket1")
