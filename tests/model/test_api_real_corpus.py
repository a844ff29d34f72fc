"""The library API end to end with the real model on a real corpus (AG News)."""

from __future__ import annotations

import pytest
from sklearn.metrics import normalized_mutual_info_score

from hermes_spark import HermesEstimator, bucket_stats, materialize, plan_mixture, sample
from tests.helpers import shared_corpus

pytestmark = [pytest.mark.model, pytest.mark.spark]


def test_real_model_api_on_ag_news(spark, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = spark.read.parquet(str(shared_corpus("ag_news_test.parquet"))).limit(400).cache()
    model = HermesEstimator(levels=(4, 4, 2), sample_size=300, max_seq_length=64).fit(corpus)
    codes = model.transform(corpus).where("reason is null").cache()
    pdf = codes.select("doc_id", "c1", "label").toPandas()
    assert len(pdf) == 400
    # the coarse code carries the topic: far above chance (0 for random cells)
    assert normalized_mutual_info_score(pdf["label"], pdf["c1"]) > 0.15
    stats, _ = bucket_stats(codes)
    plan = plan_mixture(stats, budget_tokens=5_000, weights="uniform", stage2="coverage")
    train = materialize(sample(codes, plan, seed=1), corpus).toPandas()
    assert len(train) > 0 and set(train.columns) >= {"id", "text"}
    assert list(tmp_path.iterdir()) == []
