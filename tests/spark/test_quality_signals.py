"""Several quality signals (``--quality-cols``): exact percentile ranks within each
Stage-2 child, merged by weight, thresholds before ranking; the pools and the sample use
the merged quality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from hermes_spark.config import SampleConfig
from hermes_spark.delta import get_store
from hermes_spark.errors import InvalidInputError
from hermes_spark.sampling import signals as signals_mod
from hermes_spark.sampling.planner import plan_mixture
from hermes_spark.sampling.select import sample
from hermes_spark.sampling.signals import parse_quality_cols, with_merged_quality
from hermes_spark.tasks.plan import compute_plan
from tests.helpers import CODES_LEVELS as LEVELS
from tests.helpers import assert_clean_error
from tests.helpers import run_cli as run

pytestmark = pytest.mark.spark

COALESCE = "spark.sql.adaptive.coalescePartitions.enabled"


@pytest.fixture(scope="module")
def data(shared_codes):
    return shared_codes


@pytest.fixture(scope="module")
def codes_df(spark, data):
    """The codes plus two signals on other scales: ``edu`` (the quality) and ``dclm``."""
    df = get_store(spark).read(data["codes"])
    dclm = (F.xxhash64("doc_id") % 1000).cast("double") * 3.0 - 50.0
    return df.withColumn("edu", F.col("quality")).withColumn("dclm", dclm)


def reference(pdf: pd.DataFrame, s: int, weights, filters) -> pd.Series:
    """Plain pandas: rank = share of the child's rated docs with a lower value."""
    ok = pd.Series(True, index=pdf.index)
    for name, _ in weights:
        ok &= np.isfinite(pdf[name].astype(float))
    for name, thr in filters:
        ok &= pdf[name].astype(float) >= thr
    rated = pdf[ok]
    total = sum(w for _, w in weights)
    merged = pd.Series(0.0, index=rated.index)
    for name, w in weights:
        g = rated.groupby(f"bucket{s}")[name]
        below = g.rank(method="min") - 1
        merged += w / total * below / g.transform("size")
    return merged.reindex(pdf.index)


@pytest.mark.parametrize(
    "bins, dense, ties",
    [(4096, 50_000, 100_000), (3, 20, 2)],
    ids=["defaults", "big-bins-split-again-ties-broadcast"],
)
def test_merged_quality_equals_the_plain_rank_definition(
    spark, codes_df, monkeypatch, bins, dense, ties
):
    monkeypatch.setattr(signals_mod, "RANK_BINS", bins)  # 3 bins: big bins, ties within
    monkeypatch.setattr(signals_mod, "RANK_DENSE_LIMIT", dense)  # 20: every bin split again
    monkeypatch.setattr(signals_mod, "RANK_TIE_ROWS", ties)  # 2: dclm's ties broadcast
    spec = "edu:0.6,dclm:0.4,edu>=0.25"
    got = with_merged_quality(codes_df, parse_quality_cols(spec), 2)
    pdf = got.select("doc_id", "quality").toPandas().set_index("doc_id")["quality"]
    src = codes_df.toPandas().set_index("doc_id")
    want = reference(src, 2, [("edu", 0.6), ("dclm", 0.4)], [("edu", 0.25)])
    assert len(pdf) == len(src)
    assert pdf.isna().equals(want.loc[pdf.index].isna())
    assert np.allclose(pdf.dropna(), want.loc[pdf.dropna().index], rtol=0, atol=1e-12)
    assert pdf.isna().sum() >= (src["edu"] < 0.25).sum()


def shuffle_reads_per_task(spark, group: str) -> list[int]:
    """Shuffle records read by every task of ``group``'s jobs (Spark's task metrics)."""
    sc = spark.sparkContext
    tracker, store = sc.statusTracker(), sc._jsc.sc().statusStore()
    reads = []
    for job in tracker.getJobIdsForGroup(group):
        for stage in tracker.getJobInfo(job).stageIds:
            info = tracker.getStageInfo(stage)
            if info is None:
                continue
            tasks = store.taskList(stage, info.currentAttemptId, 1_000_000)
            for i in range(tasks.size()):
                metrics = tasks.apply(i).taskMetrics()
                if metrics.isDefined():
                    reads.append(int(metrics.get().shuffleReadMetrics().recordsRead()))
    return reads


