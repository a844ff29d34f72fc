"""Two-stage sampling on Spark: plans, the manifest rule, determinism, accuracy, CLI errors."""

from __future__ import annotations

import json
import math
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from hermes_spark.config import SampleConfig
from hermes_spark.delta import get_store
from hermes_spark.hashing import uniform
from hermes_spark.sampling import quantiles as quantiles_mod
from hermes_spark.sampling import select as select_mod
from hermes_spark.sampling.allocate import take_prefix
from hermes_spark.sampling.plan import SamplePlan
from hermes_spark.sampling.quantiles import exact_kth_smallest, quality_rank
from hermes_spark.sampling.select import select_manifest
from hermes_spark.tasks.plan import compute_plan
from hermes_spark.tasks.sample import run_sample
from tests.helpers import CODES_DOCS, CODES_LEVELS, assert_clean_error, build_codes, shared_corpus
from tests.helpers import run_cli as run

pytestmark = pytest.mark.spark


LEVELS, N_DOCS = CODES_LEVELS, CODES_DOCS


@pytest.fixture(scope="module")
def data(spark, tmp_path_factory):
    return build_codes(spark, tmp_path_factory.mktemp("sampling"))


@pytest.fixture(scope="module")
def codes_pdf(spark, data):
    return DeltaTable(data["codes"]).to_pandas()


def make_plan(spark, data, **kw) -> SamplePlan:
    settings = dict(budget_tokens=200_000, weights="proportional", stage2="random", seed=3)
    settings.update(kw.pop("settings", {}))
    return compute_plan(spark, SampleConfig(**settings), table=data["codes"], **kw)


def manifest_pdf(df) -> pd.DataFrame:
    pdf = df.toPandas()
    return pdf.sort_values("doc_id").reset_index(drop=True)


def reference_manifest(spark, plan: SamplePlan, codes: pd.DataFrame) -> pd.DataFrame:
    """The SPEC rule written plainly: full passes, then the u-ordered walk with carry."""
    ids = spark.createDataFrame(codes[["doc_id"]])
    u = ids.select("doc_id", uniform("doc_id", plan.seed).alias("u")).toPandas()
    docs = codes.merge(u, on="doc_id")
    s, epochs = plan.stage2_level, plan.settings["max_epochs"]
    quality = plan.rule[0] == "quality-top"
    rows = []
    kids = plan.children[(plan.children["alloc"] > 0) & (plan.children["pool_tokens"] > 0)]
    for parent, group in kids.groupby("parent"):
        carry = 0.0
        for _, ch in group.sort_values("child").iterrows():
            pool = docs[docs[f"bucket{s}"] == ch["child"]]
            if quality:
                pool = pool[pool["quality"].notna() & (pool["quality"] >= ch["threshold"])]
            pool = pool.sort_values(["u", "doc_id"])
            full, r, p = int(ch["full_passes"]), float(ch["remainder"]), float(ch["pool_tokens"])
            assert pool["n_tokens"].sum() == p
            rmax = max(min(p, (epochs - full) * p), 0.0, r)
            target = r + carry
            n = take_prefix(pool["n_tokens"].to_numpy(), min(max(target, 0.0), rmax))
            carry = target - float(pool["n_tokens"].to_numpy()[:n].sum())
            reps = full + (np.arange(len(pool)) < n)
            for doc, t, rep in zip(pool["doc_id"], pool["n_tokens"], reps, strict=True):
                if rep >= 1:
                    rows.append((doc, int(parent), int(ch["child"]), int(rep), int(t)))
    out = pd.DataFrame(rows, columns=list(select_mod.MANIFEST_COLUMNS))
    return out.sort_values("doc_id").reset_index(drop=True)


