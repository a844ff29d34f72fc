"""Tests of the LST, the residual quantiser and the codebook artifact (numpy only, no Spark)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_spark.errors import ArtifactError, InvalidConfigError, InvalidInputError
from hermes_spark.quantize import rvq as rvq_mod
from hermes_spark.quantize.codebook import (
    ARRAYS_FILE,
    FORMAT_VERSION,
    METADATA_FILE,
    Codebook,
    fit_codebook,
)
from hermes_spark.quantize.lst import LST
from hermes_spark.quantize.options import QuantizerOptions
from hermes_spark.quantize.rvq import RVQ, fit_rvq

DIM = 24
LEVELS = (16, 16, 8)
MODEL = {
    "name": "test/mini",
    "revision": None,
    "dim": DIM,
    "max_seq_length": 128,
    "batch_size": 32,
    "normalize": True,
}


def clustered(n: int, dim: int, n_clusters: int, seed: int, noise: float = 0.15) -> np.ndarray:
    """Unit-norm rows drawn around ``n_clusters`` random directions."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(n_clusters, size=n)] + noise * rng.standard_normal((n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered(3000, DIM, 40, seed=1)


@pytest.fixture(scope="module")
def fitted(data: np.ndarray) -> tuple[RVQ, dict]:
    return fit_rvq(data, LEVELS, seed=0, n_iter=15)


@pytest.fixture(scope="module")
def book(data: np.ndarray) -> Codebook:
    return fit_codebook(data, LEVELS, seed=3, lst_dim=16, model=MODEL, n_iter=10)


# ----------------------------------------------------------------------------- RVQ encode


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    levels=st.lists(st.integers(1, 12), min_size=1, max_size=4),
)
def test_decode_matches_quantised_vector_and_qerr(seed: int, n: int, levels: list[int]) -> None:
    rng = np.random.default_rng(seed)
    dim = 5
    model = RVQ(tuple(rng.standard_normal((k, dim)).astype(np.float32) for k in levels))
    x = rng.standard_normal((n, dim)).astype(np.float32)
    codes, qerr = model.encode(x)
    assert codes.shape == qerr.shape == (n, len(levels))
    assert codes.dtype == np.int32 and qerr.dtype == np.float32
    for k, size in enumerate(levels):
        assert codes[:, k].min() >= 0 and codes[:, k].max() < size
        residual = x.astype(np.float64) - model.decode(codes, n_levels=k + 1)
        np.testing.assert_allclose(
            np.square(residual).sum(axis=1), qerr[:, k], rtol=1e-4, atol=1e-4
        )
    np.testing.assert_array_equal(model.decode(codes), model.decode(codes, n_levels=len(levels)))
    np.testing.assert_array_equal(model.decode(codes, n_levels=0), np.zeros_like(x))


def test_greedy_each_stage_is_argmin_of_its_residual(data: np.ndarray, fitted) -> None:
    model, _ = fitted
    codes, _ = model.encode(data)
    residual = data.astype(np.float64)
    for k, book in enumerate(model.codebooks):
        dists = np.square(residual[:, None, :] - book[None, :, :].astype(np.float64)).sum(-1)
        chosen = dists[np.arange(len(data)), codes[:, k]]
        # float32 search may only differ from the exact argmin on near-ties
        assert np.all(chosen <= dists.min(axis=1) + 1e-5)
        assert np.mean(codes[:, k] == dists.argmin(axis=1)) > 0.999
        residual -= book[codes[:, k]]