def test_an_integer_score_never_puts_a_tie_in_one_task(spark, monkeypatch):
    """FineWeb-Edu-like 0-5 scores over one child: ranked by value counts, the tied rows
    spread over the join's tasks (old: each score's rows ranked in one window task)."""
    monkeypatch.setattr(signals_mod, "RANK_TIE_ROWS", 100)  # scaled down with the data
    n, parts = 6000, 24
    codes = spark.range(n).select(
        F.format_string("d%05d", "id").alias("doc_id"),
        F.lit(7).cast("long").alias("bucket2"),
        (F.col("id") % 6).cast("double").alias("score"),
        F.lit(None).cast("double").alias("quality"),
    )
    saved = {k: spark.conf.get(k) for k in ("spark.sql.shuffle.partitions", COALESCE)}
    spark.conf.set("spark.sql.shuffle.partitions", str(parts))
    spark.conf.set(COALESCE, "false")
    spark.sparkContext.setJobGroup("integer-score-rank", "integer-score-rank")
    try:
        got = with_merged_quality(codes, parse_quality_cols("score"), 2, force_rank=True)
        pdf = got.select("doc_id", "score", "quality").toPandas()
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        for key, value in saved.items():
            spark.conf.set(key, value)
    assert len(pdf) == n
    assert (pdf["quality"] == pdf["score"] * (n // 6) / n).all()  # share strictly below
    reads = shuffle_reads_per_task(spark, "integer-score-rank")
    assert sum(reads) > 0  # the metrics were read (the distinct values crossed a shuffle)
    assert max(reads) <= n / 12, sorted(reads)[-5:]  # a sixth of the child: the old window


def in_group(spark, group: str, fn):
    """``fn()`` with its Spark jobs tagged ``group``."""
    spark.sparkContext.setJobGroup(group, group)
    try:
        return fn()
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)


def test_a_plan_ranks_its_signals_once(spark, codes_df):
    """quality-top with merged signals: the pool search runs a dozen jobs over the rated
    frame; they read it persisted, so the plan shuffles about one ranking's rows."""
    spec = "edu:0.6,dclm:0.4"
    once = in_group(
        spark,
        "rank-once",
        lambda: with_merged_quality(codes_df, parse_quality_cols(spec), 2).count(),
    )
    assert once == codes_df.count()
    plan = in_group(
        spark,
        "rank-plan",
        lambda: plan_mixture(
            None,
            codes_df=codes_df,
            levels=LEVELS,
            budget_tokens=150_000,
            weights="uniform",
            stage2="quality-top:0.3",
            quality_cols=spec,
        ),
    )
    assert (plan.children["pool_docs"] > 0).any()
    ranking = sum(shuffle_reads_per_task(spark, "rank-once"))
    planning = sum(shuffle_reads_per_task(spark, "rank-plan"))
    assert ranking > 0
    assert planning < 2 * ranking, (planning, ranking)


def test_one_column_keeps_todays_plan(spark, data, codes_df):
    base = dict(budget_tokens=200_000, weights="uniform", stage2="quality-top:0.4", seed=1)
    plain = plan_mixture(None, codes_df=codes_df, levels=LEVELS, **base)
    same = plan_mixture(None, codes_df=codes_df, levels=LEVELS, quality_cols="quality", **base)
    pd.testing.assert_frame_equal(plain.children, same.children)
    assert same.settings["quality_cols"] == "quality:1.0"


def test_sample_uses_the_merged_quality_pools(spark, data, codes_df):
    spec = "edu:0.5,dclm:0.5"
    plan = plan_mixture(
        None,
        codes_df=codes_df,
        levels=LEVELS,
        budget_tokens=150_000,
        weights="uniform",
        stage2="quality-top:0.3",
        quality_cols=spec,
        max_epochs=1.5,
    )
    again = type(plan).from_json(plan.to_json())
    assert again.settings["quality_cols"] == plan.settings["quality_cols"]
    man = sample(codes_df, again, seed=3).toPandas()
    merged = with_merged_quality(codes_df, parse_quality_cols(spec), 2)
    q = merged.select("doc_id", "quality").toPandas().set_index("doc_id")["quality"]
    thr = plan.children.set_index("child")["threshold"]
    assert (q.loc[man["doc_id"]].to_numpy() >= thr.loc[man["stage2_bucket"]].to_numpy()).all()
    # the merged pools differ from the single-column ones: the rule really changed
    single = plan_mixture(
        None,
        codes_df=codes_df,
        levels=LEVELS,
        budget_tokens=150_000,
        weights="uniform",
        stage2="quality-top:0.3",
        max_epochs=1.5,
    )
    assert not np.allclose(single.children["pool_tokens"], plan.children["pool_tokens"])


def test_quality_cols_from_the_cli_and_missing_columns(spark, data, tmp_path, capsys):
    out = str(tmp_path / "m")
    code, _, err = run(
        capsys, "sample", "--table", data["codes"], "--out", out, "--budget-tokens", "100000",
        "--stage2", "quality-top:0.5", "--quality-cols", "quality:1,quality>=0.3",
    )  # fmt: skip
    assert code == 0, err
    man = DeltaTable(out).to_pandas()
    codes = DeltaTable(data["codes"]).to_pandas().set_index("doc_id")
    assert (codes.loc[man["doc_id"], "quality"] >= 0.3).all()
    code, _, err = run(
        capsys, "sample", "--table", data["codes"], "--out", str(tmp_path / "m2"),
        "--budget-tokens", "1000", "--stage2", "quality-top:0.5", "--quality-cols", "edu:1",
    )  # fmt: skip
    assert_clean_error(code, err, "--keep-cols edu")
    code, _, err = run(
        capsys, "plan", "--table", data["codes"], "--budget-tokens", "1000",
        "--stage2", "coverage", "--quality-cols", "quality",
    )  # fmt: skip
    assert_clean_error(code, err, "--quality-cols")
    with pytest.raises(InvalidInputError):
        compute_plan(
            spark,
            SampleConfig(budget_tokens=1000, stage2="quality-top:0.5", quality_cols="nope"),
            table=data["codes"],
        )