def assert_same_manifest(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got[list(select_mod.MANIFEST_COLUMNS)].astype(
        {
            "stage1_bucket": np.int64,
            "stage2_bucket": np.int64,
            "repeats": np.int64,
            "tokens": np.int64,
        }
    )
    want = want.astype(got.dtypes.to_dict())
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


# ------------------------------------------------------------------ the rule


@pytest.mark.parametrize(
    "settings",
    [
        {"stage2": "random"},
        {"stage2": "coverage", "weights": "uniform", "stage2_level": 3},
        {"stage2": "quality-top:0.3", "weights": "temperature:0.5"},
        {"stage2": "random", "budget_tokens": 2_000_000, "max_epochs": 2.5},
    ],
)
def test_manifest_follows_the_rule_exactly(spark, data, codes_pdf, monkeypatch, settings):
    # small bins: many histogram bins per child and several bins in each boundary window
    monkeypatch.setattr(select_mod, "BIN_DOCS", 8)
    plan = make_plan(spark, data, settings=settings)
    codes = get_store(spark).read(data["codes"])
    manifest, windows = select_manifest(codes, plan)
    got = manifest_pdf(manifest)
    assert (windows["hi"] - windows["lo"]).max() >= 1
    assert (windows["nb"] > 1).mean() > 0.5
    assert_same_manifest(got, reference_manifest(spark, plan, codes_pdf))
    assert got["doc_id"].is_unique and (got["repeats"] >= 1).all()


def test_same_seed_same_manifest_whatever_the_partitioning(spark, data):
    plan = make_plan(spark, data, settings={"stage2": "quality-top:0.5", "weights": "uniform"})
    codes = get_store(spark).read(data["codes"])
    before = spark.conf.get("spark.sql.shuffle.partitions")
    try:
        spark.conf.set("spark.sql.shuffle.partitions", "3")
        one = manifest_pdf(select_manifest(codes.repartition(1), plan)[0])
        spark.conf.set("spark.sql.shuffle.partitions", "11")
        seven = manifest_pdf(select_manifest(codes.repartition(7), plan)[0])
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)
    pd.testing.assert_frame_equal(one, seven)
    other = manifest_pdf(select_manifest(codes, plan.with_seed(4))[0])
    assert set(other["doc_id"]) != set(one["doc_id"])


def test_sample_is_identical_on_a_differently_laid_out_table(spark, data, tmp_path, capsys):
    store = get_store(spark)
    store.overwrite(
        store.read(data["codes"]).repartition(7),
        str(tmp_path / "codes7"),
        partition_by=("codebook_version",),
    )
    flags = [
        "--budget-tokens",
        "150000",
        "--weights",
        "uniform",
        "--stage2",
        "coverage",
        "--seed",
        "9",
    ]
    for name in ("codes", "codes7"):
        table = data["codes"] if name == "codes" else str(tmp_path / name)
        code, out, err = run(
            capsys, "sample", "--table", table, "--out", str(tmp_path / f"m_{name}"), *flags
        )
        assert code == 0, err
        assert "mixture report" in out and "pool contraction" in out
    a = DeltaTable(str(tmp_path / "m_codes")).to_pandas().sort_values("doc_id")
    b = DeltaTable(str(tmp_path / "m_codes7")).to_pandas().sort_values("doc_id")
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


@pytest.mark.parametrize("stage2", ["random", "coverage", "quality-top:0.3"])
@pytest.mark.parametrize("budget", [40_000, 600_000])
def test_realized_tokens_within_the_bound(spark, data, tmp_path, stage2, budget):
    plan = make_plan(
        spark, data, settings={"stage2": stage2, "budget_tokens": budget, "stage2_level": 3}
    )
    result = run_sample(spark, data["codes"], str(tmp_path / "m"), plan)
    man = DeltaTable(str(tmp_path / "m")).to_pandas()
    codes = DeltaTable(data["codes"]).to_pandas()
    largest = codes.groupby("bucket1")["n_tokens"].max()
    realized = (man["repeats"] * man["tokens"]).groupby(man["stage1_bucket"]).sum()
    st1 = plan.stage1.set_index("bucket")
    for b, row in st1.iterrows():
        got = float(realized.get(b, 0))
        bound = max(0.02 * row["target"], float(largest[b]))
        assert abs(got - row["target"]) <= bound, (b, got, row["target"], bound)
    assert result.report["within_bound"]
    report = json.loads(Path(str(tmp_path / "m") + "_report.json").read_text())
    assert report["totals"]["realized_tokens"] == pytest.approx(realized.sum())
    assert sum(h["docs"] for h in report["repetition_histogram"]) == len(man)


