"""fit → annotate with the ONNX backend on real Spark: the artifact records the backend,
annotate embeds with it (codes equal the driver's), and a mismatch is refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from hermes_spark.config import CorpusConfig, FitConfig, HermesConfig, ModelConfig
from hermes_spark.delta_store import get_store
from hermes_spark.embedding.encoder import Encoder
from hermes_spark.embedding.settings import settings_for_annotate
from hermes_spark.errors import InvalidConfigError
from hermes_spark.quantize.codebook import Codebook
from hermes_spark.tasks.annotate import annotate
from hermes_spark.tasks.fit import fit
from tests.conftest import shared_corpus

pytestmark = [pytest.mark.spark, pytest.mark.model]


def test_onnx_backend_end_to_end(spark, tmp_path, monkeypatch):
    monkeypatch.setenv("HERMES_CACHE_DIR", str(tmp_path / "cache"))
    src = pq.read_table(shared_corpus("ag_news_test.parquet")).slice(0, 120)
    pq.write_table(src, tmp_path / "news.parquet")
    cfg = HermesConfig(
        corpus=CorpusConfig(input=str(tmp_path / "news.parquet")),
        model=ModelConfig(max_seq_length=128, batch_size=16, backend="onnx"),
        fit=FitConfig(levels=(4, 4, 2), sample_size=120, seed=0, n_iter=5, lst_dim=16),
    )
    fit(spark, cfg, str(tmp_path / "cb"))
    book = Codebook.load(tmp_path / "cb")
    assert (book.model["backend"], book.model["precision"]) == ("onnx", "fp32")

    run = dataclasses.replace(cfg, model=ModelConfig(batch_size=8))  # backend from the artifact
    report = annotate(spark, run, str(tmp_path / "cb"), str(tmp_path / "codes"))
    assert report.table_rows == 120
    codes = get_store(spark).read(str(tmp_path / "codes")).select("doc_id", "c1", "c2", "n_tokens")
    got = codes.orderBy("doc_id").toPandas()
    ids = spark.read.parquet(str(tmp_path / "news.parquet"))
    assert ids.count() == codes.where(F.col("c1").isNotNull()).count()

    texts = dict(zip(map(str, src["id"].to_pylist()), src["text"].to_pylist(), strict=True))
    encoder = Encoder(settings_for_annotate(book.model, run.model))
    vectors, counts = encoder.encode([texts[d] for d in got["doc_id"]])
    want, _ = book.assign(vectors)
    same = np.mean((got[["c1", "c2"]].to_numpy(int) == want[:, :2]).all(axis=1))
    assert same >= 0.99  # same backend: only batch-composition rounding may differ
    assert got["n_tokens"].tolist() == counts.tolist()

    torch_run = dataclasses.replace(cfg, model=ModelConfig(backend="torch"))
    with pytest.raises(InvalidConfigError, match="not comparable"):
        annotate(spark, torch_run, str(tmp_path / "cb"), str(tmp_path / "codes2"))
