"""The DataFrame API of statistics and sampling: bucket_stats, plan_mixture, sample,
materialize — DataFrames in, DataFrames out, the same numbers as the path-based commands."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from hermes_spark.config import SampleConfig
from hermes_spark.delta import get_store
from hermes_spark.errors import InvalidConfigError, VersionMismatchError
from hermes_spark.sampling.materialize import materialize
from hermes_spark.sampling.planner import plan_mixture
from hermes_spark.sampling.select import sample
from hermes_spark.stats import bucket_stats
from hermes_spark.tasks.plan import compute_plan
from hermes_spark.tasks.sample import run_sample
from tests.helpers import CODES_LEVELS as LEVELS

pytestmark = pytest.mark.spark

STATS_COLS = ["level", "bucket", "c1", "c2", "c3", "docs", "tokens", "children"]


@pytest.fixture(scope="module")
def data(shared_codes):
    return shared_codes


@pytest.fixture(scope="module")
def codes_df(spark, data):
    return get_store(spark).read(data["codes"])


def with_levels_metadata(df, levels):
    return df.withColumn("c1", F.col("c1").alias("c1", metadata={"hermes.levels": list(levels)}))


def test_bucket_stats_equal_the_stats_table_and_add_up(spark, data, codes_df):
    stats_df, levels_df = bucket_stats(codes_df, LEVELS)
    got = stats_df.toPandas().sort_values(["level", "bucket"]).reset_index(drop=True)
    table = DeltaTable(data["stats"]).to_pandas().sort_values(["level", "bucket"])
    table = table.reset_index(drop=True)
    pd.testing.assert_frame_equal(
        got[STATS_COLS], table[STATS_COLS], check_dtype=False, check_exact=True
    )
    assert np.allclose(got["child_entropy_bits"].fillna(-1), table["child_entropy_bits"].fillna(-1))
    codes = DeltaTable(data["codes"]).to_pandas()
    for level in (1, 2, 3):
        rows = got[got["level"] == level].set_index("bucket")
        grouped = codes.groupby(f"bucket{level}")
        assert (rows["docs"] == grouped.size().reindex(rows.index)).all()
        assert np.allclose(rows["qerr_mean"], grouped[f"qerr{level}"].mean().reindex(rows.index))
        if level < 3:
            kids = codes.groupby(f"bucket{level}")[f"bucket{level + 1}"].nunique()
            assert (rows["children"] == kids.reindex(rows.index)).all()
            # entropy of the children's doc shares, from the codes directly
            sizes = codes.groupby([f"bucket{level}", f"bucket{level + 1}"]).size()
            want = sizes.groupby(level=0).apply(
                lambda s: float(-(s / s.sum() * np.log2(s / s.sum())).sum())
            )
            assert np.allclose(rows["child_entropy_bits"], want.reindex(rows.index))
    lv = levels_df.toPandas().set_index("level").sort_index()
    assert list(lv["cells_total"]) == [LEVELS[0], LEVELS[0] * LEVELS[1], math.prod(LEVELS)]
    l1 = codes.groupby("bucket1").size()
    assert lv.loc[1, "median_docs"] == float(np.median(l1))
    n = l1.sum()
    assert math.isclose(lv.loc[1, "imbalance"], len(l1) * (l1**2).sum() / n**2, rel_tol=1e-9)


def final_plan(df) -> str:
    """The executed physical plan of ``df`` after running it (AQE's final plan only)."""
    df.collect()
    plan = df._jdf.queryExecution().executedPlan().toString()
    return plan.split("== Initial Plan ==")[0]


def test_bucket_stats_scan_the_codes_once(spark, data):
    stats_df, _ = bucket_stats(get_store(spark).read(data["codes"]), LEVELS)
    plan = final_plan(stats_df)
    scans = [line for line in plan.splitlines() if "Scan " in line]
    assert len(scans) == 1, plan
    assert "ReusedExchange" not in plan  # one scan, not one scan shared by reuse


def test_bucket_stats_read_level_sizes_from_column_metadata(spark, codes_df):
    big = (LEVELS[0] + 3, LEVELS[1], LEVELS[2])  # an unused code only the metadata knows
    _, levels_df = bucket_stats(with_levels_metadata(codes_df, big))
    cells = {r["level"]: r["cells_total"] for r in levels_df.collect()}
    assert cells == {1: big[0], 2: big[0] * big[1], 3: math.prod(big)}
    _, inferred = bucket_stats(codes_df)
    k1 = codes_df.agg(F.max("c1")).first()[0] + 1
    assert {r["level"]: r["cells_total"] for r in inferred.collect()}[1] == k1


def test_bucket_stats_and_sample_refuse_mixed_versions(spark, data, codes_df):
    other = codes_df.limit(50).withColumn("codebook_version", F.lit("another-version"))
    mixed = codes_df.unionByName(other)
    with pytest.raises(VersionMismatchError, match="mix codebook versions"):
        bucket_stats(mixed)
    plan = compute_plan(
        spark, SampleConfig(budget_tokens=50_000, stage2="random"), stats=data["stats"]
    )
    with pytest.raises(VersionMismatchError):
        sample(mixed, plan)
    with pytest.raises(VersionMismatchError):
        sample(other, plan)


def test_transform_rows_with_a_reason_are_left_out(spark, codes_df):
    flagged = codes_df.withColumn(
        "reason", F.when(F.col("c1") == 0, F.lit("null_text")).otherwise(F.lit(None))
    )
    stats_df, _ = bucket_stats(flagged, LEVELS)
    l1 = stats_df.where("level = 1").toPandas()
    assert 0 not in set(l1["c1"])
    assert l1["docs"].sum() == codes_df.where("c1 != 0").count()


@pytest.mark.parametrize("stage2", ["random", "coverage", "quality-top:0.4"])
def test_plan_mixture_on_pandas_stats_equals_compute_plan(spark, data, codes_df, stage2):
    settings = SampleConfig(
        budget_tokens=300_000, weights="unimax", stage2=stage2, max_epochs=2.0, seed=7
    )
    ref = compute_plan(spark, settings, table=data["codes"], stats=data["stats"], levels=LEVELS)
    stats_pdf = DeltaTable(data["stats"]).to_pandas()
    plan = plan_mixture(
        stats_pdf,
        budget_tokens=300_000,
        weights="unimax",
        stage2=stage2,
        max_epochs=2.0,
        seed=7,
        codes_df=codes_df,
        levels=LEVELS,
    )
    assert plan.codebook_version == ref.codebook_version
    pd.testing.assert_frame_equal(plan.stage1, ref.stage1)
    pd.testing.assert_frame_equal(plan.children, ref.children)


def test_plan_mixture_needs_codes_for_quality_pools(spark, data):
    stats_pdf = DeltaTable(data["stats"]).to_pandas()
    with pytest.raises(InvalidConfigError, match="codes"):
        plan_mixture(stats_pdf, budget_tokens=1000, stage2="quality-top:0.5")


def test_sample_equals_run_sample_and_carries_source_file(spark, data, codes_df, tmp_path):
    plan = compute_plan(
        spark,
        SampleConfig(budget_tokens=250_000, weights="proportional", stage2="coverage", seed=1),
        table=data["codes"],
    )
    lazy = sample(codes_df, plan, seed=9).toPandas().sort_values("doc_id").reset_index(drop=True)
    run_sample(spark, data["codes"], str(tmp_path / "m"), plan.with_seed(9))
    table = DeltaTable(str(tmp_path / "m")).to_pandas().sort_values("doc_id")
    pd.testing.assert_frame_equal(lazy, table.reset_index(drop=True), check_dtype=False)
    codes = DeltaTable(data["codes"]).to_pandas().set_index("doc_id")
    assert (lazy["source_file"].to_numpy() == codes.loc[lazy["doc_id"], "source_file"]).all()
    other = sample(codes_df, plan, seed=10).toPandas()
    assert set(other["doc_id"]) != set(lazy["doc_id"])


def test_materialize_expands_repeats_deterministically_from_sampled_files_only(
    spark, data, codes_df
):
    plan = compute_plan(
        spark,
        SampleConfig(budget_tokens=900_000, weights="uniform", stage2="random", max_epochs=3),
        table=data["codes"],
    )
    manifest = sample(codes_df, plan, seed=2)
    man = manifest.toPandas()
    assert man["repeats"].max() >= 2
    corpus_df = spark.read.parquet(data["corpus"])
    rows = materialize(manifest, corpus_df, seed=3).toPandas()
    assert len(rows) == man["repeats"].sum()
    assert not rows.duplicated(["doc_id", "repeat_index"]).any()
    want = man.set_index("doc_id")["repeats"]
    sizes = rows.groupby("doc_id").size()
    assert (sizes == want.loc[sizes.index]).all()
    text = corpus_df.toPandas().set_index("id")["text"]
    assert (rows["text"].to_numpy() == text.loc[rows["doc_id"]].to_numpy()).all()
    again = materialize(manifest, corpus_df, seed=3).toPandas()
    pd.testing.assert_frame_equal(rows, again)  # same order, row for row
    shuffled = materialize(manifest, corpus_df, seed=4).toPandas()
    assert list(shuffled["doc_id"]) != list(rows["doc_id"])

    # A file that holds no sampled document is never opened: an unreadable one is added
    # to the corpus folder, and materialize still succeeds (a full scan would fail on it).
    junk = Path(data["corpus"]) / "part-999.parquet"
    junk.write_bytes(b"not a parquet file at all")
    try:
        listed = spark.read.schema(corpus_df.schema).parquet(data["corpus"])
        assert any(f.endswith("part-999.parquet") for f in listed.inputFiles())
        pruned = materialize(manifest, listed, seed=3).toPandas()
        pd.testing.assert_frame_equal(pruned, rows)
        one_file = man["source_file"].iloc[0]
        only = manifest.where(F.col("source_file") == one_file)
        got = materialize(only, listed, seed=3).toPandas()
        assert len(got) == man.loc[man["source_file"] == one_file, "repeats"].sum()
        with pytest.raises(Exception, match=r"(?i)parquet|footer|magic"):
            listed.count()  # the junk file does break a full scan
    finally:
        junk.unlink()