def test_encode_chunking_does_not_change_results(
    data: np.ndarray, fitted, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = fitted
    codes, qerr = model.encode(data)
    monkeypatch.setattr(rvq_mod, "_MAX_BLOCK_ELEMS", 7 * max(LEVELS))  # 7-row chunks
    assert rvq_mod._chunk_rows(max(LEVELS), DIM) < 10
    codes_c, qerr_c = model.encode(data)
    np.testing.assert_array_equal(codes, codes_c)
    np.testing.assert_allclose(qerr, qerr_c, rtol=1e-6, atol=1e-7)


def test_decode_rejects_out_of_range_codes(fitted) -> None:
    model, _ = fitted
    bad = np.zeros((3, len(LEVELS)), dtype=np.int32)
    bad[1, 2] = LEVELS[2]
    with pytest.raises(InvalidInputError, match="level 3"):
        model.decode(bad)
    with pytest.raises(InvalidInputError):
        model.decode(np.zeros((3, 3)), n_levels=4)


def test_encode_rejects_wrong_width(fitted) -> None:
    model, _ = fitted
    with pytest.raises(InvalidInputError, match="dimension"):
        model.encode(np.zeros((2, DIM + 1), dtype=np.float32))


# ----------------------------------------------------------------------------- RVQ fit


def test_relative_mse_strictly_falls_per_stage(data: np.ndarray, fitted) -> None:
    model, report = fitted
    rel = [s["relative_mse"] for s in report["stages"]]
    assert [s["level"] for s in report["stages"]] == [1, 2, 3]
    assert [s["size"] for s in report["stages"]] == list(LEVELS)
    assert 1.0 > rel[0] > rel[1] > rel[2] > 0.0
    # 40 tight clusters with K=16 at stage 1: well under the 1-cluster error
    assert rel[0] < 0.7
    # report agrees with an independent computation from encode/decode
    codes, qerr = model.encode(data)
    total = np.square(data.astype(np.float64) - data.mean(axis=0)).sum()
    np.testing.assert_allclose(qerr.sum(axis=0, dtype=np.float64) / total, rel, rtol=1e-4)
    for stage in report["stages"]:
        obj = stage["objective"]
        assert len(obj) == 15
        assert obj[-1] <= obj[0]
        assert 1.0 <= stage["perplexity"] <= stage["size"]
        assert stage["imbalance"] >= 1.0 - 1e-9
        assert stage["dead_codes"] == stage["size"] - len(np.unique(codes[:, stage["level"] - 1]))
    assert report["fit_seconds"] > 0


def test_same_seed_same_model_different_seed_differs(data: np.ndarray, fitted) -> None:
    model, _ = fitted
    again, _ = fit_rvq(data, LEVELS, seed=0, n_iter=15)
    other, _ = fit_rvq(data, LEVELS, seed=1, n_iter=15)
    for a, b in zip(model.codebooks, again.codebooks, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.encode(data)[0], again.encode(data)[0])
    assert any(
        not np.array_equal(a, b) for a, b in zip(model.codebooks, other.codebooks, strict=True)
    )


def test_subsampling_caps_training_rows(data: np.ndarray) -> None:
    _, report = fit_rvq(data, (8, 4), seed=0, n_iter=3, max_points_per_centroid=20)
    assert [s["train_rows"] for s in report["stages"]] == [160, 80]
    _, full = fit_rvq(data, (8,), seed=0, n_iter=3, max_points_per_centroid=10_000)
    assert full["stages"][0]["train_rows"] == len(data)


def test_dead_codes_are_reseeded_by_splitting() -> None:
    rng = np.random.default_rng(5)
    distinct = rng.standard_normal((10, 6)).astype(np.float32)
    x = distinct[rng.integers(10, size=500)]
    model, report = fit_rvq(x, (32,), seed=0, n_iter=5)
    stage = report["stages"][0]
    assert stage["splits"] > 0
    assert stage["dead_codes"] >= 32 - 10
    assert stage["relative_mse"] < 1e-6  # every distinct point still gets its own centroid
    assert model.encode(x)[0].max() < 32


def test_split_recovers_from_collapsed_init() -> None:
    rng = np.random.default_rng(2)
    blob = np.array([[5.0, 0.0], [-5.0, 0.0]])
    x = (blob[rng.integers(2, size=400)] + 0.1 * rng.standard_normal((400, 2))).astype(np.float32)
    init = np.zeros((2, 2), dtype=np.float32)  # identical centroids: one is empty at once
    centroids, objective, splits = rvq_mod.kmeans(x, 2, rng, n_iter=10, init=init)
    assert splits >= 1
    assert sorted(np.round(centroids[:, 0]).tolist()) == [-5.0, 5.0]
    assert objective[-1] < 0.05 * objective[0]


def test_too_few_points_is_a_config_error() -> None:
    x = clustered(40, 8, 4, seed=0)
    with pytest.raises(InvalidConfigError, match=r"64,64,32 need at least 64 .* got 40"):
        fit_rvq(x, (64, 64, 32))
    with pytest.raises(InvalidConfigError, match="need at least 64"):
        fit_codebook(x, (64, 64, 32), seed=0, lst_dim=None, model={**MODEL, "dim": 8})


@pytest.mark.parametrize("levels", [(), (0, 4), (4, -1), (2.5,), ("8",)])
def test_bad_levels_are_config_errors(data: np.ndarray, levels: tuple) -> None:
    with pytest.raises(InvalidConfigError, match="levels"):
        fit_rvq(data, levels)


# ----------------------------------------------------------------------------- LST


def test_lst_half_whitening_takes_square_root_of_variances() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((5000, 6)) * np.array([8.0, 4.0, 2.0, 1.0, 0.5, 0.25])).astype(
        np.float32
    )
    full = np.cov(LST.fit(x, renormalize=False, power=0.0).transform(x), rowvar=False)
    half = np.cov(LST.fit(x, renormalize=False, power=0.5).transform(x), rowvar=False)
    np.testing.assert_allclose(np.diag(half), np.sqrt(np.diag(full)), rtol=1e-3)
    assert np.abs(half - np.diag(np.diag(half))).max() < 1e-3
    with pytest.raises(InvalidConfigError, match="power"):
        LST.fit(x, power=1.5)