def test_quality_top_only_selects_the_top_of_each_subbucket(spark, data, codes_pdf, tmp_path):
    plan = make_plan(
        spark,
        data,
        settings={"stage2": "quality-top:0.3", "stage2_level": 3, "budget_tokens": 300_000},
    )
    result = run_sample(spark, data["codes"], str(tmp_path / "m"), plan)
    man = (
        DeltaTable(str(tmp_path / "m"))
        .to_pandas()
        .merge(codes_pdf[["doc_id", "quality", "bucket3"]], on="doc_id")
    )
    kids = plan.children.set_index("child")
    for child, docs in codes_pdf.groupby("bucket3"):
        q = np.sort(docs["quality"].dropna().to_numpy())
        k = max(1, math.ceil(Fraction(7, 10) * len(q)))  # inverted-CDF 70th percentile
        p70 = q[k - 1]
        assert kids.loc[child, "threshold"] == p70
        assert kids.loc[child, "pool_docs"] == (q >= p70).sum()
        assert kids.loc[child, "no_quality_docs"] == docs["quality"].isna().sum()
        chosen = man[man["bucket3"] == child]
        assert (chosen["quality"] >= p70).all()
    assert man["quality"].notna().all()
    assert result.report["docs_without_quality"] == int(codes_pdf["quality"].isna().sum()) > 0


def test_coverage_spreads_over_subbuckets_more_than_random(spark, data, tmp_path):
    entropy = {}
    for rule in ("random", "coverage"):
        plan = make_plan(
            spark, data, settings={"stage2": rule, "stage2_level": 3, "budget_tokens": 200_000}
        )
        report = run_sample(spark, data["codes"], str(tmp_path / rule), plan).report
        entropy[rule] = report["entropy_bits"]["level3"]["realized"]
        assert report["entropy_bits"]["level1"]["realized"] == pytest.approx(
            report["entropy_bits"]["level1"]["target"], abs=0.01
        )
    assert entropy["coverage"] > entropy["random"] + 0.05


def test_repeats_come_from_full_passes_then_the_walk(spark, data, tmp_path):
    plan = make_plan(
        spark,
        data,
        settings={"budget_tokens": 3_000_000, "max_epochs": 2.5, "weights": "uniform"},
        allow_shortfall=True,
    )
    run_sample(spark, data["codes"], str(tmp_path / "m"), plan)
    man = DeltaTable(str(tmp_path / "m")).to_pandas()
    assert man["repeats"].max() <= 3
    kids = plan.children.set_index("child")
    for child, docs in man.groupby("stage2_bucket"):
        full = kids.loc[child, "full_passes"]
        assert (docs["repeats"] >= full).all() and (docs["repeats"] <= full + 1).all()
        assert len(docs) == kids.loc[child, "pool_docs"] or full == 0


# ------------------------------------------------------------------ planning


def test_plan_from_stats_equals_plan_from_codes(spark, data):
    settings = SampleConfig(
        budget_tokens=250_000, weights="temperature:0.7", stage2="coverage", stage2_level=3
    )
    from_codes = compute_plan(spark, settings, table=data["codes"])
    from_stats = compute_plan(spark, settings, stats=data["stats"])
    assert from_stats.levels == from_codes.levels == LEVELS
    cols = ["parent", "child", "docs", "tokens", "alloc", "full_passes", "remainder"]
    pd.testing.assert_frame_equal(from_codes.children[cols], from_stats.children[cols])
    pd.testing.assert_frame_equal(from_codes.stage1, from_stats.stage1)
    assert from_stats.info["source"]["table"] is None


