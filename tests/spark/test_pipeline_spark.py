"""fit → annotate → stats on real Spark + Delta: synthetic vectors and the real model."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from hermes_spark.config import CorpusConfig, FitConfig, HermesConfig, ModelConfig
from hermes_spark.delta import get_store
from hermes_spark.quantize.codebook import Codebook
from hermes_spark.schema import recorded_levels
from hermes_spark.tasks.annotate import annotate
from hermes_spark.tasks.fit import fit
from hermes_spark.tasks.stats import compute_stats
from tests.helpers import shared_corpus, write_embedded_corpus

pytestmark = pytest.mark.spark

LEVELS = (4, 3, 2)


def embedded_cfg(path, **corpus) -> HermesConfig:
    return HermesConfig(
        corpus=CorpusConfig(
            input=str(path),
            embedding_col="emb",
            tokens_col="tokens",
            quality_col="quality",
            keep_cols=("source",),
            **corpus,
        ),
        fit=FitConfig(levels=LEVELS, sample_size=300, seed=3, n_iter=10),
    )


@pytest.fixture(scope="module")
def annotated(spark, tmp_path_factory):
    """A synthetic corpus (400 docs, 3 of them bad, 1 duplicate id) fitted and annotated."""
    root = tmp_path_factory.mktemp("pipe")
    corpus = write_embedded_corpus(root / "corpus", n=400, dim=32)
    bad = pa.table(
        {
            "id": ["bad-null", "bad-space", "bad-len", "doc-00001"],
            "text": [None, " \n\t ", "short vector", "a duplicate id"],
            "emb": pa.array(
                [[0.1] * 32, [0.1] * 32, [0.1] * 5, [0.2] * 32], type=pa.list_(pa.float32())
            ),
            "tokens": pa.array([5, 5, 5, 5], type=pa.int64()),
            "quality": [0.5, 0.5, 0.5, 0.5],
            "source": ["x", "x", "x", "x"],
        }
    )
    pq.write_table(bad, corpus / "part-999.parquet")
    cfg = embedded_cfg(corpus)
    book = fit(spark, cfg, str(root / "codebook"))
    table = str(root / "codes")
    report = annotate(spark, cfg, str(root / "codebook"), table)
    return cfg, book, table, report, root


def test_codes_table_has_every_valid_document_once(spark, annotated):
    _, book, table, report, _ = annotated
    df = get_store(spark).read(table)
    assert df.count() == 400
    assert df.select("doc_id").distinct().count() == 400
    assert report.table_rows == 400
    assert report.reject_reasons == {
        "null_text": 1,
        "empty_text": 1,
        "wrong_embedding_length": 1,
        "duplicate_doc_id": 1,
    }
    assert set(df.columns) >= {
        "doc_id",
        "c1",
        "c2",
        "c3",
        "bucket1",
        "bucket2",
        "bucket3",
        "qerr1",
        "qerr2",
        "qerr3",
        "n_tokens",
        "quality",
        "codebook_version",
        "annotated_at",
        "source",
    }
    assert {r[0] for r in df.select("codebook_version").distinct().collect()} == {
        book.codebook.version
    }


def test_rejects_table_names_each_bad_row(spark, annotated):
    _, _, table, _, _ = annotated
    rejects = DeltaTable(table + "_rejects").to_pandas()
    assert dict(zip(rejects["doc_id"], rejects["reason"], strict=True)) == {
        "bad-null": "null_text",
        "bad-space": "empty_text",
        "bad-len": "wrong_embedding_length",
        "doc-00001": "duplicate_doc_id",
    }


def test_codes_match_the_codebook_on_the_driver(spark, annotated, tmp_path):
    _cfg, book, table, _, root = annotated
    codes = DeltaTable(table).to_pandas().set_index("doc_id").sort_index()
    src = pq.read_table(root / "corpus").to_pandas()
    src = src[src["id"].str.startswith("doc-")].drop_duplicates("id").set_index("id")
    x = np.stack(src.loc[codes.index, "emb"].to_numpy()).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    expect, qerr = book.codebook.assign(x)
    np.testing.assert_array_equal(codes[["c1", "c2", "c3"]].to_numpy(), expect)
    np.testing.assert_allclose(codes[["qerr1", "qerr2", "qerr3"]].to_numpy(), qerr, rtol=1e-5)
    k2, k3 = LEVELS[1], LEVELS[2]
    np.testing.assert_array_equal(codes["bucket2"], codes["c1"] * k2 + codes["c2"])
    np.testing.assert_array_equal(codes["bucket3"], codes["bucket2"] * k3 + codes["c3"])
    np.testing.assert_array_equal(codes["n_tokens"], src.loc[codes.index, "tokens"])


def test_rerun_is_a_no_op(spark, annotated):
    cfg, _book, table, _, root = annotated
    before = DeltaTable(table).version()
    again = annotate(spark, cfg, str(root / "codebook"), table)
    assert again.chunks_skipped == again.chunks_total
    assert DeltaTable(table).version() == before
    assert again.table_rows == 400


def test_stats_tables_add_up(spark, annotated):
    _, _book, table, _, root = annotated
    result = compute_stats(spark, table, str(root / "stats"), None, list(LEVELS))
    stats = DeltaTable(str(root / "stats")).to_pandas()
    codes = DeltaTable(table).to_pandas()
    for level in (1, 2, 3):
        s = stats[stats["level"] == level]
        assert s["docs"].sum() == len(codes)
        assert s["tokens"].sum() == codes["n_tokens"].sum()
        assert math.isclose(s["share_docs"].sum(), 1.0, rel_tol=1e-9)
        assert len(s) == codes[f"bucket{level}"].nunique()
    l1 = stats[stats["level"] == 1].set_index("bucket")
    expected_children = codes.groupby("bucket1")["bucket2"].nunique()
    assert (l1.loc[expected_children.index, "children"] == expected_children).all()
    levels = {r["level"]: r for r in result.levels}
    counts = codes.groupby("bucket1").size().to_numpy()
    n = counts.sum()
    assert levels[1]["cells_total"] == LEVELS[0]
    assert levels[3]["cells_total"] == math.prod(LEVELS)
    assert math.isclose(
        levels[1]["imbalance"], len(counts) * (counts**2).sum() / n**2, rel_tol=1e-9
    )
    p = counts / n
    assert math.isclose(levels[1]["entropy_bits"], float(-(p * np.log2(p)).sum()), rel_tol=1e-9)


def test_stats_know_the_level_sizes_from_the_commit_log(spark, annotated, tmp_path):
    """Without --codebook, stats read K1..K3 that annotate recorded in its commits, so an
    unused last level-1 code still counts in cells_total; a table without that record
    falls back to inference, where K1 can only be a lower bound."""
    cfg, book, _, _, root = annotated
    store = get_store(spark)
    table = str(tmp_path / "codes")
    annotate(spark, cfg, str(root / "codebook"), table)
    last = LEVELS[0] - 1
    assert store.delete(table, f"c1 = {last}") > 0
    assert recorded_levels(store, table, book.codebook.version) == list(LEVELS)
    result = compute_stats(spark, table, str(tmp_path / "stats"))
    cells = {r["level"]: r["cells_total"] for r in result.levels}
    assert cells == {1: LEVELS[0], 2: LEVELS[0] * LEVELS[1], 3: math.prod(LEVELS)}

    copy = str(tmp_path / "copy")  # same rows, written without annotate's commit metadata
    store.overwrite(store.read(table), copy, partition_by=("codebook_version",))
    assert recorded_levels(store, copy, book.codebook.version) is None
    inferred = compute_stats(spark, copy, str(tmp_path / "stats2"))
    assert {r["level"]: r["cells_total"] for r in inferred.levels}[1] == last


def test_same_seed_same_version(spark, annotated, tmp_path):
    cfg, book, _, _, _ = annotated
    again = fit(spark, cfg, str(tmp_path / "cb"))
    assert again.codebook.version == book.codebook.version
    other = fit(
        spark,
        dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, seed=4)),
        str(tmp_path / "cb2"),
    )
    assert other.codebook.version != book.codebook.version


@pytest.mark.model
def test_real_model_end_to_end_on_ag_news(spark, tmp_path):
    """The real all-MiniLM-L6-v2 on 240 AG News items: codes recover the news sections."""
    src = pq.read_table(shared_corpus("ag_news_test.parquet")).slice(0, 240)
    pq.write_table(src, tmp_path / "news.parquet")
    cfg = HermesConfig(
        corpus=CorpusConfig(input=str(tmp_path / "news.parquet"), keep_cols=("label",)),
        model=ModelConfig(max_seq_length=128, batch_size=32),
        fit=FitConfig(levels=(4, 4, 2), sample_size=240, seed=0, n_iter=10, lst_dim=32),
    )
    book = fit(spark, cfg, str(tmp_path / "cb"))
    loaded = Codebook.load(tmp_path / "cb")
    assert loaded.model["dim"] == 384 and loaded.model["max_seq_length"] == 128
    report = annotate(spark, cfg, str(tmp_path / "cb"), str(tmp_path / "codes"))
    assert report.table_rows == 240 and report.rejects_written == 0
    codes = get_store(spark).read(str(tmp_path / "codes"))
    assert codes.where(F.col("n_tokens") <= 0).count() == 0
    # the codes carry real semantic signal: c1 purity well above the majority baseline
    pdf = codes.select("c1", "label").toPandas()
    purity = pdf.groupby("c1")["label"].agg(lambda s: s.value_counts().iloc[0]).sum() / 240
    majority = pdf["label"].value_counts().iloc[0] / 240
    assert purity > majority + 0.1
    assert book.report["stages"][0]["relative_mse"] > book.report["stages"][2]["relative_mse"]


def test_new_snapshot_costs_only_its_new_documents(spark, tmp_path):
    corpus = write_embedded_corpus(tmp_path / "corpus", n=200, dim=32, files=2)
    cfg = embedded_cfg(corpus)
    fit(spark, cfg, str(tmp_path / "cb"))
    first = annotate(spark, cfg, str(tmp_path / "cb"), str(tmp_path / "codes"))
    assert first.rows_written == 200
    old = DeltaTable(str(tmp_path / "codes")).to_pandas().set_index("doc_id")
    snapshot = write_embedded_corpus(tmp_path / "next", n=260, dim=32, files=1)
    new_rows = pq.read_table(snapshot / "part-000.parquet").slice(200, 60)
    pq.write_table(new_rows, corpus / "part-002.parquet")
    second = annotate(spark, cfg, str(tmp_path / "cb"), str(tmp_path / "codes"))
    assert second.rows_written == 60 and second.table_rows == 260
    after = DeltaTable(str(tmp_path / "codes")).to_pandas().set_index("doc_id")
    assert after.index.is_unique
    # the 200 old rows were not rewritten: same annotation time as the first run
    assert (after.loc[old.index, "annotated_at"] == old["annotated_at"]).all()
