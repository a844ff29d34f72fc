"""``hermes evaluate``: held-out metrics against KMeans-family baselines and labels."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from hermes_spark.config import CorpusConfig, FitConfig, HermesConfig
from hermes_spark.delta import get_store
from hermes_spark.evaluate import evaluate
from hermes_spark.evaluate.sample import split_samples
from hermes_spark.hashing import uniform
from hermes_spark.tasks.annotate import annotate
from hermes_spark.tasks.fit import fit
from tests.helpers import assert_clean_error, run_cli, write_embedded_corpus

pytestmark = pytest.mark.spark

N_DOCS = 900
FIT_SIZE = 450


@pytest.fixture(scope="module")
def fitted(spark, tmp_path_factory):
    """600 docs around six planted clusters; fit on 300 of them, annotate all."""
    root = tmp_path_factory.mktemp("evaluate")
    corpus = write_embedded_corpus(root / "c", n=N_DOCS, dim=24, files=2)
    cfg = HermesConfig(
        corpus=CorpusConfig(input=str(corpus), embedding_col="emb", tokens_col="tokens"),
        fit=FitConfig(levels=(6, 4, 2), sample_size=FIT_SIZE, seed=0, n_iter=15, lst_dim=16),
    )
    fit(spark, cfg, str(root / "cb"))
    annotate(spark, cfg, str(root / "cb"), str(root / "codes"))
    return cfg, root


def fit_sample_ids(corpus_dir) -> set[str]:
    """The ids ``fit`` trained on: the FIT_SIZE smallest u(doc_id, fit seed 0)."""
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    df = spark.read.parquet(str(corpus_dir)).select(F.col("id").alias("doc_id"))
    rows = df.withColumn("u", uniform("doc_id", 0)).orderBy("u", "doc_id").limit(FIT_SIZE)
    return {r["doc_id"] for r in rows.collect()}


def test_report_scores_codes_and_every_baseline_on_held_out_docs(spark, fitted) -> None:
    cfg, root = fitted
    report = evaluate(
        spark, cfg, str(root / "codes"), str(root / "cb"), ["cluster"], sample_size=300, seed=1
    )
    assert report["eval_rows"] == 300 and report["baseline_fit_rows"] == 300
    assert report["sampling"]["disjoint_from_fit"] is True
    assert report["sampling"]["held_out_pool"] == N_DOCS - FIT_SIZE
    rows = {(r["method"], r["level"]): r for r in report["methods"]}
    assert {m for m, _ in rows} == {"hermes", "kmeans", "bisecting_kmeans"}  # 6 is not 2^k
    assert [rows[("hermes", k)]["k"] for k in (1, 2, 3)] == [6, 24, 48]
    # six planted clusters, six first-level codes: the codes find them out of sample
    assert rows[("hermes", 1)]["labels"]["cluster"]["nmi"] > 0.8
    mse = [rows[("hermes", k)]["relative_mse"] for k in (1, 2, 3)]
    assert 1.0 > mse[0] > mse[1] > mse[2] > 0.0
    for name in ("kmeans", "bisecting_kmeans"):
        assert 0.0 < rows[(name, 2)]["relative_mse"] < 1.0
        assert rows[(name, 2)]["k"] == 24 and rows[(name, 2)]["fit_seconds"] > 0
    # flat k-means with 24 cells explains more than six cells do
    assert rows[("kmeans", 2)]["relative_mse"] < rows[("kmeans", 1)]["relative_mse"]
    assert report["goals"]["space"] == "model"
    assert report["goals"]["l12_mse_ratio"] == pytest.approx(
        rows[("hermes", 2)]["cell_mse_model"] / rows[("kmeans", 2)]["cell_mse_model"]
    )
    assert rows[("hermes", 1)]["silhouette_cosine"] > 0.2


def test_evaluation_sample_is_disjoint_from_the_fit_sample(spark, fitted) -> None:
    """Regression: evaluate used to score the u(seed) prefix fit trained on."""
    _, root = fitted
    trained = fit_sample_ids(root / "c")
    assert len(trained) == FIT_SIZE
    codes = get_store(spark).read(str(root / "codes"))
    for seed in (0, 1):  # even with fit's own seed
        split = split_samples(codes, fit_seed=0, fit_size=FIT_SIZE, seed=seed, n=300, n_fit=200)
        held = {r["doc_id"] for r in split.held_out.collect()}
        fitting = {r["doc_id"] for r in split.fitting.collect()}
        assert len(held) == 300 and len(fitting) == 200
        assert not held & trained
        assert fitting <= trained
        assert split.info["disjoint_from_fit"] is True
    # opting in to an in-sample evaluation draws from the fit sample, and says so
    inside = split_samples(
        codes, fit_seed=0, fit_size=FIT_SIZE, seed=1, n=100, n_fit=100, in_sample=True
    )
    assert {r["doc_id"] for r in inside.held_out.collect()} <= trained
    assert inside.info["disjoint_from_fit"] is False


def test_embeddings_table_gives_the_same_report_as_the_corpus_vectors(spark, fitted) -> None:
    cfg, root = fitted
    from hermes_spark.quantize.codebook import Codebook

    version = Codebook.load(root / "cb").version
    table = pq.read_table(root / "c").to_pandas()
    vectors = np.stack(table["emb"].to_numpy()).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [
        (doc, version, bytearray(v.astype("<f2").tobytes()))
        for doc, v in zip(table["id"], vectors, strict=True)
    ]
    emb = spark.createDataFrame(
        rows, "doc_id string, codebook_version string, embedding_f16 binary"
    )
    get_store(spark).overwrite(emb, str(root / "emb"))
    direct = evaluate(spark, cfg, str(root / "codes"), str(root / "cb"), ["cluster"], 200, seed=2)
    stored = evaluate(
        spark,
        cfg,
        str(root / "codes"),
        str(root / "cb"),
        ["cluster"],
        200,
        seed=2,
        embeddings_table=str(root / "emb"),
        baselines=(),
    )
    assert stored["vectors"].startswith("embeddings table")
    ours = {r["level"]: r for r in stored["methods"] if r["method"] == "hermes"}
    ref = {r["level"]: r for r in direct["methods"] if r["method"] == "hermes"}
    for level in (1, 2, 3):
        # float16 storage moves a few near-tie vectors at most
        assert ours[level]["relative_mse"] == pytest.approx(ref[level]["relative_mse"], rel=0.02)
        assert ours[level]["labels"]["cluster"]["nmi"] == pytest.approx(
            ref[level]["labels"]["cluster"]["nmi"], abs=0.03
        )
    assert stored["baseline_fit_rows"] == 0


def test_cli_writes_json_and_markdown_and_refuses_unknown_labels(capsys, fitted) -> None:
    _, root = fitted
    common = [
        "evaluate",
        "--input",
        str(root / "c"),
        "--embedding-col",
        "emb",
        "--table",
        str(root / "codes"),
        "--codebook",
        str(root / "cb"),
    ]
    out_dir = root / "report"
    code, out, err = run_cli(
        capsys,
        *common,
        "--label-cols",
        "cluster,source",
        "--sample",
        "200",
        "--baselines",
        "kmeans",
        "--out",
        str(out_dir),
        "--report",
        str(root / "eval.html"),
    )
    assert code == 0, err
    assert "disjoint from the fit sample" in out and "NMI cluster" in out
    report = json.loads((out_dir / "evaluation.json").read_text())
    page = (root / "eval.html").read_text()  # --report: the HTML page of this evaluation
    shown = re.findall(r'data-key="relative_mse" data-value="([^"]+)"', page)
    fit_mse = json.loads((root / "cb" / "fit_report.json").read_text())["stages"]
    assert [float(v) for v in shown] == [s["relative_mse"] for s in fit_mse] + [
        m["relative_mse"] for m in report["methods"]
    ]
    assert "Centroid map" in page and "Evaluation: hermes vs baselines" in page
    assert report["label_cols"] == ["cluster", "source"] and report["eval_rows"] == 200
    md = (out_dir / "evaluation.md").read_text()
    assert "## Level 1" in md and "Labels `source`" in md and "## Goals" in md
    code, _, err = run_cli(capsys, *common, "--label-cols", "nope")
    assert_clean_error(code, err, "nope")