def test_lst_whitens_then_renormalises() -> None:
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((12, 12)) * np.linspace(3.0, 0.5, 12)
    x = (rng.standard_normal((4000, 12)) @ mix + 2.0).astype(np.float32)

    raw = LST.fit(x, renormalize=False, power=1.0)
    z = raw.transform(x)
    assert z.dtype == np.float32 and z.shape == (4000, 12)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(12), atol=2e-3)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(raw.components.T @ raw.components, np.eye(12), atol=1e-5)

    unit = LST.fit(x, out_dim=5, power=1.0)
    y = unit.transform(x)
    assert (unit.in_dim, unit.out_dim) == (12, 5) and y.shape == (4000, 5)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    # renormalisation only rescales the whitened rows of the same leading directions
    z5 = z[:, :5] / np.linalg.norm(z[:, :5], axis=1, keepdims=True)
    np.testing.assert_allclose(y, z5, atol=1e-4)
    assert unit.params() == {
        "kind": "pca_whiten",
        "in_dim": 12,
        "out_dim": 5,
        "eps": 1e-6,
        "renormalize": True,
        "whiten_power": 1.0,
    }


def test_lst_round_trip_and_errors() -> None:
    x = clustered(500, 10, 5, seed=4)
    lst = LST.fit(x, out_dim=6)
    again = LST.from_arrays(lst.to_arrays(), renormalize=True)
    np.testing.assert_array_equal(lst.transform(x), again.transform(x))
    with pytest.raises(InvalidConfigError, match="out_dim"):
        LST.fit(x, out_dim=11)
    with pytest.raises(InvalidInputError, match="dimension 9"):
        lst.transform(x[:, :9])
    with pytest.raises(InvalidInputError, match="NaN"):
        lst.transform(np.full((2, 10), np.nan, dtype=np.float32))
    with pytest.raises(ArtifactError, match="scale"):
        LST.from_arrays({"mean": lst.mean, "components": lst.components}, renormalize=True)


# ----------------------------------------------------------------------------- codebook


def test_codebook_version_is_deterministic(data: np.ndarray, book: Codebook) -> None:
    assert book.version.startswith("cb-") and len(book.version) == 15
    same = fit_codebook(data, LEVELS, seed=3, lst_dim=16, model=MODEL, n_iter=10)
    other = fit_codebook(data, LEVELS, seed=4, lst_dim=16, model=MODEL, n_iter=10)
    renamed = fit_codebook(
        data, LEVELS, seed=3, lst_dim=16, model={**MODEL, "name": "x"}, n_iter=10
    )
    assert same.version == book.version
    assert other.version != book.version
    assert renamed.version != book.version
    np.testing.assert_array_equal(same.assign(data)[0], book.assign(data)[0])


def test_codebook_assign_and_metrics(data: np.ndarray, book: Codebook) -> None:
    codes, qerr = book.assign(data)
    expected = book.rvq.encode(book.lst.transform(data))
    np.testing.assert_array_equal(codes, expected[0])
    np.testing.assert_array_equal(qerr, expected[1])
    assert book.levels == LEVELS
    assert codes.dtype == np.int32 and qerr.dtype == np.float32
    assert np.all((codes >= 0) & (codes < np.array(LEVELS)))
    metrics = book.fit["metrics"]
    assert len(metrics["stages"]) == 3
    assert metrics["lst"]["out_dim"] == 16 and 0.0 < metrics["lst"]["explained_variance"] <= 1.0
    assert book.fit["sample_size"] == len(data) and book.fit["seed"] == 3


