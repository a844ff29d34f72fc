"""The library API on DataFrames: fit, lazy transform, pandas twin, save/load, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from hermes_spark import HermesEstimator, HermesModel
from hermes_spark.errors import InvalidConfigError, InvalidInputError
from tests.helpers import labelled_vectors

pytestmark = pytest.mark.spark

LEVELS = (6, 4, 2)


def corpus_frame(n: int = 240, dim: int = 16, seed: int = 0) -> pd.DataFrame:
    x, labels = labelled_vectors(n, dim, seed=seed)
    return pd.DataFrame(
        {
            "id": [f"d{i:04d}" for i in range(n)],
            "body": [f"text of document {i}" for i in range(n)],
            "vec": [v.tolist() for v in x],
            "tokens": np.arange(n, dtype=np.int64) % 50 + 10,
            "label": [f"k{c}" for c in labels],
        }
    )


SCHEMA = T.StructType(
    [
        T.StructField("id", T.StringType()),
        T.StructField("body", T.StringType()),
        T.StructField("vec", T.ArrayType(T.FloatType())),
        T.StructField("tokens", T.LongType()),
        T.StructField("label", T.StringType()),
    ]
)


def estimator(**kw) -> HermesEstimator:
    base = dict(
        levels=LEVELS,
        sample_size=200,
        seed=3,
        lst_dim=8,
        text_col="body",
        embedding_col="vec",
        tokens_col="tokens",
    )
    return HermesEstimator(**{**base, **kw})


@pytest.fixture(scope="module")
def fitted(spark):
    df = spark.createDataFrame(corpus_frame(), SCHEMA)
    est = estimator()
    return est, est.fit(df)


def test_fit_returns_an_immutable_model_and_leaves_the_estimator_alone(spark, fitted):
    est, model = fitted
    assert est == estimator()  # unchanged by fit
    assert model.levels == LEVELS
    again = est.fit(spark.createDataFrame(corpus_frame(), SCHEMA))
    assert again.version == model.version  # same data, same seed: the same artifact
    other = dataclasses.replace(est, seed=4).fit(spark.createDataFrame(corpus_frame(), SCHEMA))
    assert other.version != model.version
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.codebook = None  # type: ignore[misc]


def test_transform_is_lazy_and_keeps_every_row_with_a_reason(spark, fitted):
    _, model = fitted
    pdf = corpus_frame(40, seed=9)
    pdf.loc[3, "body"] = None
    pdf.loc[5, "body"] = "   "
    pdf.at[7, "vec"] = [0.5] * 3
    df = spark.createDataFrame(pdf, SCHEMA)
    sc = spark.sparkContext
    sc.setJobGroup("hermes-transform-probe", "probe")
    codes = model.transform(df)
    assert sc.statusTracker().getJobIdsForGroup("hermes-transform-probe") == []
    sc.setJobGroup("other", "other")
    expected_cols = [*pdf.columns, "doc_id", "c1", "c2", "c3", "bucket1", "bucket2", "bucket3"]
    expected_cols += ["qerr1", "qerr2", "qerr3", "n_tokens", "quality", "codebook_version"]
    assert codes.columns == [*expected_cols, "reason"]
    out = codes.toPandas().set_index("doc_id").loc[pdf["id"]]
    assert len(out) == len(pdf)
    reasons = out["reason"].to_dict()
    assert reasons["d0003"] == "null_text"
    assert reasons["d0005"] == "empty_text"
    assert reasons["d0007"] == "wrong_embedding_length"
    bad = out["reason"].notna()
    assert out.loc[bad, ["c1", "c2", "c3"]].isna().all().all()
    good = out[~bad]
    x = np.stack(pdf.set_index("id").loc[good.index, "vec"].map(np.asarray).to_numpy())
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    want, _ = model.codebook.assign(x.astype(np.float32))
    np.testing.assert_array_equal(good[["c1", "c2", "c3"]].to_numpy(dtype=int), want)
    np.testing.assert_array_equal(
        good["bucket3"].to_numpy(dtype=int),
        (want[:, 0] * LEVELS[1] + want[:, 1]) * LEVELS[2] + want[:, 2],
    )
    assert (good["codebook_version"] == model.version).all()
    assert good["body"].tolist() == pdf.set_index("id").loc[good.index, "body"].tolist()
    assert codes.schema["c1"].metadata["hermes.levels"] == list(LEVELS)


def test_transform_pandas_matches_transform(spark, fitted):
    _, model = fitted
    pdf = corpus_frame(30, seed=5)
    pdf.loc[2, "body"] = None
    spark_out = model.transform(spark.createDataFrame(pdf, SCHEMA)).toPandas()
    local = model.transform_pandas(pdf)
    cols = ["doc_id", "c1", "c2", "c3", "bucket3", "n_tokens", "reason"]
    a = spark_out[cols].sort_values("doc_id").reset_index(drop=True)
    b = local[cols].sort_values("doc_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a.astype(object), b.astype(object), check_dtype=False)


def test_save_and_load_round_trip_through_a_uri(fitted, tmp_path):
    _, model = fitted
    model.save(f"file://{tmp_path}/cb")
    loaded = HermesModel.load(str(tmp_path / "cb"), text_col="body", embedding_col="vec")
    assert loaded.version == model.version
    assert loaded.roles.text_col == "body"
    assert (tmp_path / "cb" / "fit_report.json").exists()
    with pytest.raises(InvalidConfigError, match="unknown HermesModel option"):
        loaded.with_options(txt_col="body")


def test_a_saved_model_restores_its_column_roles(spark, fitted, tmp_path):
    """Like a pyspark.ml model, ``load`` restores the roles the model was saved with (a
    ``quality`` role column would otherwise collide with hermes' own output) and
    ``load(path, **overrides)`` changes them."""
    _, model = fitted
    roled = model.with_options(quality_col="quality", tokens_col="n_tokens")
    roled.save(str(tmp_path / "cb"))
    loaded = HermesModel.load(str(tmp_path / "cb"))
    assert loaded.roles == roled.roles
    pdf = corpus_frame(20).rename(columns={"tokens": "n_tokens"})
    pdf["quality"] = np.linspace(0.0, 1.0, len(pdf))
    out = loaded.transform_pandas(pdf)
    assert out["quality"].tolist() == pytest.approx(pdf["quality"].tolist())
    other = HermesModel.load(str(tmp_path / "cb"), quality_col=None, batch_size=7)
    assert other.roles.quality_col is None and other.roles.tokens_col == "n_tokens"
    assert other.run.batch_size == 7


def test_api_errors_are_named_and_raised_before_any_job(spark, fitted):
    _, model = fitted
    pdf = corpus_frame(10)
    df = spark.createDataFrame(pdf, SCHEMA)
    sc = spark.sparkContext
    sc.setJobGroup("hermes-error-probe", "probe")
    with pytest.raises(InvalidInputError, match="'text' is missing"):
        model.with_options(text_col="text").transform(df)
    with pytest.raises(InvalidInputError, match="c1"):
        model.transform(df.withColumnRenamed("label", "c1"))
    with pytest.raises(InvalidInputError, match="embedding column 'vec' must be array<float>"):
        model.transform(df.withColumn("vec", F.split(df["body"], " ")))
    with pytest.raises(InvalidInputError, match="'text' is missing"):
        estimator(text_col="text").fit(df)
    assert sc.statusTracker().getJobIdsForGroup("hermes-error-probe") == []
    sc.setJobGroup("other", "other")
    with pytest.raises(InvalidConfigError, match="levels"):
        HermesEstimator(levels=(1, 2))


def test_the_whole_api_on_dataframes_without_files(spark, fitted, tmp_path, monkeypatch):
    """fit → transform → bucket_stats → plan_mixture → sample → materialize, no writes."""
    from hermes_spark import bucket_stats, materialize, plan_mixture, sample

    monkeypatch.chdir(tmp_path)  # anything written to a relative path would land here
    _, model = fitted
    corpus = spark.createDataFrame(corpus_frame(), SCHEMA)
    codes = model.transform(corpus).where("reason is null")
    stats, levels = bucket_stats(codes)
    s = stats.toPandas()
    assert s.loc[s["level"] == 1, "docs"].sum() == corpus.count()
    assert levels.toPandas().sort_values("level")["cells_total"].tolist() == [6, 24, 48]
    budget = 0.5 * float(s.loc[s["level"] == 1, "tokens"].sum())
    plan = plan_mixture(
        stats, budget_tokens=budget, weights="uniform", stage2="coverage", max_epochs=2
    )
    manifest = sample(codes, plan, seed=5).toPandas()
    realized = float((manifest["repeats"] * manifest["tokens"]).sum())
    assert abs(realized - budget) <= 0.02 * budget + manifest["tokens"].max()
    assert set(manifest["doc_id"]) <= set(corpus_frame()["id"])
    train = materialize(
        sample(codes, plan, seed=5), corpus, id_col="id", text_col="body"
    ).toPandas()
    assert len(train) == int(manifest["repeats"].sum())
    again = materialize(sample(codes, plan, seed=5), corpus, id_col="id", text_col="body")
    assert again.toPandas()["body"].tolist() == train["body"].tolist()  # deterministic
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_a_quality_column_named_quality_is_used_not_refused(spark, fitted):
    _, model = fitted
    pdf = corpus_frame(20).rename(columns={"tokens": "n_tokens"})
    pdf["quality"] = np.linspace(0.0, 1.0, len(pdf))
    fields = [f for f in SCHEMA.fields if f.name != "tokens"]
    fields += [T.StructField("n_tokens", T.LongType()), T.StructField("quality", T.DoubleType())]
    schema = T.StructType(fields)
    df = spark.createDataFrame(pdf[[f.name for f in schema.fields]], schema)
    out = (
        model.with_options(quality_col="quality", tokens_col="n_tokens")
        .transform(df)
        .toPandas()
        .set_index("doc_id")
        .loc[pdf["id"]]
    )
    assert list(out.columns).count("quality") == 1
    np.testing.assert_allclose(out["quality"].to_numpy(), pdf["quality"].to_numpy())
    assert out["n_tokens"].tolist() == pdf["n_tokens"].tolist()


def test_fit_sample_keeps_the_copy_of_a_repeated_id_annotate_keeps(spark, tmp_path):
    """A repeated id: ``fit_sample`` keeps the copy annotate's keep-first keeps (the
    smallest ``_order``: first file, first row), never whichever copy a shuffle delivers
    first. The keeper sits in the smaller file, which Spark reads after the larger one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hermes_spark.api import fit_sample
    from hermes_spark.corpus import apply_duplicates, duplicate_losers, prepare

    def write(name: str, ids: list[str], tokens: list[int]) -> None:
        pq.write_table(pa.table({"id": ids, "text": ids, "tokens": tokens}), tmp_path / name)

    write("a.parquet", ["x"], [5])
    write("b.parquet", ["x"] + [f"b{i}" for i in range(400)], [99] * 401)
    cfg = estimator(text_col="text", embedding_col=None).roles.corpus_config()
    prepared = prepare(spark.read.parquet(str(tmp_path)), cfg, None, passthrough=())
    kept = apply_duplicates(prepared, duplicate_losers(prepared)).where("reason is null")
    assert kept.where("doc_id = 'x'").select("n_tokens").first()[0] == 5  # annotate's copy
    sample = fit_sample(prepared, 1000, seed=0, total_rows=402).toPandas()
    assert sample.loc[sample["doc_id"] == "x", "n_tokens"].tolist() == [5]
    assert sample["doc_id"].is_unique and len(sample) == 401


def test_the_fitting_sample_is_embedded_once(spark):
    """``collect_vectors`` streams the sample without a sort: a range-partitioned
    ``orderBy`` before ``toLocalIterator`` ran the embedding UDF once to sample the sort
    bounds and again to sort. Rows still come back in ``doc_id`` order."""
    from hermes_spark.api import collect_vectors

    calls = spark.sparkContext.accumulator(0)

    def embed(batches):
        for pdf in batches:
            calls.add(len(pdf))
            pdf["embedding"] = [[float(int(d[1:])), 1.0] for d in pdf["doc_id"]]
            yield pdf[["doc_id", "embedding"]]

    ids = spark.createDataFrame([(f"d{i:03d}",) for i in range(60)], "doc_id string")
    vectors = ids.repartition(4).mapInPandas(embed, "doc_id string, embedding array<float>")
    x = collect_vectors(vectors)
    assert x[:, 0].tolist() == [float(i) for i in range(60)]
    assert calls.value == 60
