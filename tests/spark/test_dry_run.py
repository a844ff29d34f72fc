"""``hermes annotate --dry-run``: the pending work of a half-annotated corpus, counted from
the real ledger and Parquet footers, with a timed probe, and nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hermes_spark.config import load_config
from hermes_spark.tasks.dry_run import dry_run
from tests.helpers import run_cli, write_embedded_corpus


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def half_done(spark, tmp_path_factory):
    """Four corpus files of 100 rows; the first two annotated, the last two added after."""
    root = tmp_path_factory.mktemp("dry_run")
    every = write_embedded_corpus(root / "all", n=400, files=4)
    corpus = root / "corpus"
    corpus.mkdir()
    for name in ("part-000.parquet", "part-001.parquet"):
        shutil.copy(every / name, corpus / name)
    common = ["--input", str(corpus), "--embedding-col", "emb", "--tokens-col", "tokens"]
    from hermes_spark.cli import execute

    assert execute(["fit", *common, "--out", str(root / "cb"), "--levels", "4,3"]) == 0
    annotate = [*common, "--codebook", str(root / "cb"), "--table", str(root / "codes")]
    assert execute(["annotate", *annotate, "--files-per-chunk", "1"]) == 0
    for name in ("part-002.parquet", "part-003.parquet"):
        shutil.copy(every / name, corpus / name)
    return {"root": root, "corpus": corpus, "annotate": annotate}


def test_dry_run_counts_the_pending_work_and_writes_nothing(half_done, capsys):
    root = half_done["root"]
    before = _tree(root)
    code, out, err = run_cli(
        capsys, "annotate", *half_done["annotate"], "--files-per-chunk", "1", "--dry-run"
    )
    assert code == 0, err
    assert _tree(root) == before  # no table, ledger, rejects or staging file changed
    assert "4 listed, 2 finished before, 2 pending" in out
    assert "chunks: 2 to annotate" in out
    assert "rows: ~200 (Parquet footers of 2 of 2 files)" in out
    assert "nothing was written" in out


def test_dry_run_rows_and_tokens_are_the_pending_files(spark, half_done):
    corpus = half_done["corpus"]
    cfg = load_config(None).with_overrides(
        {
            "corpus": {"input": str(corpus), "embedding_col": "emb", "tokens_col": "tokens"},
            "annotate": {"files_per_chunk": 1},
        }
    )
    root = half_done["root"]
    report = dry_run(spark, cfg, str(root / "cb"), str(root / "codes"), probe_docs=1000)
    pending = [pq.read_table(corpus / f"part-00{i}.parquet") for i in (2, 3)]
    assert report.files_pending == 2 and report.files_finished == 2
    assert report.estimated_rows == sum(t.num_rows for t in pending)
    # the probe coded the whole first pending file: its mean token count, exactly
    first = pending[0].column("tokens").to_pylist()
    assert report.probe_docs == len(first)
    assert report.tokens_per_doc == pytest.approx(sum(first) / len(first))
    assert report.estimated_tokens == round(report.estimated_rows * report.tokens_per_doc)
    assert report.estimated_seconds > 0

    # a full re-annotation would read every file
    full = dry_run(
        spark,
        cfg.with_overrides({"annotate": {"mode": "full"}}),
        str(root / "cb"),
        str(root / "codes"),
        probe_docs=8,
    )
    assert full.files_pending == 4 and full.estimated_rows == 400
