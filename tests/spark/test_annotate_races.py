"""Two annotate runs that race leave one row per document, even when one of them dies.

Writer A looks the ids up, then writer B (another chunking, so other transaction ids)
annotates the same files before A's commit lands. Doubled ``(doc_id, version)`` rows are
resolved by a join-delete (never a predicate with one clause per id), and a run that
finds a raced commit nobody settled (its writer was killed after committing) settles it
before anything else.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

import hermes_spark.tasks.annotate as annotate_task
from hermes_spark.config import AnnotateConfig, CorpusConfig, FitConfig, HermesConfig
from hermes_spark.tasks import seen
from hermes_spark.tasks.annotate import annotate
from hermes_spark.tasks.fit import fit
from tests.helpers import write_embedded_corpus

pytestmark = pytest.mark.spark

LEVELS = (4, 3, 2)


def _cfg(corpus, files_per_chunk: int) -> HermesConfig:
    return HermesConfig(
        corpus=CorpusConfig(input=str(corpus), embedding_col="emb", tokens_col="tokens"),
        fit=FitConfig(levels=LEVELS, sample_size=200, seed=3, n_iter=10),
        annotate=AnnotateConfig(files_per_chunk=files_per_chunk),
    )


@pytest.fixture(scope="module")
def race_corpus(spark, tmp_path_factory):
    """10,000 documents in two files (synthetic 32-d vectors) and a codebook of them."""
    root = tmp_path_factory.mktemp("races")
    corpus = write_embedded_corpus(root / "corpus", n=10_000, dim=32, files=2)
    fit(spark, _cfg(corpus, 64), str(root / "codebook"))
    return corpus, str(root / "codebook")


def _counts(table: str) -> dict[str, int]:
    df = DeltaTable(table).to_pandas(columns=["doc_id"])
    return df.groupby("doc_id").size().to_dict()


def _race(monkeypatch, spark, corpus, book, table, *, kill_resolution: bool):
    """Run A (one file per chunk) with B (both files in one chunk) committing everything
    between A's look-up and A's first commit; optionally kill A in its resolution."""
    real_commit = annotate_task._commit
    real_resolve = seen.resolve_duplicates
    raced = {"done": False}

    def commit_after_b(run, codes, rejects, **kw):
        if not raced["done"]:
            raced["done"] = True
            b = annotate(spark, _cfg(corpus, 2), book, table)
            assert b.rows_written == 10_000
        return real_commit(run, codes, rejects, **kw)

    def killed(*args, **kw):
        raise KeyboardInterrupt("killed between commit and resolution")

    monkeypatch.setattr(annotate_task, "_commit", commit_after_b)
    if kill_resolution:
        monkeypatch.setattr(seen, "resolve_duplicates", killed)
        with pytest.raises(KeyboardInterrupt):
            annotate(spark, _cfg(corpus, 1), book, table)
        monkeypatch.setattr(seen, "resolve_duplicates", real_resolve)
        monkeypatch.setattr(annotate_task, "_commit", real_commit)
        counts = _counts(table)
        assert max(counts.values()) == 2  # the kill left doubles behind
        return annotate(spark, _cfg(corpus, 1), book, table)
    return annotate(spark, _cfg(corpus, 1), book, table)


def test_a_ten_thousand_id_race_keeps_one_row_per_document(
    spark, race_corpus, tmp_path, monkeypatch
):
    corpus, book = race_corpus
    table = str(tmp_path / "codes")
    a = _race(monkeypatch, spark, corpus, book, table, kill_resolution=False)
    counts = _counts(table)
    assert len(counts) == 10_000 and set(counts.values()) == {1}
    assert a.duplicates_resolved == 5_000  # A's first chunk doubled B's rows of that file
    assert a.table_rows == 10_000


def test_a_writer_killed_between_commit_and_resolution_is_settled_by_the_next_run(
    spark, race_corpus, tmp_path, monkeypatch
):
    corpus, book = race_corpus
    table = str(tmp_path / "codes")
    rerun = _race(monkeypatch, spark, corpus, book, table, kill_resolution=True)
    counts = _counts(table)
    assert len(counts) == 10_000 and set(counts.values()) == {1}
    assert rerun.duplicates_resolved == 5_000
    assert rerun.table_rows == 10_000
    # settled once: a further run finds nothing to resolve and writes nothing
    again = annotate(spark, _cfg(corpus, 1), book, table)
    assert again.duplicates_resolved == 0 and again.rows_written == 0
