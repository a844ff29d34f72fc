"""The numpy metrics of ``hermes evaluate`` against scikit-learn, and the baselines."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from hermes_spark.errors import InvalidInputError
from hermes_spark.quantize import baselines as bl
from hermes_spark.quantize import metrics as m
from hermes_spark.quantize.codebook import fit_codebook
from hermes_spark.quantize.scoring import score_codebook
from tests.helpers import labelled_vectors

labels_st = st.lists(st.integers(0, 6), min_size=2, max_size=80)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_label_metrics_agree_with_sklearn(data) -> None:
    truth = data.draw(labels_st)
    pred = data.draw(st.lists(st.integers(0, 9), min_size=len(truth), max_size=len(truth)))
    got = m.label_scores(np.array(truth), np.array(pred))
    assert got["nmi"] == pytest.approx(skm.normalized_mutual_info_score(truth, pred), abs=1e-9)
    assert got["ari"] == pytest.approx(skm.adjusted_rand_score(truth, pred), abs=1e-9)
    hom, comp, _ = skm.homogeneity_completeness_v_measure(truth, pred)
    assert got["homogeneity"] == pytest.approx(hom, abs=1e-9)
    assert got["completeness"] == pytest.approx(comp, abs=1e-9)


def test_label_metrics_accept_strings_and_perfect_match() -> None:
    truth = np.array(["a", "b", "a", "c", "b", "c"])
    pred = np.array([7, 3, 7, 1, 3, 1])
    assert m.label_scores(truth, pred) == pytest.approx(
        {"nmi": 1.0, "ari": 1.0, "homogeneity": 1.0, "completeness": 1.0}
    )
    with pytest.raises(InvalidInputError, match="differ in length"):
        m.label_scores(truth, pred[:3])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(8, 120), k=st.integers(2, 7))
def test_geometric_metrics_agree_with_sklearn(seed: int, n: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5))
    labels = rng.integers(0, k, size=n)
    used = len(np.unique(labels))
    if not 2 <= used <= n - 1:
        assert m.silhouette_cosine(x, labels) is None
        return
    sil = skm.silhouette_score(x, labels, metric="cosine")
    assert m.silhouette_cosine(x, labels) == pytest.approx(sil, abs=1e-7)
    assert m.davies_bouldin(x, labels) == pytest.approx(
        skm.davies_bouldin_score(x, labels), rel=1e-6
    )
    assert m.calinski_harabasz(x, labels) == pytest.approx(
        skm.calinski_harabasz_score(x, labels), rel=1e-6
    )


def test_silhouette_blocks_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    x, labels = labelled_vectors(300, 8, clusters=5, seed=3)
    whole = m.silhouette_cosine(x, labels)
    monkeypatch.setattr(m, "_SIL_BLOCK", 7)
    assert m.silhouette_cosine(x, labels) == pytest.approx(whole, abs=1e-12)
    assert whole > 0.3  # planted clusters are well separated


def test_code_usage_and_collisions() -> None:
    cells = np.array([0, 0, 0, 1, 2, 2, 5])
    usage = m.code_usage(cells, cells_total=8)
    counts = np.array([3, 1, 2, 1])
    p = counts / counts.sum()
    assert usage["cells_nonempty"] == 4 and usage["dead"] == 4
    assert usage["perplexity"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert usage["imbalance"] == pytest.approx(4 * (counts**2).sum() / 49)
    assert usage["max_share"] == pytest.approx(3 / 7)
    assert m.collision_rate(cells) == pytest.approx(5 / 7)  # rows 0-2 and 4-5 share a cell
    assert m.collision_rate(np.arange(10)) == 0.0
    balanced = m.code_usage(np.repeat(np.arange(4), 5), 4)
    assert balanced["imbalance"] == pytest.approx(1.0) and balanced["dead"] == 0


def test_prefix_cells_pack_like_spec_buckets() -> None:
    codes = np.array([[1, 2, 3], [0, 0, 1]])
    sizes = (4, 5, 6)
    np.testing.assert_array_equal(m.prefix_cells(codes, sizes, 1), [1, 0])
    np.testing.assert_array_equal(m.prefix_cells(codes, sizes, 2), [1 * 5 + 2, 0])
    np.testing.assert_array_equal(m.prefix_cells(codes, sizes, 3), [(1 * 5 + 2) * 6 + 3, 1])


def test_relative_mse_is_one_for_the_mean_and_zero_for_itself() -> None:
    x, _ = labelled_vectors(200, 6, seed=1)
    assert m.relative_mse(x, np.broadcast_to(x.mean(axis=0), x.shape)) == pytest.approx(1.0)
    assert m.relative_mse(x, x) == 0.0


# ----------------------------------------------------------------------------- baselines


@pytest.fixture(scope="module")
def split() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, labels = labelled_vectors(3000, 16, clusters=8, seed=4)
    return x[:1500], x[1500:], labels[1500:]


def _random_assignment_mse(x: np.ndarray, k: int, seed: int) -> float:
    """Relative MSE of assigning each row to a random one of ``k`` cells (cell means)."""
    cells = np.random.default_rng(seed).integers(0, k, size=len(x))
    recon = np.zeros_like(x, dtype=np.float64)
    for c in np.unique(cells):
        recon[cells == c] = x[cells == c].mean(axis=0)
    return m.relative_mse(x, recon)


@pytest.mark.parametrize("method", ["kmeans", "bisecting"])
def test_flat_baselines_beat_random_assignment(split, method: str) -> None:
    fit_x, eval_x, truth = split
    fn = bl.flat_kmeans if method == "kmeans" else bl.bisecting_kmeans
    fitted = fn(fit_x, eval_x, 8, 1, seed=0)
    assert fitted.k == (8,) and fitted.levels == (1,) and fitted.fit_seconds > 0
    (cells,), (recon,) = fitted.cells, fitted.reconstruction
    assert cells.shape == (len(eval_x),) and cells.max() < 8
    rel = m.relative_mse(eval_x, recon)
    assert rel < 0.5 * _random_assignment_mse(eval_x, 8, seed=1)
    assert m.normalized_mutual_info(truth, cells) > 0.8


def test_faiss_residual_baseline_prefixes(split) -> None:
    fit_x, eval_x, _ = split
    fitted = bl.faiss_residual(fit_x, eval_x, (8, 4, 2), seed=0)
    assert fitted is not None and fitted.levels == (1, 2, 3) and fitted.k == (8, 32, 64)
    errs = [m.relative_mse(eval_x, r) for r in fitted.reconstruction]
    assert errs[0] > errs[1] > errs[2]
    assert errs[0] < 0.5 * _random_assignment_mse(eval_x, 8, seed=2)
    # prefixes nest: the level-2 cell determines the level-1 cell
    np.testing.assert_array_equal(fitted.cells[1] // 4, fitted.cells[0])
    assert bl.faiss_residual(fit_x, eval_x, (6, 4), seed=0) is None


def test_score_codebook_reports_every_method_and_level(split) -> None:
    fit_x, eval_x, truth = split
    model = {"name": "t", "dim": 16, "max_seq_length": 64}
    book = fit_codebook(fit_x, (8, 4, 2), seed=0, lst_dim=None, model=model, n_iter=10)
    report = score_codebook(book, fit_x, eval_x, {"cluster": truth}, seed=0)
    rows = {(r["method"], r["level"]): r for r in report["methods"]}
    assert set(rows) == {
        ("hermes", 1),
        ("hermes", 2),
        ("hermes", 3),
        ("kmeans", 1),
        ("kmeans", 2),
        ("bisecting_kmeans", 1),
        ("bisecting_kmeans", 2),
        ("faiss_rq", 1),
        ("faiss_rq", 2),
        ("faiss_rq", 3),
    }
    assert report["baseline_fit_rows"] == 1500 and report["eval_rows"] == 1500
    ours = [rows[("hermes", k)]["relative_mse"] for k in (1, 2, 3)]
    assert ours[0] > ours[1] > ours[2]
    # an independent check of our number: encode, decode, compare
    z = book.lst.transform(eval_x)
    _, qerr = book.rvq.encode(z)
    total = np.square(z.astype(np.float64) - z.mean(axis=0)).sum()
    assert ours[2] == pytest.approx(qerr[:, 2].sum(dtype=np.float64) / total, rel=1e-4)
    for row in report["methods"]:
        assert 0.0 < row["relative_mse"] < 1.0
        assert row["cells_nonempty"] + row["dead"] == row["k"]
        assert 0.0 <= row["collision_rate"] <= 1.0
        assert set(row["labels"]["cluster"]) == {"nmi", "ari", "homogeneity", "completeness"}
    assert rows[("hermes", 1)]["labels"]["cluster"]["nmi"] > 0.8
    assert rows[("kmeans", 2)]["k"] == 32
    with pytest.raises(InvalidInputError, match="unknown baseline"):
        score_codebook(book, fit_x, eval_x, baselines=("dbscan",))


# ------------------------------------------------------------------- both spaces


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(6, 90), k=st.integers(1, 8))
def test_cell_mse_is_the_kmeans_objective_of_the_partition(seed: int, n: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4))
    cells = rng.integers(0, k, size=n)
    # scikit-learn: inertia of a KMeans whose centres are the partition's own means
    within = sum(np.square(x[cells == c] - x[cells == c].mean(axis=0)).sum() for c in set(cells))
    total = np.square(x - x.mean(axis=0)).sum()
    assert m.cell_mse(x, cells) == pytest.approx(within / total, rel=1e-9)
    if 2 <= len(set(cells)) <= n - 1:  # the CH identity ties it to scikit-learn's score
        ch = skm.calinski_harabasz_score(x, cells)
        ratio = (total - within) / within * (n - len(set(cells))) / (len(set(cells)) - 1)
        assert ch == pytest.approx(ratio, rel=1e-6)


def test_score_codebook_reports_partition_metrics_in_both_spaces(split) -> None:
    """Every row carries cell MSE and the validity scores in the model's and the LST space,
    each equal to scikit-learn / numpy on the vectors of that space."""
    fit_x, eval_x, _ = split
    model = {"name": "t", "dim": 16, "max_seq_length": 64}
    book = fit_codebook(fit_x, (8, 4), seed=0, lst_dim=8, model=model, n_iter=10)
    x = eval_x[:400]
    report = score_codebook(book, fit_x, x, seed=0, baselines=("kmeans",))
    z = book.lst.transform(x)
    for row in report["methods"]:
        assert set(row["spaces"]) == {"model", "lst"}
        if row["method"] != "hermes":
            continue
        codes, _ = book.rvq.encode(z)
        cells = m.prefix_cells(codes, book.levels, row["level"])
        for space, vecs in (("model", x), ("lst", z)):
            got = row["spaces"][space]
            v = vecs.astype(np.float64)
            assert got["calinski_harabasz"] == pytest.approx(
                skm.calinski_harabasz_score(v, cells), rel=1e-5
            )
            assert got["davies_bouldin"] == pytest.approx(
                skm.davies_bouldin_score(v, cells), rel=1e-5
            )
            assert got["silhouette_cosine"] == pytest.approx(
                skm.silhouette_score(v, cells, metric="cosine"), abs=1e-6
            )
            within = sum(
                np.square(v[cells == c] - v[cells == c].mean(axis=0)).sum() for c in set(cells)
            )
            assert got["cell_mse"] == pytest.approx(
                within / np.square(v - v.mean(axis=0)).sum(), rel=1e-6
            )
        assert row["cell_mse_model"] == row["spaces"]["model"]["cell_mse"]
        assert row["silhouette_cosine"] == row["spaces"]["model"]["silhouette_cosine"]
    # the two spaces really differ (an 8-dim whitened LST of 16-dim vectors)
    ours = next(r for r in report["methods"] if r["method"] == "hermes")["spaces"]
    assert ours["model"]["cell_mse"] != pytest.approx(ours["lst"]["cell_mse"], rel=1e-3)