def test_plan_json_round_trip_and_cli(spark, data, tmp_path, capsys):
    path = tmp_path / "plan.json"
    code, out, err = run(
        capsys,
        "plan",
        "--stats",
        data["stats"],
        "--table",
        data["codes"],
        "--budget-tokens",
        "123456",
        "--stage2",
        "quality-top:0.4",
        "--weights",
        "unimax",
        "--max-epochs",
        "2",
        "--out",
        str(path),
        "--weights-out",
        str(tmp_path / "w"),
    )
    assert code == 0, err
    assert "sample plan" in out and "expected repetition" in out
    plan = SamplePlan.load(path)
    again = SamplePlan.from_json(plan.to_json())
    pd.testing.assert_frame_equal(plan.children, again.children)
    pd.testing.assert_frame_equal(plan.stage1, again.stage1)
    assert plan.settings["budget_tokens"] == 123456
    doremi = json.loads((tmp_path / "w" / "doremi_weights.json").read_text())
    assert sum(doremi["train_domain_weights"].values()) == pytest.approx(1.0)
    assert (tmp_path / "w" / "regmix_mixture.csv").read_text().startswith("index,0,")
    code, out, err = run(
        capsys,
        "sample",
        "--table",
        data["codes"],
        "--plan",
        str(path),
        "--out",
        str(tmp_path / "m"),
    )
    assert code == 0, err
    direct = run_sample(spark, data["codes"], str(tmp_path / "m2"), plan)
    a = DeltaTable(str(tmp_path / "m")).to_pandas().sort_values("doc_id", ignore_index=True)
    b = DeltaTable(str(tmp_path / "m2")).to_pandas().sort_values("doc_id", ignore_index=True)
    pd.testing.assert_frame_equal(a, b)
    assert direct.report["settings"]["stage2"] == "quality-top:0.4"


def test_weights_file_and_unlisted_buckets(spark, data, tmp_path):
    base = make_plan(spark, data, settings={"weights_level": 2, "stage2_level": 3})
    keys = [base.key(b, 2) for b in base.stage1["bucket"]]
    (tmp_path / "w.csv").write_text(f"key,weight\n{keys[0]},2\n{keys[-1]},1\n")
    plan = make_plan(
        spark,
        data,
        settings={"weights": str(tmp_path / "w.csv"), "weights_level": 2, "stage2_level": 3},
    )
    listed = {plan.key(b, 2) for b in plan.stage1.loc[plan.stage1["target"] > 0, "bucket"]}
    assert listed == {keys[0], keys[-1]}
    assert plan.info["weights"]["unlisted_buckets"] == keys[1:-1]
    report = run_sample(spark, data["codes"], str(tmp_path / "m"), plan).report
    assert report["unlisted_buckets"] == keys[1:-1]
    shares = {r["key"]: r["realized_share"] for r in report["stage1"]}
    assert shares[keys[0]] == pytest.approx(2 / 3, abs=0.01)
    assert shares[keys[1]] == 0


def test_mixtures_command_writes_usable_weight_files(spark, data, tmp_path, capsys):
    code, _out, err = run(
        capsys,
        "mixtures",
        "--dirichlet",
        "3",
        "--temperature",
        "0.5",
        "--seed",
        "2",
        "--stats",
        data["stats"],
        "--out",
        str(tmp_path / "mx"),
    )
    assert code == 0, err
    files = sorted((tmp_path / "mx").glob("mixture-*.json"))
    assert len(files) == 3
    mixes = [json.loads(f.read_text()) for f in files]
    assert all(sum(m.values()) == pytest.approx(1.0) for m in mixes)
    assert mixes[0] != mixes[1]
    plan = make_plan(spark, data, settings={"weights": str(files[1])})
    assert plan.info["weights"]["source"] == str(files[1])


