"""Two annotate runs that race leave one row per document, even when one of them dies;
a compacted Delta corpus is not read again; a chunk reads its corpus once and shuffles its
text once.

Writer A looks the ids up, then writer B (another chunking, so other transaction ids)
annotates the same files before A's commit lands. Doubled ``(doc_id, version)`` rows are
resolved by a join-delete (never a predicate with one clause per id), and a run that
finds a raced commit nobody settled (its writer was killed after committing) settles it
before anything else. A Delta corpus's ledger records the corpus version a run finished:
files a compaction rewrote (``dataChange = false``) are not pending.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

import hermes_spark.tasks.annotate as annotate_task
import hermes_spark.tasks.annotate_incremental as annotate_incremental
import hermes_spark.tasks.annotate_write as annotate_write
from hermes_spark.config import AnnotateConfig, CorpusConfig, FitConfig, HermesConfig
from hermes_spark.tasks import seen
from hermes_spark.tasks.annotate import annotate
from hermes_spark.tasks.fit import fit
from tests.helpers import write_embedded_corpus
from tests.spark.plans import output_names, plan_of, scans_of, shuffles

pytestmark = pytest.mark.spark

LEVELS = (4, 3, 2)


def _cfg(corpus, files_per_chunk: int, fmt: str = "parquet") -> HermesConfig:
    return HermesConfig(
        corpus=CorpusConfig(
            input=str(corpus), embedding_col="emb", tokens_col="tokens", format=fmt
        ),
        fit=FitConfig(levels=LEVELS, sample_size=200, seed=3, n_iter=10),
        annotate=AnnotateConfig(files_per_chunk=files_per_chunk),
    )


@pytest.fixture(scope="module")
def book(spark, tmp_path_factory) -> str:
    """A codebook fitted on 240 synthetic 32-d vectors."""
    root = tmp_path_factory.mktemp("races")
    corpus = write_embedded_corpus(root / "fit", n=240, dim=32, files=1)
    fit(spark, _cfg(corpus, 64), str(root / "codebook"))
    return str(root / "codebook")


def _counts(table: str) -> dict[str, int]:
    df = DeltaTable(table).to_pandas(columns=["doc_id"])
    return df.groupby("doc_id").size().to_dict()


def _race(monkeypatch, spark, corpus, book, table, n: int, *, kill_resolution: bool):
    """Run A (one file per chunk) with B (both files in one chunk) committing everything
    between A's look-up and A's first commit; optionally kill A in its resolution."""
    real_commit = annotate_write.commit
    real_resolve = seen.resolve_duplicates
    raced = {"done": False}

    def commit_after_b(run, codes, rejects, **kw):
        if not raced["done"]:
            raced["done"] = True
            b = annotate(spark, _cfg(corpus, 2), book, table)
            assert b.rows_written == n
        return real_commit(run, codes, rejects, **kw)

    def killed(*args, **kw):
        raise KeyboardInterrupt("killed between commit and resolution")

    monkeypatch.setattr(annotate_write, "commit", commit_after_b)
    if kill_resolution:
        monkeypatch.setattr(seen, "resolve_duplicates", killed)
        with pytest.raises(KeyboardInterrupt):
            annotate(spark, _cfg(corpus, 1), book, table)
        monkeypatch.setattr(seen, "resolve_duplicates", real_resolve)
        monkeypatch.setattr(annotate_write, "commit", real_commit)
        counts = _counts(table)
        assert max(counts.values()) == 2  # the kill left doubles behind
        return annotate(spark, _cfg(corpus, 1), book, table)
    return annotate(spark, _cfg(corpus, 1), book, table)


def test_a_ten_thousand_id_race_keeps_one_row_per_document(spark, book, tmp_path, monkeypatch):
    corpus = write_embedded_corpus(tmp_path / "corpus", n=10_000, dim=32, files=2)
    table = str(tmp_path / "codes")
    a = _race(monkeypatch, spark, corpus, book, table, 10_000, kill_resolution=False)
    counts = _counts(table)
    assert len(counts) == 10_000 and set(counts.values()) == {1}
    assert a.duplicates_resolved == 5_000  # A's first chunk doubled B's rows of that file
    assert a.table_rows == 10_000


def test_a_writer_killed_between_commit_and_resolution_is_settled_by_the_next_run(
    spark, book, tmp_path, monkeypatch
):
    corpus = write_embedded_corpus(tmp_path / "corpus", n=400, dim=32, files=2)
    table = str(tmp_path / "codes")
    rerun = _race(monkeypatch, spark, corpus, book, table, 400, kill_resolution=True)
    counts = _counts(table)
    assert len(counts) == 400 and set(counts.values()) == {1}
    assert rerun.duplicates_resolved == 200
    assert rerun.table_rows == 400
    # settled once: a further run finds nothing to resolve and writes nothing
    again = annotate(spark, _cfg(corpus, 1), book, table)
    assert again.duplicates_resolved == 0 and again.rows_written == 0


def test_a_compacted_delta_corpus_is_not_read_again(spark, book, tmp_path, monkeypatch):
    parquet = write_embedded_corpus(tmp_path / "parquet", n=300, dim=32, files=3)
    corpus = str(tmp_path / "delta")
    for part in sorted(parquet.iterdir()):
        write_deltalake(corpus, pq.read_table(part), mode="append")
    table = str(tmp_path / "codes")
    cfg = _cfg(corpus, 1, fmt="delta")
    assert annotate(spark, cfg, book, table).rows_written == 300

    DeltaTable(corpus).optimize.compact()
    assert len(DeltaTable(corpus).file_uris()) == 1  # every file is new to a listing
    reads: list[tuple[str, ...]] = []
    real_read = annotate_task.read_corpus

    def counted(spark_, corpus_cfg, files, **kwargs):
        reads.append(tuple(files))
        return real_read(spark_, corpus_cfg, files, **kwargs)

    for module in (annotate_task, annotate_incremental, annotate_write):  # every reader
        monkeypatch.setattr(module, "read_corpus", counted)
    again = annotate(spark, cfg, book, table)
    assert again.rows_written == 0 and again.rejects_written == 0
    assert reads == [], "the compacted corpus was read again"
    assert again.files_finished_before == again.files_total == 1

    new = pq.read_table(parquet / "part-000.parquet").slice(0, 40)
    new = new.set_column(0, "id", pa.array([f"new-{i}" for i in range(40)]))
    write_deltalake(corpus, new, mode="append")
    third = annotate(spark, cfg, book, table)
    assert third.rows_written == 40 and third.table_rows == 340
    assert {len(files) for files in reads} == {1}  # only the appended file was read
    counts = _counts(table)
    assert len(counts) == 340 and set(counts.values()) == {1}


def test_a_chunk_reads_its_corpus_once_and_shuffles_its_text_once(
    spark, book, tmp_path, monkeypatch
):
    """Plan shape of the run's id scan and of each chunk's coding input, with an id
    repeated across the two chunks and one repeated inside a chunk: finding them costs
    no scan of the text beyond the chunk's own, and no shuffle of it."""
    corpus = write_embedded_corpus(tmp_path / "corpus", n=200, dim=32, files=2)
    part = corpus / "part-001.parquet"
    t = pq.read_table(part)
    ids = t["id"].to_pylist()
    ids[0], ids[2] = "doc-00000", ids[1]  # a copy of a chunk-0 id; a repeat inside chunk 1
    pq.write_table(t.set_column(0, "id", pa.array(ids)), part)
    inputs, scans = [], []
    real_code, real_scan = annotate_write.code_rows, annotate_incremental._scan_duplicates

    def recording(prepared, *args, **kw):
        inputs.append(prepared)
        return real_code(prepared, *args, **kw)

    def recording_scan(*args, **kw):
        scans.append(real_scan(*args, **kw))
        return scans[-1]

    monkeypatch.setattr(annotate_write, "code_rows", recording)
    monkeypatch.setattr(annotate_incremental, "_scan_duplicates", recording_scan)
    report = annotate(spark, _cfg(corpus, 1), book, str(tmp_path / "codes"))
    assert report.reject_reasons == {"duplicate_doc_id": 2} and report.rows_written == 198
    assert scans[0] is not None and not scans_of(plan_of(scans[0]), "text")
    assert len(inputs) == 2
    for chunk_input in inputs:
        plan = plan_of(chunk_input)
        assert len(scans_of(plan, "text")) == 1, "a chunk's corpus is scanned more than once"
        text_shuffles = [s for s in shuffles(plan) if "text" in output_names(s)]
        assert len(text_shuffles) == 1, [s.toString() for s in text_shuffles]
    kept = DeltaTable(str(tmp_path / "codes")).to_pandas(columns=["doc_id", "source_file"])
    assert kept["doc_id"].is_unique
    first = kept.set_index("doc_id").loc["doc-00000", "source_file"]
    assert first.endswith("part-000.parquet")  # the first copy (lowest chunk) is kept


