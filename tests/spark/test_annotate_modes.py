"""``--mode full`` re-annotates everything and replaces the version's rows; incremental
only adds what is missing. A test that fails if full behaved like incremental."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from tests.helpers import run_cli, write_embedded_corpus

pytestmark = pytest.mark.spark

EMB = ("--embedding-col", "emb", "--tokens-col", "tokens", "--keep-cols", "source")


def annotate(capsys, corpus, codebook, table, *extra):
    return run_cli(
        capsys,
        "annotate",
        "--input",
        str(corpus),
        "--codebook",
        str(codebook),
        "--table",
        str(table),
        *EMB,
        *extra,
    )


def test_full_mode_replaces_what_incremental_keeps(spark, tmp_path, capsys):
    corpus = write_embedded_corpus(tmp_path / "corpus", n=120, dim=16, files=3)
    code, _, err = run_cli(
        capsys,
        "fit",
        "--input",
        str(corpus),
        "--out",
        str(tmp_path / "cb"),
        "--levels",
        "4,3,2",
        "--sample-size",
        "100",
        *EMB[:4],
    )
    assert code == 0, err
    table = tmp_path / "codes"
    code, _, err = annotate(capsys, corpus, tmp_path / "cb", table)
    assert code == 0, err
    assert len(DeltaTable(str(table)).to_pandas()) == 120
    gone = sorted(corpus.glob("*.parquet"))[0]
    gone_ids = set(pq.read_table(gone)["id"].to_pylist())
    gone.unlink()  # the snapshot lost one file

    code, _, err = annotate(capsys, corpus, tmp_path / "cb", table)  # incremental: keeps them
    assert code == 0, err
    kept = DeltaTable(str(table)).to_pandas()
    assert gone_ids <= set(kept["doc_id"])
    version_before = DeltaTable(str(table)).version()

    code, out, err = annotate(capsys, corpus, tmp_path / "cb", table, "--mode", "full")
    assert code == 0, err
    dt = DeltaTable(str(table))
    rows = dt.to_pandas()
    assert not gone_ids & set(rows["doc_id"])  # replaced: the removed file's docs are gone
    assert len(rows) == 120 - len(gone_ids)
    assert rows["doc_id"].is_unique
    # one atomic replace of the version's rows (+ possibly one rejects commit): not chunks
    assert dt.version() - version_before == 1
    assert "rows of this version in the table: " + str(120 - len(gone_ids)) in out