def test_exact_kth_smallest_matches_numpy(spark, monkeypatch):
    monkeypatch.setattr(quantiles_mod, "KTH_BINS", 4)
    monkeypatch.setattr(quantiles_mod, "KTH_SORT_LIMIT", 5)
    rng = np.random.default_rng(0)
    frames = []
    for g in range(5):
        n = int(rng.integers(1, 300))
        v = np.round(rng.normal(size=n), 1 if g % 2 else 6)  # ties in odd groups
        frames.append(pd.DataFrame({"g": g, "v": v}))
    frames.append(pd.DataFrame({"g": 9, "v": np.full(50, 0.25)}))
    pdf = pd.concat(frames, ignore_index=True)
    values = spark.createDataFrame(pdf, "g long, v double").repartition(3)
    wanted = pdf.groupby("g")["v"].agg(lo="min", hi="max", n="size").reset_index()
    wanted["k"] = [quality_rank(0.3, n) for n in wanted["n"]]
    got = exact_kth_smallest(values, wanted)
    for row in wanted.itertuples():
        v = np.sort(pdf.loc[pdf["g"] == row.g, "v"].to_numpy())
        assert got[int(row.g)] == v[int(row.k) - 1]


def test_quality_rank_is_exact():
    assert quality_rank(0.3, 10) == 7
    assert quality_rank(0.3, 11) == 8
    assert quality_rank(1.0, 5) == 1
    assert quality_rank(0.1, 10**15) == 9 * 10**14


def test_rescore_recomputes_quality_without_embedding(spark, data, tmp_path, capsys):
    from udfs.quality import quality_scores

    store = get_store(spark)
    table = str(tmp_path / "codes")
    codes = store.read(data["codes"])
    store.overwrite(codes, table, partition_by=("codebook_version",))
    version = DeltaTable(table).to_pandas()["codebook_version"].iloc[0]
    # an older version's rows, annotated earlier: rescoring the latest must not touch them
    older = codes.withColumn("codebook_version", F.lit("older")).withColumn(
        "annotated_at", F.col("annotated_at") - F.expr("INTERVAL 1 DAY")
    )
    store.append(older, table, partition_by=("codebook_version",))
    older_before = DeltaTable(table).to_pandas(filters=[("codebook_version", "=", "older")])
    is_older = "codebook_version = 'older'"
    older_files = set(DeltaTable(table).file_uris(file_pruning_predicate=is_older))
    code, out, err = run(capsys, "rescore", "--table", table, "--input", data["corpus"])
    assert code == 0, err
    assert f"rescored {N_DOCS} of {N_DOCS} rows" in out
    assert set(DeltaTable(table).file_uris(file_pruning_predicate=is_older)) == older_files
    pd.testing.assert_frame_equal(
        DeltaTable(table).to_pandas(filters=[("codebook_version", "=", "older")]), older_before
    )
    after = DeltaTable(table).to_pandas(filters=[("codebook_version", "=", version)])
    after = after.sort_values("doc_id", ignore_index=True)
    before = DeltaTable(data["codes"]).to_pandas().sort_values("doc_id", ignore_index=True)
    corpus = pq.read_table(data["corpus"]).to_pandas().set_index("id").loc[after["doc_id"]]
    expect = quality_scores(corpus["text"].reset_index(drop=True))
    np.testing.assert_allclose(after["quality"].to_numpy(), expect.to_numpy())
    same = [c for c in before.columns if c != "quality"]
    pd.testing.assert_frame_equal(after[same], before[same])
    assert not np.allclose(before["quality"].fillna(-1), after["quality"])


# ------------------------------------------------------------------ CLI errors


@pytest.mark.parametrize(
    ("content", "suffix", "needles"),
    [
        ('{"0": 1, "7.1": 1}', ".json", ["'7.1'", "level 1 keys need 1"]),
        ('{"0": -1, "1": 2}', ".json", ["finite and >= 0", "0=-1"]),
        ('{"0": NaN, "1": 2}', ".json", ["finite and >= 0"]),
        ('{"0": 0, "1": 0}', ".json", ["sum to 0"]),
        ('{"0": 1,', ".json", ["not valid JSON"]),
        ("bucket,share\n0,1\n", ".csv", ["columns key (or bucket) and weight"]),
    ],
)
def test_bad_weights_files_exit_2(spark, data, tmp_path, capsys, content, suffix, needles):
    path = tmp_path / f"w{suffix}"
    path.write_text(content)
    code, _, err = run(
        capsys, "plan", "--stats", data["stats"], "--budget-tokens", "1000", "--weights", str(path)
    )
    assert_clean_error(code, err, *needles)