def test_the_vector_length_probe_moves_no_row_through_its_exchange(spark, tmp_path):
    """The given-vectors probe's limit gathers its rows in one task: only their lengths
    may cross that exchange, never the vectors or the text."""
    from hermes_spark.corpus import embedding_lengths

    corpus = write_embedded_corpus(tmp_path / "corpus", n=50, dim=8, files=2)
    raw = spark.read.parquet(str(corpus))
    probe = embedding_lengths(raw, "emb", probe_rows=20)
    assert [tuple(r) for r in probe.collect()] == [(8, 20)]
    exchanged = [name for s in shuffles(plan_of(probe)) for name in output_names(s)]
    assert exchanged and set(exchanged) <= {"n", "count"}, exchanged


def test_codes_record_each_rows_position_and_an_older_table_keeps_its_schema(spark, book, tmp_path):
    """``source_row`` is the row's index in ``source_file``; a codes table written before
    the column existed gets new rows in its own schema (export joins those by id)."""
    corpus = write_embedded_corpus(tmp_path / "corpus", n=120, dim=32, files=2)
    table = str(tmp_path / "codes")
    assert annotate(spark, _cfg(corpus, 1), book, table).rows_written == 120
    codes = DeltaTable(table).to_pandas(columns=["doc_id", "source_file", "source_row"])
    for file, rows in codes.groupby("source_file"):
        ids = pq.read_table(file.removeprefix("file:"), columns=["id"]).column("id").to_pylist()
        assert [ids[r] for r in rows["source_row"]] == rows["doc_id"].tolist()
    old = str(tmp_path / "old_codes")
    from hermes_spark.delta import get_store

    store = get_store(spark)
    store.overwrite(store.read(table).drop("source_row"), old, partition_by=("codebook_version",))
    extra = pq.read_table(corpus / "part-000.parquet").slice(0, 30)
    extra = extra.set_column(0, "id", pa.array([f"late-{i}" for i in range(30)]))
    more = tmp_path / "more"
    more.mkdir()
    pq.write_table(extra, more / "part-000.parquet")
    report = annotate(spark, _cfg(more, 1), book, old)
    assert report.rows_written == 30
    assert "source_row" not in DeltaTable(old).schema().to_arrow().names
    assert (
        DeltaTable(old).to_pandas(columns=["doc_id"])["doc_id"].str.startswith("late-").sum() == 30
    )
