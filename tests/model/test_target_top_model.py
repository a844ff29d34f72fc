"""``target-top:p`` with the real model and no stored embeddings: the target texts and the
candidate documents are embedded with the artifact's model (the bounded re-embedding)."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from hermes_spark import HermesEstimator, plan_mixture, sample
from hermes_spark.config import CorpusConfig
from hermes_spark.sampling.similarity import VectorSource, target_centroids, with_target_similarity
from tests.helpers import shared_corpus

pytestmark = [pytest.mark.model, pytest.mark.spark]


def test_target_top_reembeds_and_leans_to_the_target(spark):
    news = spark.read.parquet(str(shared_corpus("ag_news_test.parquet")))
    corpus = news.where(F.col("id") < "test/3").limit(300).cache()  # 300 of the test split
    target = news.where((F.col("id") >= "test/7") & (F.col("label") == "Sci/Tech")).limit(40)
    model = HermesEstimator(levels=(4, 2), sample_size=300, max_seq_length=64).fit(corpus)
    codes = model.transform(corpus).where("reason is null")
    cb = model.codebook
    cents = target_centroids(target, cb, k=4)
    source = VectorSource(corpus=corpus, corpus_config=CorpusConfig(), max_embed_docs=1000)
    scored = with_target_similarity(codes, cents, cb, source)
    labels = corpus.select(F.col("id").alias("doc_id"), "label")

    def sci_share(stage2: str) -> float:
        plan = plan_mixture(
            None, codes_df=scored, budget_tokens=3000, weights="proportional", stage2=stage2,
            max_epochs=1, levels=cb.levels, target=cents,
        )  # fmt: skip
        man = sample(scored, plan).join(labels, "doc_id").toPandas()
        tok = man["repeats"] * man["tokens"]
        return float(tok[man["label"] == "Sci/Tech"].sum() / tok.sum())

    assert scored.where(F.col("target_similarity").isNull()).count() == 0
    assert sci_share("target-top:0.3") > sci_share("random") + 0.1
    with pytest.raises(Exception, match="above the cap"):
        small = VectorSource(corpus=corpus, corpus_config=CorpusConfig(), max_embed_docs=10)
        with_target_similarity(codes, cents, cb, small)