def test_fit_codebook_rejects_mismatched_model_dim(data: np.ndarray) -> None:
    with pytest.raises(InvalidConfigError, match="dim 32"):
        fit_codebook(data, LEVELS, seed=0, lst_dim=None, model={**MODEL, "dim": 32})


def test_save_load_round_trip(tmp_path: Path, data: np.ndarray, book: Codebook) -> None:
    target = tmp_path / "nested" / "cb"
    book.save(target)
    assert sorted(p.name for p in target.iterdir()) == [ARRAYS_FILE, METADATA_FILE]
    loaded = Codebook.load(target)
    assert loaded.version == book.version
    assert loaded.levels == book.levels and loaded.model == book.model
    for got, want in zip(loaded.assign(data), book.assign(data), strict=True):
        np.testing.assert_array_equal(got, want)
    meta = json.loads((target / METADATA_FILE).read_text())
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["codebook_version"] == book.version
    assert meta["dim"] == DIM and meta["levels"] == list(LEVELS)
    assert meta["max_seq_length"] == 128 and meta["normalization"] == "l2"
    assert meta["sample_size"] == len(data) and meta["seed"] == 3
    assert meta["lst"]["out_dim"] == 16 and "created_at" in meta
    assert meta["fit"]["metrics"]["stages"][0]["relative_mse"] > 0

    # saving over an existing artifact replaces it and leaves no temp dirs behind
    book.save(target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["cb"]
    # created_at and metrics are not part of the content hash
    meta["created_at"] = "1999-01-01T00:00:00+00:00"
    meta["fit"]["metrics"]["fit_seconds"] = 123.0
    (target / METADATA_FILE).write_text(json.dumps(meta))
    assert Codebook.load(target).version == book.version


def _edit_meta(root: Path, **changes: object) -> None:
    meta = json.loads((root / METADATA_FILE).read_text())
    meta.update(changes)
    (root / METADATA_FILE).write_text(json.dumps(meta))


def _truncate_arrays(root: Path) -> None:
    blob = (root / ARRAYS_FILE).read_bytes()
    (root / ARRAYS_FILE).write_bytes(blob[: len(blob) // 2])


def _flip_array_byte(root: Path) -> None:
    blob = bytearray((root / ARRAYS_FILE).read_bytes())
    blob[-5] ^= 0x40  # inside the last tensor's data: still a valid file
    (root / ARRAYS_FILE).write_bytes(bytes(blob))


CORRUPTIONS = {
    "missing dir": (lambda root: __import__("shutil").rmtree(root), "not a directory"),
    "deleted metadata": (lambda root: (root / METADATA_FILE).unlink(), "missing"),
    "deleted arrays": (lambda root: (root / ARRAYS_FILE).unlink(), "missing"),
    "garbled metadata": (
        lambda root: (root / METADATA_FILE).write_text("{not json"),
        "unreadable",
    ),
    "wrong format version": (
        lambda root: _edit_meta(root, format_version=FORMAT_VERSION + 1),
        "format_version",
    ),
    "truncated arrays": (_truncate_arrays, "corrupt"),
    "tampered array bytes": (_flip_array_byte, "hashes to"),
    "edited model name": (
        lambda root: _edit_meta(root, model={**MODEL, "name": "evil/model"}),
        "hashes to",
    ),
    "edited levels": (lambda root: _edit_meta(root, levels=[16, 16, 4]), "do not match|shape"),
    "edited dim": (lambda root: _edit_meta(root, dim=DIM + 1), "disagrees"),
    "edited version": (lambda root: _edit_meta(root, codebook_version="cb-000000000000"), "hash"),
    "no levels": (lambda root: _edit_meta(root, levels=None), "levels"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_artifacts_are_refused(tmp_path: Path, book: Codebook, name: str) -> None:
    root = tmp_path / "cb"
    book.save(root)
    assert Codebook.load(root).version == book.version
    corrupt, message = CORRUPTIONS[name]
    corrupt(root)
    with pytest.raises(ArtifactError, match=message) as info:
        Codebook.load(root)
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- options


def test_every_option_changes_the_version_and_survives_save_load(
    tmp_path: Path, data: np.ndarray, book: Codebook
) -> None:
    variants = {
        "none": QuantizerOptions(lst="none"),
        "power1": QuantizerOptions(whiten_power=1.0),
        "power0": QuantizerOptions(whiten_power=0.0),
        "opq": QuantizerOptions(rotation="opq", opq_iters=2),
        "refine": QuantizerOptions(refine_iters=2),
        "balance": QuantizerOptions(balance=0.5),
        "spherical": QuantizerOptions(kmeans="spherical"),
    }
    small = data[:800]
    base = fit_codebook(small, LEVELS, seed=3, lst_dim=16, model=MODEL, n_iter=4)
    versions = {"default": base.version}
    for name, opts in variants.items():
        cb = fit_codebook(small, LEVELS, seed=3, lst_dim=16, model=MODEL, n_iter=4, options=opts)
        assert cb.quantizer == opts.params()
        cb.save(tmp_path / name)
        loaded = Codebook.load(tmp_path / name)
        assert loaded.version == cb.version and loaded.quantizer == opts.params()
        meta = json.loads((tmp_path / name / METADATA_FILE).read_text())
        assert meta["quantizer"] == opts.params()
        for got, want in zip(loaded.assign(small), cb.assign(small), strict=True):
            np.testing.assert_array_equal(got, want)
        versions[name] = cb.version
    assert len(set(versions.values())) == len(versions)
    # the options are hashed, not only the arrays: same arrays, other options, other id
    relabelled = Codebook(
        lst=book.lst, rvq=book.rvq, model=book.model, fit=book.fit, quantizer={"balance": 1.0}
    )
    assert relabelled.version != book.version


def test_lst_none_is_identity_and_opq_rotation_is_orthogonal(data: np.ndarray) -> None:
    data = data[:1000]
    cb = fit_codebook(
        data,
        LEVELS,
        seed=0,
        lst_dim=16,
        model=MODEL,
        n_iter=3,
        options=QuantizerOptions(lst="none"),
    )
    assert cb.lst.params()["kind"] == "none" and cb.lst.out_dim == DIM
    np.testing.assert_allclose(cb.lst.transform(data), data, atol=1e-6)
    opq = fit_codebook(
        data,
        LEVELS,
        seed=0,
        lst_dim=16,
        model=MODEL,
        n_iter=4,
        options=QuantizerOptions(rotation="opq", opq_iters=3),
    )
    rot = opq.lst.rotation.astype(np.float64)
    np.testing.assert_allclose(rot.T @ rot, np.eye(16), atol=1e-5)
    assert opq.lst.params()["rotation"] == "opq"
    assert len(opq.fit["metrics"]["opq"]["relative_mse"]) == 3
    # a rotation keeps unit rows on the sphere
    np.testing.assert_allclose(np.linalg.norm(opq.lst.transform(data), axis=1), 1.0, atol=1e-5)


def test_artifact_without_quantizer_entry_keeps_its_version(
    tmp_path: Path, data: np.ndarray
) -> None:
    # artifacts written before options were recorded were fitted with shared books
    book = fit_codebook(
        data, LEVELS, seed=3, lst_dim=16, model=MODEL, n_iter=10,
        options=QuantizerOptions(stage_books="shared"),
    )  # fmt: skip
    old = Codebook(lst=book.lst, rvq=book.rvq, model=book.model, fit=book.fit)
    old.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / METADATA_FILE).read_text())
    del meta["quantizer"]  # as written before options were recorded
    (tmp_path / "old" / METADATA_FILE).write_text(json.dumps(meta))
    loaded = Codebook.load(tmp_path / "old")
    assert loaded.quantizer is None and loaded.version == old.version


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"lst": "ica"}, "lst"),
        ({"rotation": "random"}, "rotation"),
        ({"kmeans": "cosine"}, "kmeans"),
        ({"whiten_power": 2.0}, "whiten_power"),
        ({"balance": -0.1}, "balance"),
        ({"balance": 1.5}, "balance"),
        ({"refine_iters": -1}, "refine_iters"),
        ({"opq_iters": 1.5}, "opq_iters"),
    ],
)
def test_bad_options_are_config_errors(kwargs: dict, key: str) -> None:
    with pytest.raises(InvalidConfigError, match=f"fit.{key}"):
        QuantizerOptions(**kwargs)


