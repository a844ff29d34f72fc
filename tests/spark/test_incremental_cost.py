"""Incremental annotate costs what its new files cost, and stays exactly-once.

The ledger ``<CODES>_files`` lets finished files go unread; the table is looked up once
per run (not per chunk); chunks of finished files are never re-formed; two writers with
different chunkings leave one row per document; keep-first does not depend on split
sizes; the "latest" version is the newest first commit; commits record the device.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

import hermes_spark.tasks.annotate as annotate_task
import hermes_spark.tasks.annotate_write as annotate_write
from hermes_spark.config import AnnotateConfig, CorpusConfig, FitConfig, HermesConfig
from hermes_spark.corpus import duplicate_losers, prepare, read_corpus
from hermes_spark.delta import get_store
from hermes_spark.schema import DEVICE_META, latest_version
from hermes_spark.tasks.annotate import annotate
from hermes_spark.tasks.fit import fit
from hermes_spark.tasks.ledger import ledger_table_name
from hermes_spark.versions import list_versions
from tests.helpers import write_embedded_corpus

pytestmark = pytest.mark.spark

LEVELS = (4, 3, 2)


def _cfg(corpus, files_per_chunk: int = 64) -> HermesConfig:
    return HermesConfig(
        corpus=CorpusConfig(input=str(corpus), embedding_col="emb", tokens_col="tokens"),
        fit=FitConfig(levels=LEVELS, sample_size=200, seed=3, n_iter=10),
        annotate=AnnotateConfig(files_per_chunk=files_per_chunk),
    )


@pytest.fixture(scope="module")
def book(spark, tmp_path_factory):
    """A codebook fitted on 240 synthetic 32-d vectors, and the corpus generator's seed."""
    root = tmp_path_factory.mktemp("cost")
    corpus = write_embedded_corpus(root / "fitcorpus", n=240, dim=32, files=1)
    fit(spark, _cfg(corpus), str(root / "codebook"))
    return str(root / "codebook")


def _split_corpus(path, n_files: int, per_file: int = 30, seed: int = 0, prefix: str = "f"):
    """``n_files`` Parquet files named ``{prefix}{i}.parquet`` with distinct ids."""
    full = write_embedded_corpus(path / "_all", n=n_files * per_file, dim=32, seed=seed, files=1)
    table = pq.read_table(full / "part-000.parquet")
    for i in range(n_files):
        pq.write_table(table.slice(i * per_file, per_file), path / f"{prefix}{i}.parquet")
    for f in full.iterdir():
        f.unlink()
    full.rmdir()
    return path


def _codes(table) -> dict[str, int]:
    df = DeltaTable(str(table)).to_pandas()
    return df.groupby("doc_id").size().to_dict()


