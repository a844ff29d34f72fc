"""fit → annotate with the default backend on real Spark: the artifact records it,
annotate embeds with it (codes equal the driver's), and a mismatch is refused unless
allowed, then recorded."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from hermes_spark.config import CorpusConfig, FitConfig, HermesConfig, ModelConfig
from hermes_spark.delta import get_store
from hermes_spark.embedding.device import device_label
from hermes_spark.embedding.encoder import Encoder
from hermes_spark.embedding.settings import (
    DEFAULT_CPU_BACKEND,
    DEFAULT_GPU_BACKEND,
    settings_for_annotate,
)
from hermes_spark.errors import InvalidConfigError
from hermes_spark.quantize.codebook import Codebook
from hermes_spark.schema import DEVICE_META
from hermes_spark.tasks.annotate import annotate
from hermes_spark.tasks.fit import fit
from tests.helpers import shared_corpus

pytestmark = [pytest.mark.spark, pytest.mark.model]


def test_default_backend_end_to_end(spark, tmp_path, monkeypatch):
    """The default (ONNX Runtime int8 on CPU executors, PyTorch fp16 on GPU ones) is
    recorded at fit and used by annotate; another backend is refused, or used and
    recorded when explicitly allowed, its codes stated against the fitted backend's."""
    monkeypatch.setenv("HERMES_CACHE_DIR", str(tmp_path / "cache"))
    src = pq.read_table(shared_corpus("ag_news_test.parquet")).slice(0, 64)
    pq.write_table(src, tmp_path / "news.parquet")
    cfg = HermesConfig(
        corpus=CorpusConfig(input=str(tmp_path / "news.parquet")),
        model=ModelConfig(max_seq_length=128, batch_size=16),
        fit=FitConfig(levels=(4, 4, 2), sample_size=64, seed=0, n_iter=5, lst_dim=16),
    )
    fit(spark, cfg, str(tmp_path / "cb"))
    book = Codebook.load(tmp_path / "cb")
    default = DEFAULT_GPU_BACKEND if torch.cuda.is_available() else DEFAULT_CPU_BACKEND
    assert (book.model["backend"], book.model["precision"]) == default

    run = dataclasses.replace(cfg, model=ModelConfig(batch_size=8))  # backend from the artifact
    report = annotate(spark, run, str(tmp_path / "cb"), str(tmp_path / "codes"))
    assert report.table_rows == 64
    assert report.device == device_label(*default)
    got = codes_of(spark, tmp_path / "codes")
    assert got["c1"].notna().all()

    texts = dict(zip(map(str, src["id"].to_pylist()), src["text"].to_pylist(), strict=True))
    # the driver embeds all 64 in other batches (another budget, no Spark partitions)
    other_budget = dataclasses.replace(run.model, batch_size=32)
    encoder = Encoder(settings_for_annotate(book.model, other_budget))
    vectors, counts = encoder.encode([texts[d] for d in got["doc_id"]])
    want, _ = book.assign(vectors)
    same = np.mean((got[["c1", "c2"]].to_numpy(int) == want[:, :2]).all(axis=1))
    if default == DEFAULT_CPU_BACKEND:
        assert same == 1.0  # int8 runs each document alone: batch-mates change nothing
    else:
        assert same >= 0.98  # fp16 batches: only batch-composition rounding may differ
    assert got["n_tokens"].tolist() == counts.tolist()

    torch_run = dataclasses.replace(cfg, model=ModelConfig(backend="torch"))
    with pytest.raises(InvalidConfigError, match="not comparable"):
        annotate(spark, torch_run, str(tmp_path / "cb"), str(tmp_path / "codes2"))
    allowed = dataclasses.replace(
        cfg, model=ModelConfig(backend="torch", allow_backend_mismatch=True)
    )
    report = annotate(spark, allowed, str(tmp_path / "cb"), str(tmp_path / "codes2"))
    assert report.device == device_label("torch", "fp32")  # recorded in every commit
    meta = get_store(spark).commit_metadata(str(tmp_path / "codes2"))
    assert {m[DEVICE_META] for m in meta if DEVICE_META in m} == {report.device}
    other = codes_of(spark, tmp_path / "codes2")
    assert other["doc_id"].tolist() == got["doc_id"].tolist()
    # fp32 PyTorch against the default: level-1 codes equal on these 64 news articles
    # (ONNX Runtime int8 kept 100% of level-1 codes of 1,000 C4 pages, docs/embedding.md)
    level1 = np.mean(other["c1"].to_numpy() == got["c1"].to_numpy())
    assert level1 >= 0.95


def codes_of(spark, table):
    """``doc_id, c1, c2, n_tokens`` of a codes table, ordered by ``doc_id`` (pandas)."""
    df = get_store(spark).read(str(table)).select("doc_id", "c1", "c2", "n_tokens")
    return df.orderBy("doc_id").toPandas()