def skewed_mixture(n: int, seed: int) -> np.ndarray:
    """Half of the rows in one tighter blob, the rest spread over 15 looser clusters."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((16, 12))
    which = np.where(rng.random(n) < 0.5, 0, rng.integers(1, 16, size=n))
    noise = np.where(which[:, None] == 0, 0.3, 0.5)
    x = centres[which] + noise * rng.standard_normal((n, 12))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_balanced_training_lowers_imbalance_within_an_mse_bound() -> None:
    """Sinkhorn balance at strength 0.5 on a skewed mixture: the imbalance of the greedy
    stage-1 codes of held-out rows falls by at least 30% (measured: 3.28 -> 1.87) while the
    relative MSE rises by at most 15% (measured: +10.5%)."""
    x = skewed_mixture(8000, seed=0)
    train, held = x[:4000], x[4000:]
    plain, _ = fit_rvq(train, (12,), seed=0, n_iter=20)
    balanced, report = fit_rvq(train, (12,), seed=0, n_iter=20, balance=0.5)

    def score(model: RVQ) -> tuple[float, float]:
        codes, qerr = model.encode(held)
        counts = np.bincount(codes[:, 0], minlength=12).astype(float)
        imb = (counts > 0).sum() * np.square(counts).sum() / counts.sum() ** 2
        total = np.square(held - held.mean(axis=0)).sum()
        return float(imb), float(qerr[:, 0].sum() / total)

    imb_plain, mse_plain = score(plain)
    imb_bal, mse_bal = score(balanced)
    assert imb_bal <= 0.7 * imb_plain
    assert mse_bal <= 1.15 * mse_plain
    assert report["stages"][0]["dead_codes"] == 0


def test_refinement_lowers_full_depth_error_and_keeps_greedy_prefixes(data: np.ndarray) -> None:
    base, _ = fit_rvq(data, LEVELS, seed=0, n_iter=10)
    refined, report = fit_rvq(data, LEVELS, seed=0, n_iter=10, refine_iters=3)
    history = report["refine"]
    assert history[0] == pytest.approx(
        base.encode(data)[1][:, -1].sum(dtype=np.float64)
        / np.square(data.astype(np.float64) - data.mean(axis=0)).sum(),
        rel=1e-5,
    )
    assert min(history[1:]) < history[0]  # at least one round was kept
    codes, _ = refined.encode(data)
    assert report["stages"][-1]["relative_mse"] < history[0]
    # encoding is still greedy: stage 1 is the nearest stage-1 centroid
    d1 = np.square(data[:, None, :] - refined.codebooks[0][None]).sum(-1)
    assert np.mean(codes[:, 0] == d1.argmin(axis=1)) > 0.999


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(40, 200),
    levels=st.lists(st.integers(2, 8), min_size=1, max_size=3),
    spherical=st.booleans(),
)
def test_fitted_quantizer_invariants(seed: int, n: int, levels: list[int], spherical: bool) -> None:
    """Codes in range, mean qerr non-increasing stage by stage, prefix decodes consistent.

    Spherical stage-1 centroids sit on the unit sphere, so the first residual may exceed
    the input energy (``|x - c|^2 = 2 - 2 cos``): there only later stages must not add.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    model, _ = fit_rvq(x, levels, seed=seed, n_iter=5, spherical=spherical)
    codes, qerr = model.encode(x)
    assert np.all((codes >= 0) & (codes < np.array(levels)))
    energy = np.square(x.astype(np.float64)).sum(axis=1).mean()
    means = list(qerr.mean(axis=0, dtype=np.float64))
    if not spherical:
        means.insert(0, energy)
    for before, after in itertools.pairwise(means):
        assert after <= before * (1 + 1e-3) + 1e-6
    for k in range(1, len(levels) + 1):
        prefix = model.decode(codes[:, :k], n_levels=k)
        np.testing.assert_allclose(prefix, model.decode(codes, n_levels=k), atol=1e-6)
        # the residual after k stages is what the next stage was chosen against
        if k < len(levels):
            res = x - prefix
            d = np.square(res[:, None, :] - model.codebooks[k][None]).sum(-1)
            chosen = d[np.arange(n), codes[:, k]]
            assert np.all(chosen <= d.min(axis=1) + 1e-4)
