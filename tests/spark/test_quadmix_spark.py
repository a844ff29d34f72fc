"""Stage-2 rule ``quadmix``: expected repeats from the quality percentile, the Stage-1
budget met within SPEC's bound, deterministic and independent of the partitioning."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from hermes_spark.delta import get_store
from hermes_spark.sampling.plan import SamplePlan
from hermes_spark.sampling.planner import plan_mixture
from hermes_spark.sampling.quadmix_math import expected_repeats
from hermes_spark.sampling.select import sample
from hermes_spark.sampling.signals import parse_quality_cols, with_merged_quality
from tests.helpers import CODES_LEVELS as LEVELS
from tests.helpers import assert_clean_error
from tests.helpers import run_cli as run

pytestmark = pytest.mark.spark
BUDGET = 400_000


@pytest.fixture(scope="module")
def data(shared_codes):
    return shared_codes


@pytest.fixture(scope="module")
def codes_df(spark, data):
    return get_store(spark).read(data["codes"])


def params_file(path, threshold: float, steepness: float, buckets=None) -> str:
    doc = {"default": {"threshold": threshold, "steepness": steepness}, "buckets": buckets or {}}
    path.write_text(json.dumps(doc))
    return str(path)


def quadmix_plan(codes_df, rule: str, **kw) -> SamplePlan:
    args = dict(budget_tokens=BUDGET, weights="uniform", stage2=rule, max_epochs=3.0, seed=2)
    args.update(kw)
    return plan_mixture(None, codes_df=codes_df, levels=LEVELS, **args)


def test_quadmix_meets_every_stage1_target_within_the_bound(spark, codes_df, tmp_path):
    rule = "quadmix:" + params_file(tmp_path / "p.json", 0.6, 12.0, {"1": {"threshold": 0.2}})
    plan = quadmix_plan(codes_df, rule)
    st1 = plan.stage1.set_index("bucket")
    assert {"threshold", "steepness", "scale"} <= set(st1.columns)
    assert st1.loc[1, "threshold"] == 0.2 and st1.loc[0, "threshold"] == 0.6
    assert plan.info["allocated_tokens"] == pytest.approx(BUDGET, rel=1e-6)
    man = sample(codes_df, plan).toPandas()
    assert man["repeats"].between(1, 3).all()
    real = (man["repeats"] * man["tokens"]).groupby(man["stage1_bucket"]).sum()
    largest = codes_df.groupBy("bucket1").agg({"n_tokens": "max"}).toPandas()
    largest = largest.set_index("bucket1").iloc[:, 0]
    for b, row in st1.iterrows():
        bound = max(0.02 * row["target"], float(largest[b]))
        assert abs(float(real.get(b, 0)) - row["target"]) <= bound, b
    # expected repeats follow the function of the quality percentile
    q = with_merged_quality(codes_df, parse_quality_cols("quality"), 2, force_rank=True)
    qp = q.select("doc_id", "quality", "bucket1").toPandas().dropna()
    b0 = qp[qp["bucket1"] == 0]
    r = expected_repeats(
        b0["quality"].to_numpy(),
        threshold=0.6,
        steepness=12.0,
        scale=float(st1.loc[0, "scale"]),
        max_epochs=3.0,
    )
    picked = b0["doc_id"].isin(man["doc_id"]).to_numpy()
    hi, lo = r > np.quantile(r, 0.8), r < np.quantile(r, 0.2)
    assert picked[hi].mean() > picked[lo].mean() + 0.2


def test_quadmix_is_deterministic_and_partition_independent(spark, codes_df):
    plan = quadmix_plan(codes_df, "quadmix")
    a = sample(codes_df, plan).toPandas().sort_values("doc_id").reset_index(drop=True)
    b = sample(codes_df.repartition(7, "n_tokens"), plan).toPandas()
    b = b.sort_values("doc_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    c = sample(codes_df, plan, seed=99).toPandas()
    assert set(c["doc_id"]) != set(a["doc_id"])
    again = SamplePlan.from_json(plan.to_json())
    d = sample(codes_df, again).toPandas().sort_values("doc_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, d)


def test_steeper_functions_buy_quality_with_diversity(spark, codes_df, tmp_path):
    means = []
    for k in (0.0, 8.0, 40.0):
        rule = "quadmix:" + params_file(tmp_path / f"p{k}.json", 0.7, k)
        man = sample(codes_df, quadmix_plan(codes_df, rule)).toPandas()
        q = codes_df.select("doc_id", "quality").toPandas().set_index("doc_id")["quality"]
        w = man["repeats"] * man["tokens"]
        means.append(float((q.loc[man["doc_id"]].to_numpy() * w).sum() / w.sum()))
    assert means[0] < means[1] < means[2]


def test_quadmix_from_the_cli_with_report_histograms(spark, data, tmp_path, capsys):
    code, _, err = run(
        capsys, "mixtures", "--stats", data["stats"], "--out", str(tmp_path / "cands"),
        "--quadmix", "3",
    )  # fmt: skip
    assert code == 0, err
    files = sorted((tmp_path / "cands").glob("quadmix-*.json"))
    assert len(files) == 3
    out = str(tmp_path / "m")
    code, _, err = run(
        capsys, "sample", "--table", data["codes"], "--out", out, "--budget-tokens", "300000",
        "--stage2", f"quadmix:{files[0]}", "--max-epochs", "2",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "m_report.json").read_text())
    assert report["settings"]["stage2"] == f"quadmix:{files[0]}"
    hist = report["quality_histogram"]
    man = DeltaTable(out).to_pandas()
    assert {h["bucket"] for h in hist} >= set(man["stage1_bucket"])
    assert sum(sum(h["selected_tokens"]) for h in hist) == int(
        (man["repeats"] * man["tokens"]).sum()
    )
    assert all(len(h["pool_tokens"]) == 10 for h in hist)
    assert report["within_bound"]
    code, _, err = run(
        capsys, "sample", "--table", data["codes"], "--out", str(tmp_path / "m2"),
        "--budget-tokens", "1000", "--stage2", f"quadmix:{tmp_path / 'nope.json'}",
    )  # fmt: skip
    assert_clean_error(code, err, "quadmix parameters")