def test_finished_files_are_never_opened_again(spark, book, tmp_path):
    corpus = _split_corpus(tmp_path / "corpus", 2)
    table = tmp_path / "codes"
    assert annotate(spark, _cfg(corpus), book, str(table)).rows_written == 60
    ledger = DeltaTable(ledger_table_name(str(table))).to_pandas()
    assert sorted(os.path.basename(f) for f in ledger["file"]) == ["f0.parquet", "f1.parquet"]

    # Overwrite a finished file with garbage of the same size and mtime: a run that opened
    # it would fail; the ledger says it is done, so only the new file is read.
    finished = corpus / "f0.parquet"
    stat = finished.stat()
    finished.write_bytes(b"x" * stat.st_size)
    os.utime(finished, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    extra = _split_corpus(tmp_path / "more", 1, seed=7, prefix="g")
    pq.write_table(
        pq.read_table(extra / "g0.parquet").set_column(
            0, "id", pa.array([f"new-{i}" for i in range(30)])
        ),
        corpus / "g0.parquet",
    )
    report = annotate(spark, _cfg(corpus), book, str(table))
    assert (report.files_total, report.files_finished_before) == (3, 2)
    assert report.rows_written == 30 and report.table_rows == 90
    counts = _codes(table)
    assert len(counts) == 90 and set(counts.values()) == {1}


def test_the_table_is_read_a_fixed_number_of_times_whatever_the_chunks(
    spark, book, tmp_path, monkeypatch
):
    """Codes-table scans per run do not grow with the number of pending chunks."""
    reads: dict[int, int] = {}

    def counted_runs(n_new: int) -> int:
        corpus = _split_corpus(tmp_path / f"c{n_new}", 2)
        table = str(tmp_path / f"codes{n_new}")
        annotate(spark, _cfg(corpus, files_per_chunk=1), book, table)
        _split_corpus(corpus, n_new, seed=11, prefix="new")  # new files, new ids below
        for i in range(n_new):
            path = corpus / f"new{i}.parquet"
            t = pq.read_table(path)
            ids = pa.array([f"n{n_new}-{i}-{j}" for j in range(t.num_rows)])
            pq.write_table(t.set_column(0, "id", ids), path)
        store = get_store(spark)
        real_read = store.read
        seen = {"n": 0}

        def read(name: str):
            if name.rstrip("/") == table:
                seen["n"] += 1
            return real_read(name)

        monkeypatch.setattr(store, "read", read)
        monkeypatch.setattr(annotate_task, "get_store", lambda _spark, *_a, **_k: store)
        report = annotate(spark, _cfg(corpus, files_per_chunk=1), book, table)
        monkeypatch.undo()
        assert report.chunks_total == n_new and report.rows_written == 30 * n_new
        assert set(_codes(table).values()) == {1}
        return seen["n"]

    reads[1] = counted_runs(1)
    reads[4] = counted_runs(4)
    # rows before + rows after + one id look-up + the start-of-run check for raced
    # commits + the schema check for source_row (the log only): a fixed number, never
    # one per chunk
    assert reads[4] == reads[1] <= 5, reads


def test_a_file_added_in_the_middle_forms_one_new_chunk(spark, book, tmp_path):
    corpus = _split_corpus(tmp_path / "corpus", 3)  # f0 f1 f2
    for i, name in enumerate(["a", "c", "e"]):
        (corpus / f"f{i}.parquet").rename(corpus / f"{name}.parquet")
    table = tmp_path / "codes"
    annotate(spark, _cfg(corpus, files_per_chunk=2), book, str(table))  # [a c] [e]
    commits = DeltaTable(str(table)).version()
    extra = _split_corpus(tmp_path / "more", 1, seed=5, prefix="b")
    t = pq.read_table(extra / "b0.parquet")
    pq.write_table(
        t.set_column(0, "id", pa.array([f"b-{j}" for j in range(t.num_rows)])),
        corpus / "b.parquet",
    )
    report = annotate(spark, _cfg(corpus, files_per_chunk=2), book, str(table))
    # [a b] [c e] would redo finished files under new transaction ids; only [b] is new
    assert report.chunks_total == 1 and report.rows_written == 30
    assert DeltaTable(str(table)).version() == commits + 1  # one codes commit
    assert set(_codes(table).values()) == {1}


def test_two_writers_with_different_chunkings_leave_one_row_per_document(
    spark, book, tmp_path, monkeypatch
):
    """Writer A (one file per chunk) looks the ids up, then writer B (two files per
    chunk) annotates everything before A's first commit lands. Different chunks, so
    different transaction ids: A must notice the race and keep one row per id."""
    corpus = _split_corpus(tmp_path / "corpus", 2)
    table = str(tmp_path / "codes")
    real_commit = annotate_write.commit
    raced = {"done": False}

    def commit_after_b(run, codes, rejects, **kw):
        if not raced["done"]:
            raced["done"] = True
            b = annotate(spark, _cfg(corpus, files_per_chunk=2), book, table)
            assert b.rows_written == 60
        return real_commit(run, codes, rejects, **kw)

    monkeypatch.setattr(annotate_write, "commit", commit_after_b)
    a = annotate(spark, _cfg(corpus, files_per_chunk=1), book, table)
    assert raced["done"]
    counts = _codes(table)
    assert len(counts) == 60 and set(counts.values()) == {1}, a
    assert a.duplicates_resolved == 30
    assert a.table_rows == 60


def _dup_file(path, first_text: str, last_text: str, n_groups: int = 6) -> None:
    """One Parquet file, one row group per 10 rows; id ``x`` first and last."""
    ids = ["x"] + [f"r{i}" for i in range(10 * n_groups - 2)] + ["x"]
    texts = [first_text] + [f"filler {i}" for i in range(len(ids) - 2)] + [last_text]
    rng = np.random.default_rng(0)
    pq.write_table(
        pa.table(
            {
                "id": ids,
                "text": texts,
                "emb": pa.array(rng.normal(size=(len(ids), 32)).tolist(), pa.list_(pa.float32())),
                "tokens": pa.array([5] * len(ids), pa.int64()),
            }
        ),
        path,
        row_group_size=10,
    )


def _keeper(spark, path, max_bytes: str) -> list[tuple[str, str]]:
    cfg = CorpusConfig(input=str(path), embedding_col="emb", tokens_col="tokens")
    previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", max_bytes)
    try:
        prepared = prepare(read_corpus(spark, cfg, [str(path)]), cfg, 32)
        losers = duplicate_losers(prepared).select("doc_id", "_order")
        kept = prepared.join(losers, ["doc_id", "_order"], "left_anti").where("doc_id = 'x'")
        return sorted((r["doc_id"], r["text"]) for r in kept.select("doc_id", "text").collect())
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", previous)


def test_keep_first_keeps_the_first_row_whatever_the_split_size(spark, tmp_path):
    # texts whose content hash orders the last copy first: a hash tie-break within a
    # split would keep the last copy once both copies share one split
    hashes = spark.createDataFrame([(f"t{i}",) for i in range(40)], "t string").select(
        "t", F.xxhash64("t", F.lit("x")).alias("h")
    )
    by_hash = [r["t"] for r in hashes.orderBy("h").collect()]
    first_text, last_text = by_hash[-1], by_hash[0]
    path = tmp_path / "dups.parquet"
    _dup_file(path, first_text, last_text)
    one_split = _keeper(spark, path, "128MB")
    many_splits = _keeper(spark, path, "1k")
    assert one_split == many_splits == [("x", first_text)]


def test_export_keeps_the_copy_annotate_kept_in_json_lines(spark, tmp_path):
    # JSON lines have no row index: annotate keeps the copy with the smaller record hash
    # (corpus.stable_order). Texts chosen so that this is the *later* line: an ordering
    # by line position (or by split-dependent ids) would pick the other copy.
    from hermes_spark.sampling.texts import corpus_rows, first_per_id

    records = [(f"t{i}", F.xxhash64(F.lit("x"), F.lit(f"t{i}"))) for i in range(12)]
    probe = spark.range(1).select(*[h.alias(t) for t, h in records]).first()
    by_hash = sorted((probe[t], t) for t, _ in records)
    later_first, earlier = by_hash[0][1], by_hash[-1][1]
    lines = [{"id": "x", "text": earlier}]
    lines += [{"id": f"r{i}", "text": f"filler {i}"} for i in range(30)]
    lines += [{"id": "x", "text": later_first}]
    path = tmp_path / "dups.jsonl"
    path.write_text("".join(f'{{"id": "{r["id"]}", "text": "{r["text"]}"}}\n' for r in lines))
    cfg = CorpusConfig(input=str(path), format="json")
    previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
    kept = []
    try:
        for max_bytes in ("128MB", "200"):
            spark.conf.set("spark.sql.files.maxPartitionBytes", max_bytes)
            raw = read_corpus(spark, cfg, [str(path)])
            prepared = prepare(raw, cfg, None)
            losers = duplicate_losers(prepared).select("doc_id", "_order")
            annotated = prepared.join(losers, ["doc_id", "_order"], "left_anti")
            texts, _ = corpus_rows(read_corpus(spark, cfg, [str(path)]), cfg)
            exported = first_per_id(texts).where("doc_id = 'x'").select("text").first()[0]
            kept.append((annotated.where("doc_id = 'x'").select("text").first()[0], exported))
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", previous)
    assert kept == [(later_first, later_first)] * 2


def test_identical_copies_in_one_file_keep_exactly_one(spark, tmp_path):
    path = tmp_path / "same.parquet"
    row = {"id": ["y", "y"], "text": ["same", "same"], "tokens": [5, 5]}
    table = pa.table({**row, "emb": pa.array([[0.5] * 32] * 2, pa.list_(pa.float32()))})
    pq.write_table(table, path)
    cfg = CorpusConfig(input=str(path), embedding_col="emb", tokens_col="tokens")
    prepared = prepare(read_corpus(spark, cfg, [str(path)]), cfg, 32)
    losers = duplicate_losers(prepared)
    assert losers.count() == 1
    kept = prepared.join(losers.select("doc_id", "_order"), ["doc_id", "_order"], "left_anti")
    assert kept.count() == 1


def test_an_old_version_re_run_over_new_documents_stays_not_latest(spark, book, tmp_path):
    corpus = _split_corpus(tmp_path / "corpus", 1)
    table = str(tmp_path / "codes")
    annotate(spark, _cfg(corpus), book, table)  # old version first
    other = str(tmp_path / "cb2")
    cfg2 = _cfg(corpus)
    cfg2 = HermesConfig(
        corpus=cfg2.corpus,
        fit=FitConfig(levels=LEVELS, sample_size=200, seed=9, n_iter=10),
        annotate=cfg2.annotate,
    )
    new_version = fit(spark, cfg2, other).codebook.version
    annotate(spark, cfg2, other, table)  # the new version
    old_version = (
        DeltaTable(table)
        .to_pandas()
        .query("codebook_version != @new_version")["codebook_version"]
        .iloc[0]
    )
    extra = _split_corpus(tmp_path / "more", 1, seed=3, prefix="late")
    t = pq.read_table(extra / "late0.parquet")
    pq.write_table(
        t.set_column(0, "id", pa.array([f"late-{j}" for j in range(t.num_rows)])),
        corpus / "late.parquet",
    )
    annotate(spark, _cfg(corpus), book, table)  # the old artifact again, over new docs
    codes = get_store(spark).read(table)
    newest_row = codes.orderBy(F.col("annotated_at").desc()).first()
    assert newest_row["codebook_version"] == old_version  # newest rows are the old version's
    assert latest_version(codes) == new_version
    assert list_versions(spark, table)[0].codebook_version == new_version


def test_commits_record_the_device_and_versions_show_a_mix(spark, book, tmp_path, capsys):
    from hermes_spark.cli import execute as main

    corpus = _split_corpus(tmp_path / "corpus", 1)
    table = str(tmp_path / "codes")
    report = annotate(spark, _cfg(corpus), book, table)
    assert report.device == "given"  # vectors came with the corpus: no model ran
    meta = [m for m in get_store(spark).commit_metadata(table) if DEVICE_META in m]
    assert meta and {m[DEVICE_META] for m in meta} == {"given"}
    infos = list_versions(spark, table)
    assert infos[0].devices == ("given",) and not infos[0].mixed_devices

    # a second batch of the same version embedded elsewhere (recorded as cuda:fp16)
    extra = _split_corpus(tmp_path / "more", 1, seed=4, prefix="gpu")
    t = pq.read_table(extra / "gpu0.parquet")
    pq.write_table(
        t.set_column(0, "id", pa.array([f"gpu-{j}" for j in range(t.num_rows)])),
        corpus / "gpu.parquet",
    )
    real = annotate_task.embedding_device
    try:
        annotate_task.embedding_device = lambda *a: "cuda:fp16"
        annotate(spark, _cfg(corpus), book, table)
    finally:
        annotate_task.embedding_device = real
    info = list_versions(spark, table)[0]
    assert info.devices == ("cuda:fp16", "given") and info.mixed_devices
    capsys.readouterr()
    assert main(["versions", "--table", table]) == 0
    assert "MIXED devices cuda:fp16+given" in capsys.readouterr().out


class _Killed(RuntimeError):
    """Stands in for a kill between a chunk's two writes."""


def test_a_kill_between_the_codes_and_vectors_writes_loses_no_vector(
    spark, book, tmp_path, monkeypatch
):
    """``--store-embeddings`` writes two tables per chunk. A run killed after the first
    of the two (whichever order the chunk writes them in) and then re-run leaves every
    coded document with exactly one vector: the chunk's completion marker comes last."""
    from hermes_spark.schema import embeddings_table_name

    corpus = _split_corpus(tmp_path / "corpus", 2)
    table = str(tmp_path / "codes")
    calls: list[str] = []

    def second_write_fails(name, real):
        def wrapped(*args, **kw):
            calls.append(name)
            if len(calls) == 2:
                raise _Killed(f"killed before {name}")
            return real(*args, **kw)

        return wrapped

    monkeypatch.setattr(
        annotate_write, "commit", second_write_fails("codes", annotate_write.commit)
    )
    monkeypatch.setattr(
        annotate_write,
        "write_embeddings",
        second_write_fails("vectors", annotate_write.write_embeddings),
    )
    with pytest.raises(_Killed):
        annotate(spark, _cfg(corpus, files_per_chunk=2), book, table, store_embeddings=True)
    monkeypatch.undo()

    annotate(spark, _cfg(corpus, files_per_chunk=2), book, table, store_embeddings=True)
    codes = _codes(table)
    vectors = DeltaTable(embeddings_table_name(table)).to_pandas()
    assert len(codes) == 60 and set(codes.values()) == {1}
    assert sorted(vectors["doc_id"]) == sorted(codes), "a coded document lost its vector"
    assert vectors["doc_id"].is_unique
