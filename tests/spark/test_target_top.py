"""``--stage2 target-top:p`` end to end: inside every Stage-2 child only the share ``p``
most similar to the target examples (cosine to the nearest target centroid in LST space)
is sampled, from the CLI and from the API, with the budget met and the same manifest
whatever the partitioning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from hermes_spark.config import CorpusConfig, HermesConfig
from hermes_spark.delta import get_store
from hermes_spark.embedding.vectors import decode_f16
from hermes_spark.quantize.codebook import Codebook
from hermes_spark.sampling.quantiles import quality_rank
from hermes_spark.sampling.similarity import (
    SIM_COL,
    VectorSource,
    lst_arrays,
    similarity_scores,
    target_centroids,
    with_target_similarity,
)
from hermes_spark.tasks.annotate import annotate
from tests.helpers import assert_clean_error
from tests.helpers import run_cli as run

pytestmark = pytest.mark.spark

BUDGET = 150_000
P = 0.3


@pytest.fixture(scope="module")
def stored(spark, shared_codes, tmp_path_factory) -> dict[str, str]:
    """The shared corpus annotated again with --store-embeddings, and a target: 80
    corpus vectors of one level-1 cell (the texts a user wants more of)."""
    root = tmp_path_factory.mktemp("target_top")
    cfg = HermesConfig(
        corpus=CorpusConfig(
            input=shared_codes["corpus"], embedding_col="emb", tokens_col="tokens",
            quality_col="quality",
        )
    )  # fmt: skip
    annotate(spark, cfg, shared_codes["cb"], str(root / "codes"), store_embeddings=True)
    codes = DeltaTable(shared_codes["codes"]).to_pandas()
    corpus = pq.read_table(shared_codes["corpus"]).to_pandas()
    cell = int(codes["bucket1"].value_counts().index[-1])  # the smallest level-1 cell
    ids = set(codes.loc[codes["bucket1"] == cell, "doc_id"])
    target = corpus[corpus["id"].isin(ids)].head(80).copy()
    target["id"] = "t-" + target["id"]
    (root / "target").mkdir()
    target[["id", "text", "emb"]].to_parquet(root / "target" / "part-0.parquet")
    return {**shared_codes, "codes": str(root / "codes"), "target": str(root / "target")}


def _manifest(path: str):
    return DeltaTable(path).to_pandas().sort_values("doc_id").reset_index(drop=True)


def _reference_scores(data: dict[str, str], centroids: np.ndarray) -> dict[str, float]:
    emb = DeltaTable(data["codes"] + "_embeddings").to_pandas()
    cb = Codebook.load(data["cb"])
    x = decode_f16(emb["embedding_f16"], cb.dim)
    return dict(zip(emb["doc_id"], similarity_scores(x, lst_arrays(cb), centroids), strict=True))


def test_target_top_cli_and_api(spark, stored, tmp_path, capsys):
    data = stored
    common = [
        "--table", data["codes"], "--budget-tokens", str(BUDGET), "--weights", "proportional",
        "--stage2", f"target-top:{P}", "--codebook", data["cb"], "--target", data["target"],
        "--target-embedding-col", "emb", "--max-epochs", "2", "--seed", "4",
    ]  # fmt: skip
    code, out, err = run(capsys, "sample", *common, "--out", str(tmp_path / "m"))
    assert code == 0, err
    assert "target-top: 80 target examples, 8 centroids" in out
    report = json.loads((tmp_path / "m_report.json").read_text())
    assert report["settings"]["stage2"] == f"target-top:{P}"
    tt = report["settings"]["target_top"]
    assert tt["vectors"] == {"kind": "embeddings_table", "table": data["codes"] + "_embeddings"}
    assert report["target_top"]["docs_without_similarity"] == 0
    assert report["within_bound"]
    assert report["totals"]["realized_tokens"] == pytest.approx(BUDGET, rel=0.02)

    # every selected document is in its child's pool: similarity >= the child's exact
    # (1-p) quantile, computed here in numpy from the stored vectors
    sims = _reference_scores(data, np.asarray(tt["centroids"], dtype=np.float32))
    codes = DeltaTable(data["codes"]).to_pandas()
    codes["sim"] = codes["doc_id"].map(sims)
    thr = {
        c: np.sort(g["sim"].to_numpy())[quality_rank(P, len(g)) - 1]
        for c, g in codes.groupby("bucket2")
    }
    man = _manifest(str(tmp_path / "m"))
    assert (man["doc_id"].map(sims) >= man["stage2_bucket"].map(thr)).all()
    assert man["repeats"].max() <= 2

    # the sample leans towards the target: more similar than a random sample
    code, _, err = run(
        capsys, "sample", *[a if a != f"target-top:{P}" else "random" for a in common],
        "--out", str(tmp_path / "r"),
    )  # fmt: skip
    assert code == 0, err
    rand = _manifest(str(tmp_path / "r"))

    def mean_sim(m) -> float:
        tok = m["repeats"] * m["tokens"]
        return float((m["doc_id"].map(sims) * tok).sum() / tok.sum())

    assert mean_sim(man) > mean_sim(rand) + 0.05

    # plan JSON round trip: hermes sample --plan gives the same manifest
    code, _, err = run(capsys, "plan", *common, "--out", str(tmp_path / "plan.json"))
    assert code == 0, err
    code, _, err = run(
        capsys, "sample", "--table", data["codes"], "--plan", str(tmp_path / "plan.json"),
        "--out", str(tmp_path / "m2"),
    )  # fmt: skip
    assert code == 0, err
    assert _manifest(str(tmp_path / "m2")).equals(man)

    # the API: same centroids, same scores, same manifest, whatever the partitioning
    from hermes_spark.sampling.planner import plan_mixture
    from hermes_spark.sampling.select import sample

    cb = Codebook.load(data["cb"])
    store = get_store(spark)
    target = target_centroids(spark.read.parquet(data["target"]), cb, embedding_col="emb")
    assert np.array_equal(target.centroids, np.asarray(tt["centroids"], dtype=np.float32))
    emb = store.read(data["codes"] + "_embeddings").repartition(3)
    codes_df = store.read(data["codes"]).repartition(7)  # other partitions than the CLI's
    scored = with_target_similarity(codes_df, target, cb, VectorSource(embeddings=emb))
    assert SIM_COL in scored.columns
    plan = plan_mixture(
        None, codes_df=scored, budget_tokens=BUDGET, weights="proportional",
        stage2=f"target-top:{P}", max_epochs=2, seed=4, levels=cb.levels, target=target,
    )  # fmt: skip
    assert plan.settings["target_top"]["k"] == 8
    api = sample(scored, plan).toPandas().sort_values("doc_id").reset_index(drop=True)
    assert api[list(man.columns)].equals(man)


def test_target_top_vector_sources(spark, stored, shared_codes, tmp_path, capsys):
    """Without an embeddings table the corpus supplies the vectors (its --embedding-col, or
    a capped re-embedding of its text); with neither, exit 2 saying what to run."""
    common = [
        "--table", shared_codes["codes"], "--budget-tokens", "50000", "--weights",
        "proportional", "--stage2", f"target-top:{P}", "--codebook", shared_codes["cb"],
        "--target", stored["target"], "--target-embedding-col", "emb", "--max-epochs", "2",
    ]  # fmt: skip
    code, _, err = run(capsys, "plan", *common)
    assert_clean_error(code, err, "--store-embeddings", "--input")
    code, _, err = run(
        capsys, "plan", *common, "--input", shared_codes["corpus"], "--target-max-embed-docs",
        "100",
    )  # fmt: skip
    assert_clean_error(code, err, "re-embed 3,000 documents", "--store-embeddings")
    out = Path(tmp_path / "plan.json")
    code, _, err = run(
        capsys, "plan", *common, "--input", shared_codes["corpus"], "--embedding-col", "emb",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    plan = json.loads(out.read_text())
    assert plan["settings"]["target_top"]["vectors"]["kind"] == "corpus"
    assert plan["info"]["target_top"]["docs_without_similarity"] == 0
    code, _, err = run(capsys, "plan", *common[:-6], "--max-epochs", "2")
    assert_clean_error(code, err, "--target PATH")