def test_unknown_bucket_key_exits_2(spark, data, tmp_path, capsys):
    # a STATS table without one level-2 bucket (fits of this corpus fill all 16), so a
    # well-formed key of a bucket it does not hold is asked for
    store = get_store(spark)
    rows = store.read(data["stats"])
    gone = rows.where("level = 2").orderBy("bucket").first()
    assert gone is not None
    stats = str(tmp_path / "stats")
    cell = f"level >= 2 AND c1 = {int(gone.c1)} AND c2 = {int(gone.c2)}"  # and its children
    store.overwrite(rows.where(f"NOT ({cell})"), stats)
    levels = f"{data['stats']}_levels"
    if store.exists(levels):
        store.overwrite(store.read(levels), f"{stats}_levels")
    empty = [f"{int(gone.c1)}.{int(gone.c2)}"]
    (tmp_path / "w.json").write_text(json.dumps({empty[0]: 1.0}))
    code, _, err = run(
        capsys,
        "plan",
        "--stats",
        stats,
        "--budget-tokens",
        "1000",
        "--weights",
        str(tmp_path / "w.json"),
        "--weights-level",
        "2",
    )
    assert_clean_error(code, err, "unknown key(s)", repr(empty[0]))


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--budget-tokens", "1e12"], ["impossible", "--allow-shortfall"]),
        (["--budget-tokens", "-5"], ["budget_tokens", "positive"]),
        (["--budget-tokens", "nan"], ["budget_tokens"]),
        (["--budget-tokens", "lots"], ["--budget-tokens"]),
        (["--budget-tokens", "1000", "--stage2", "best"], ["unknown Stage-2 rule"]),
        (["--budget-tokens", "1000", "--stage2", "quality-top:1.5"], ["0 < p <= 1"]),
        (["--budget-tokens", "1000", "--stage2-level", "1"], ["--stage2-level"]),
        (["--budget-tokens", "1000", "--weights", "temperature:-1"], ["τ > 0"]),
        (["--budget-tokens", "1000", "--weights", "zipf"], ["unknown weights rule"]),
        ([], ["--budget-tokens"]),
    ],
)
def test_impossible_budgets_and_bad_flags_exit_2(spark, data, tmp_path, capsys, flags, needles):
    code, _, err = run(
        capsys, "sample", "--table", data["codes"], "--out", str(tmp_path / "m"), *flags
    )
    assert_clean_error(code, err, *needles)
    assert not (tmp_path / "m").exists()


def test_shortfall_is_reported_when_allowed(spark, data, tmp_path, capsys):
    total = int(DeltaTable(data["codes"]).to_pandas()["n_tokens"].sum())
    code, out, err = run(
        capsys,
        "sample",
        "--table",
        data["codes"],
        "--out",
        str(tmp_path / "m"),
        "--budget-tokens",
        str(3 * total),
        "--max-epochs",
        "2",
        "--allow-shortfall",
    )
    assert code == 0, err
    report = json.loads(Path(str(tmp_path / "m") + "_report.json").read_text())
    assert report["totals"]["stage1_shortfall_tokens"] == pytest.approx(total)
    assert report["totals"]["realized_tokens"] == 2 * total
    assert "unmet budget" in out


