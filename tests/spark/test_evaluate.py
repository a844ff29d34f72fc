"""``hermes evaluate``: per-level metrics against KMeans-family baselines and labels."""

from __future__ import annotations

import pytest

from hermes_spark.config import CorpusConfig, FitConfig, HermesConfig
from hermes_spark.evaluate import evaluate
from hermes_spark.tasks.annotate import annotate
from hermes_spark.tasks.fit import fit
from tests.helpers import write_embedded_corpus

pytestmark = pytest.mark.spark


def test_codes_recover_planted_clusters_and_baselines_are_reported(spark, tmp_path):
    corpus = write_embedded_corpus(tmp_path / "c", n=600, dim=24, files=2)
    cfg = HermesConfig(
        corpus=CorpusConfig(input=str(corpus), embedding_col="emb", tokens_col="tokens"),
        fit=FitConfig(levels=(6, 4, 2), sample_size=600, seed=0, n_iter=15, lst_dim=16),
    )
    fit(spark, cfg, str(tmp_path / "cb"))
    annotate(spark, cfg, str(tmp_path / "cb"), str(tmp_path / "codes"))
    report = evaluate(
        spark,
        cfg,
        str(tmp_path / "codes"),
        str(tmp_path / "cb"),
        label_col="cluster",
        sample_size=400,
        seed=1,
    )
    assert report["sample_size"] == 400
    levels = {row["level"]: row for row in report["levels"]}
    assert [levels[k]["cells"] for k in (1, 2, 3)] == [6, 24, 48]
    # six planted clusters, six first-level codes: the codes find them
    assert levels[1]["hermes"]["nmi"] > 0.8
    # finer prefixes explain more variance, as do the baselines
    mse = [levels[k]["hermes"]["relative_mse"] for k in (1, 2, 3)]
    assert mse[0] > mse[1] > mse[2]
    for name in ("kmeans", "bisecting_kmeans"):
        assert 0.0 < levels[2][name]["relative_mse"] < 1.0
        assert levels[2][name]["cells_used"] <= 24
