"""Issue 9 regression: under ``quality-top:p`` Stage 1 is capped by the quality pools and
children pass what their pool cannot take to their siblings, so the budget is met whenever
the pools can supply it (SPEC "Two-stage sampling").

Real texts (AG News + DBpedia + arXiv, ≈19.6k documents); vectors are feature-hashed bags
of words (no model: fast, but shaped by the real vocabulary), qualities come from the
built-in scorer, tokens are word counts. Codes 16·8·8, weights ∝ bucket id, E = 2.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from deltalake import DeltaTable

from hermes_spark.config import CorpusConfig, FitConfig, HermesConfig, SampleConfig
from hermes_spark.tasks.annotate import annotate
from hermes_spark.tasks.fit import fit
from hermes_spark.tasks.plan import compute_plan
from hermes_spark.tasks.sample import run_sample
from tests.helpers import MIXED_CORPORA, MIXED_DIM, MIXED_LEVELS, write_mixed_corpus

pytestmark = pytest.mark.spark

LEVELS, DIM, CORPORA = MIXED_LEVELS, MIXED_DIM, MIXED_CORPORA


@pytest.fixture(scope="module")
def mixed(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("pools")
    corpus, _docs = write_mixed_corpus(root / "corpus")
    cfg = HermesConfig(
        corpus=CorpusConfig(
            input=corpus, embedding_col="emb", tokens_col="tokens", quality_col="quality"
        ),
        fit=FitConfig(levels=LEVELS, sample_size=6000, seed=2, n_iter=10),
    )
    fit(spark, cfg, str(root / "cb"))
    annotate(spark, cfg, str(root / "cb"), str(root / "codes"))
    codes = DeltaTable(str(root / "codes")).to_pandas()
    weights = {str(c): float(c) for c in range(LEVELS[0])}  # ∝ bucket id (bucket 0 gets 0)
    (root / "w.json").write_text(json.dumps(weights))
    return {"root": root, "codes": str(root / "codes"), "pdf": codes, "weights": root / "w.json"}


def test_quality_top_meets_the_budget_the_pools_can_supply(spark, mixed):
    codes = mixed["pdf"]
    assert 19_000 <= len(codes) <= 20_000
    total = float(codes["n_tokens"].sum())
    budget = 0.45 * total  # the 30% pools at E = 2 hold ≈ 0.6 × total: enough
    settings = SampleConfig(
        budget_tokens=budget,
        weights=str(mixed["weights"]),
        stage2="quality-top:0.3",
        max_epochs=2.0,
        seed=4,
    )
    plan = compute_plan(spark, settings, table=mixed["codes"], levels=LEVELS)
    kids = plan.children
    supply = float(kids["pool_tokens"].sum())
    assert 2.0 * supply > budget  # the pools can supply the budget ...
    # ... and Stage 1 is capped by them, not by the whole buckets' tokens
    st1 = plan.stage1.set_index("bucket")
    pools = kids.groupby("parent")["pool_tokens"].sum()
    assert np.allclose(st1["supply"], pools.reindex(st1.index), rtol=0, atol=0.5)
    assert (st1["target"] <= 2.0 * pools.reindex(st1.index) + 1e-6).all()
    assert st1["capped"].any()  # the weights push some buckets past their pools
    assert plan.info["stage1_shortfall_tokens"] == pytest.approx(0.0, abs=1e-6)
    assert plan.info["stage2_unmet_tokens"] == pytest.approx(0.0, abs=1e-3 * budget)
    assert plan.info["allocated_tokens"] == pytest.approx(budget, rel=1e-9)
    assert (kids["alloc"] <= 2.0 * kids["pool_tokens"] + 1e-6).all()

    out = str(mixed["root"] / "manifest")
    result = run_sample(spark, mixed["codes"], out, plan)
    man = DeltaTable(out).to_pandas()
    realized = float((man["repeats"] * man["tokens"]).sum())
    assert abs(realized - budget) <= 0.02 * budget
    assert result.report["within_bound"]
    assert man["repeats"].max() <= 2
    # every sampled document is in its child's quality pool
    merged = man.merge(codes[["doc_id", "quality"]], on="doc_id")
    thr = kids.set_index("child")["threshold"]
    assert (merged["quality"].to_numpy() >= thr.loc[merged["stage2_bucket"]].to_numpy()).all()