def test_plan_with_planning_flags_and_stale_plans_exit_2(spark, data, tmp_path, capsys):
    plan = make_plan(spark, data)
    plan.save(tmp_path / "p.json")
    code, _, err = run(
        capsys,
        "sample",
        "--table",
        data["codes"],
        "--out",
        str(tmp_path / "m"),
        "--plan",
        str(tmp_path / "p.json"),
        "--budget-tokens",
        "5",
    )
    assert_clean_error(code, err, "--plan fixes the allocation", "--budget-tokens")
    store = get_store(spark)
    fewer = str(tmp_path / "fewer")
    store.overwrite(
        store.read(data["codes"]).where(F.col("doc_id") != "d00007"),
        fewer,
        partition_by=("codebook_version",),
    )
    code, _, err = run(
        capsys,
        "sample",
        "--table",
        fewer,
        "--out",
        str(tmp_path / "m"),
        "--plan",
        str(tmp_path / "p.json"),
    )
    assert_clean_error(code, err, "no longer matches the plan")
    (tmp_path / "bad.json").write_text('{"kind": "something else"}')
    code, _, err = run(
        capsys,
        "sample",
        "--table",
        data["codes"],
        "--out",
        str(tmp_path / "m"),
        "--plan",
        str(tmp_path / "bad.json"),
    )
    assert_clean_error(code, err, "not a hermes sample plan")


# ------------------------------------------------------------------ real data


def hashed_bow(texts: list[str], dim: int = 64) -> np.ndarray:
    """Cheap deterministic text vectors (hashed bag of words), standing in for a model."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            out[i, zlib.crc32(word.encode()) % dim] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_quality_top_on_fineweb_prefers_educational_pages(spark, tmp_path, capsys):
    src = pq.read_table(
        shared_corpus("fineweb_1k_eduscored.parquet"),
        columns=["id", "text", "token_count", "edu_score"],
    )
    vectors = hashed_bow(src.column("text").to_pylist())
    corpus = src.append_column("emb", pa.array(list(vectors), type=pa.list_(pa.float32())))
    pq.write_table(corpus, tmp_path / "fineweb.parquet")
    flags = [
        "--input",
        str(tmp_path / "fineweb.parquet"),
        "--embedding-col",
        "emb",
        "--tokens-col",
        "token_count",
        "--quality-col",
        "edu_score",
    ]
    assert (
        run(
            capsys,
            "fit",
            *flags,
            "--out",
            str(tmp_path / "cb"),
            "--levels",
            "4,3",
            "--sample-size",
            "1000",
        )[0]
        == 0
    )
    assert (
        run(
            capsys,
            "annotate",
            *flags,
            "--codebook",
            str(tmp_path / "cb"),
            "--table",
            str(tmp_path / "codes"),
        )[0]
        == 0
    )
    total = int(pc.sum(src.column("token_count")).as_py())
    code, out, err = run(
        capsys,
        "sample",
        "--table",
        str(tmp_path / "codes"),
        "--out",
        str(tmp_path / "m"),
        "--budget-tokens",
        str(total // 5),
        "--stage2",
        "quality-top:0.3",
    )
    assert code == 0, err
    man = DeltaTable(str(tmp_path / "m")).to_pandas()
    edu = src.to_pandas().set_index("id")["edu_score"]
    assert edu.loc[man["doc_id"]].mean() > edu.mean() + 0.4
    report = json.loads(Path(str(tmp_path / "m") + "_report.json").read_text())
    assert report["within_bound"] and "quality pool" in out


def test_budget_share_plans_that_share_of_the_version_tokens(spark, data, tmp_path, capsys):
    total = float(DeltaTable(data["codes"]).to_pandas()["n_tokens"].sum())
    by_share = make_plan(spark, data, settings={"budget_tokens": None, "budget_share": 0.3})
    by_tokens = make_plan(spark, data, settings={"budget_tokens": 0.3 * total})
    assert by_share.settings["budget_tokens"] == pytest.approx(0.3 * total)
    assert by_share.settings["budget_share"] == 0.3
    cols = ["parent", "child", "alloc", "full_passes", "remainder"]
    pd.testing.assert_frame_equal(by_share.children[cols], by_tokens.children[cols])
    path = tmp_path / "plan.json"
    code, _, err = run(
        capsys, "plan", "--stats", data["stats"], "--budget-share", "0.3", "--out", str(path)
    )
    assert code == 0, err
    assert SamplePlan.load(path).settings["budget_tokens"] == pytest.approx(0.3 * total)
