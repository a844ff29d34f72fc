"""Per-parent (tree-structured) stage codebooks: greedy prefixes, fit quality, artifact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_spark.config import FitConfig
from hermes_spark.errors import ArtifactError, InvalidConfigError
from hermes_spark.quantize.codebook import METADATA_FILE, Codebook, fit_codebook
from hermes_spark.quantize.metrics import prefix_cells
from hermes_spark.quantize.options import QuantizerOptions
from hermes_spark.quantize.rvq import RVQ, fit_rvq, nearest_in_parent

MODEL = {"name": "test/mini", "dim": 12, "max_seq_length": 64}


def nested(n: int, seed: int) -> np.ndarray:
    """Unit rows with a hierarchy: 4 coarse directions, each with its own 6 sub-directions
    (so the best split of one coarse cell is not the best split of another)."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((4, 12))
    fine = 0.45 * rng.standard_normal((4, 6, 12))
    a, b = rng.integers(4, size=n), rng.integers(6, size=n)
    x = coarse[a] + fine[a, b] + 0.05 * rng.standard_normal((n, 12))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(30, 160),
    levels=st.lists(st.integers(2, 6), min_size=2, max_size=3),
    mode=st.sampled_from(["per_parent", "refined"]),
)
def test_tree_prefixes_are_true_coarse_labels(seed: int, n: int, levels: list, mode: str) -> None:
    """c1 is the nearest stage-1 centroid; each later code is the nearest codeword among
    the row's own parent's; decoding agrees with the residuals; codes stay in [0, K)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    model, report = fit_rvq(x, levels, seed=seed, n_iter=4, stage_books=mode)
    assert model.is_tree and model.levels == tuple(levels)
    assert [b.shape[0] for b in model.codebooks] == [
        int(np.prod(levels[:k])) * levels[k] for k in range(len(levels))
    ]
    codes, qerr = model.encode(x)
    assert np.all((codes >= 0) & (codes < np.array(levels)))
    d1 = np.square(x[:, None] - model.codebooks[0][None]).sum(-1)
    assert np.all(d1[np.arange(n), codes[:, 0]] <= d1.min(axis=1) + 1e-5)
    for k in range(1, len(levels)):
        residual = x - model.decode(codes, n_levels=k)
        parent = prefix_cells(codes, levels, k)
        own = model.codebooks[k].reshape(-1, levels[k], 5)[parent]  # (n, K, r)
        d = np.square(residual[:, None] - own).sum(-1)
        assert np.all(d[np.arange(n), codes[:, k]] <= d.min(axis=1) + 1e-5)
    full = x - model.decode(codes)
    np.testing.assert_allclose(np.square(full).sum(1), qerr[:, -1], rtol=1e-3, atol=1e-5)
    # the fit report's per-stage error is the encoder's
    total = np.square(x.astype(np.float64) - x.mean(axis=0)).sum()
    assert report["stages"][-1]["relative_mse"] == pytest.approx(
        qerr[:, -1].sum(dtype=np.float64) / total, rel=1e-3, abs=1e-6
    )
    # the prefix packing of SPEC is unchanged: bucket_2 // K2 == c1
    np.testing.assert_array_equal(prefix_cells(codes, levels, 2) // levels[1], codes[:, 0])


def test_per_parent_books_beat_shared_ones_on_nested_clusters() -> None:
    """Each coarse cell has its own sub-structure: per-parent codebooks find it, one shared
    residual codebook cannot; level 1 is identical across the three options."""
    both = nested(6000, seed=1)  # one hierarchy, two disjoint halves
    fit_x, held_x = both[:4000], both[4000:]
    errs, firsts = {}, {}
    for mode in ("shared", "per_parent", "refined"):
        model, report = fit_rvq(fit_x, (4, 6), seed=0, n_iter=15, stage_books=mode)
        codes, qerr = model.encode(held_x)
        errs[mode] = float(qerr[:, 1].mean())
        firsts[mode] = codes[:, 0]
        if mode != "shared":
            assert report["stages"][1]["parents"] == 4
            assert sum(report["stages"][1]["parent_fits"].values()) == 4
    np.testing.assert_array_equal(firsts["per_parent"], firsts["shared"])
    np.testing.assert_array_equal(firsts["refined"], firsts["shared"])
    assert errs["per_parent"] < 0.8 * errs["shared"]
    assert errs["refined"] < errs["shared"]


def test_parents_without_rows_keep_the_shared_book() -> None:
    x = nested(600, seed=3)
    model, report = fit_rvq(x, (8, 4, 3), seed=0, n_iter=5, stage_books="per_parent")
    tally = report["stages"][2]["parent_fits"]
    assert sum(tally.values()) == 32
    codes, _ = model.encode(x)
    used = set(prefix_cells(codes, (8, 4, 3), 2).tolist())
    books = model.codebooks[2].reshape(32, 3, 12)
    unused = [p for p in range(32) if p not in used]
    assert tally["shared"] == len(unused)
    for p in unused:  # all unused parents hold the same (shared) codewords
        np.testing.assert_array_equal(books[p], books[unused[0]])


def test_shared_books_are_unchanged_and_hash_as_before() -> None:
    x = nested(500, seed=4)
    old, _ = fit_rvq(x, (4, 6, 2), seed=0, n_iter=5)
    new, _ = fit_rvq(x, (4, 6, 2), seed=0, n_iter=5, stage_books="shared")
    assert not new.is_tree and new.parent_depths == (0, 0, 0)
    for a, b in zip(old.codebooks, new.codebooks, strict=True):
        np.testing.assert_array_equal(a, b)
    assert "stage_books" not in QuantizerOptions(stage_books="shared").params()
    assert QuantizerOptions(stage_books="refined").params()["stage_books"] == "refined"


def test_auto_books_are_per_parent_unless_a_shared_refit_is_asked() -> None:
    assert QuantizerOptions().stage_books == "auto"
    assert QuantizerOptions().books == "per_parent"
    assert QuantizerOptions().params()["stage_books"] == "per_parent"  # recorded resolved
    assert QuantizerOptions(rotation="opq").books == "shared"
    assert QuantizerOptions(refine_iters=2).books == "shared"
    with pytest.raises(InvalidConfigError, match="stage_books"):
        QuantizerOptions(stage_books="per_parent", rotation="opq")
    # an artifact written without the keys was fitted with shared books and no floor
    old = QuantizerOptions.from_params({"lst": "pca", "whiten_power": 0.5})
    assert (
        old.books == "shared"
        and old.params() == QuantizerOptions(stage_books="shared", parent_min_rows=0).params()
    )
    tree = QuantizerOptions.from_params(QuantizerOptions().params())
    assert tree.params() == QuantizerOptions().params()


@pytest.mark.parametrize("mode", ["per_parent", "refined"])
def test_tree_artifact_round_trip_and_version(tmp_path: Path, mode: str) -> None:
    x = nested(1500, seed=5)
    kw = {"seed": 0, "lst_dim": 8, "model": MODEL, "n_iter": 5}
    shared = fit_codebook(x, (4, 6, 3), options=QuantizerOptions(stage_books="shared"), **kw)
    tree = fit_codebook(x, (4, 6, 3), options=QuantizerOptions(stage_books=mode), **kw)
    assert tree.version != shared.version and tree.quantizer["stage_books"] == mode
    tree.save(tmp_path / mode)
    meta = json.loads((tmp_path / mode / METADATA_FILE).read_text())
    assert meta["arrays"]["rvq.1"] == [24, 8] and meta["arrays"]["rvq.2"] == [72, 8]
    loaded = Codebook.load(tmp_path / mode)
    assert loaded.version == tree.version and loaded.rvq.parent_depths == (0, 1, 2)
    for got, want in zip(loaded.assign(x), tree.assign(x), strict=True):
        np.testing.assert_array_equal(got, want)
    # metadata that claims shared books for per-parent arrays is refused
    meta["quantizer"].pop("stage_books")
    (tmp_path / mode / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"do not match|shape"):
        Codebook.load(tmp_path / mode)


def test_bad_tree_settings_are_config_errors() -> None:
    with pytest.raises(InvalidConfigError, match="stage_books"):
        QuantizerOptions(stage_books="forest")
    with pytest.raises(InvalidConfigError, match="stage_books"):
        QuantizerOptions(stage_books="per_parent", rotation="opq")
    with pytest.raises(InvalidConfigError, match="stage_books"):
        FitConfig(stage_books="refined", refine_iters=2)
    assert FitConfig(stage_books="per_parent").quantizer_options().stage_books == "per_parent"
    with pytest.raises(ArtifactError, match="multiple"):
        RVQ((np.zeros((4, 3)), np.zeros((10, 3))), (0, 1))


@pytest.mark.parametrize("parents", [3, 400])
def test_grouped_and_gathered_search_agree_with_brute_force(parents: int) -> None:
    """Both search paths (few parents: grouped products; many: gathered codewords) pick the
    nearest of the row's own parent's codewords."""
    rng = np.random.default_rng(parents)
    x = rng.standard_normal((2000, 6)).astype(np.float32)
    book = rng.standard_normal((parents * 5, 6)).astype(np.float32)
    parent = rng.integers(0, parents, size=2000)
    idx, dist = nearest_in_parent(x, book, parent, 5)
    own = book.reshape(parents, 5, 6)[parent]
    d = np.square(x[:, None] - own).sum(-1)
    np.testing.assert_array_equal(idx, d.argmin(axis=1))
    np.testing.assert_allclose(dist, d.min(axis=1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["per_parent", "refined"])
def test_parents_below_min_rows_keep_the_shared_book(mode: str) -> None:
    """With ``parent_min_rows`` m, exactly the parents holding fewer than m * K training
    rows keep the shared codebook; the others get their own; prefixes stay true labels."""
    x = nested(900, seed=6)
    levels = (4, 6, 3)
    model, report = fit_rvq(x, levels, seed=0, n_iter=5, stage_books=mode, parent_min_rows=12)
    codes, _ = model.encode(x)
    # the training rows of each stage-3 parent are the rows its 2-level prefix holds
    counts = np.bincount(prefix_cells(codes, levels, 2), minlength=24)
    small = counts < 12 * levels[2]
    assert small.any() and (~small).any()  # the case is not vacuous
    tally = report["stages"][2]["parent_fits"]
    assert tally["shared"] == int(small.sum())
    books = model.codebooks[2].reshape(24, 3, 12)
    shared = books[np.flatnonzero(small)[0]]
    for p in range(24):
        if small[p]:
            np.testing.assert_array_equal(books[p], shared)
        else:
            assert not np.array_equal(books[p], shared)
    d1 = np.square(x[:, None] - model.codebooks[0][None]).sum(-1)
    np.testing.assert_array_equal(codes[:, 0], d1.argmin(axis=1))


def test_min_rows_zero_is_the_old_behaviour_and_is_not_recorded() -> None:
    x = nested(700, seed=7)
    old, _ = fit_rvq(x, (4, 6, 3), seed=0, n_iter=5, stage_books="per_parent")
    new, _ = fit_rvq(x, (4, 6, 3), seed=0, n_iter=5, stage_books="per_parent", parent_min_rows=0)
    for a, b in zip(old.codebooks, new.codebooks, strict=True):
        np.testing.assert_array_equal(a, b)
    assert (
        "parent_min_rows"
        not in QuantizerOptions("pca", stage_books="per_parent", parent_min_rows=0).params()
    )
    # the default floor (4 rows per codeword) is recorded with per-parent books
    assert QuantizerOptions(stage_books="per_parent").params()["parent_min_rows"] == 4.0
    assert "parent_min_rows" not in QuantizerOptions("pca", stage_books="shared").params()
    opts = QuantizerOptions(stage_books="refined", parent_min_rows=4)
    assert opts.params()["parent_min_rows"] == 4.0


def test_min_rows_artifact_round_trip_and_version(tmp_path: Path) -> None:
    x = nested(1500, seed=8)
    kw = {"seed": 0, "lst_dim": 8, "model": MODEL, "n_iter": 5}
    no_floor = QuantizerOptions(stage_books="per_parent", parent_min_rows=0)
    plain = fit_codebook(x, (4, 6, 3), options=no_floor, **kw)
    opts = QuantizerOptions(stage_books="per_parent", parent_min_rows=8)
    floored = fit_codebook(x, (4, 6, 3), options=opts, **kw)
    assert floored.version != plain.version and floored.quantizer["parent_min_rows"] == 8.0
    floored.save(tmp_path / "b")
    loaded = Codebook.load(tmp_path / "b")
    assert loaded.version == floored.version and loaded.quantizer == floored.quantizer
    for got, want in zip(loaded.assign(x), floored.assign(x), strict=True):
        np.testing.assert_array_equal(got, want)


def test_bad_min_rows_is_a_config_error() -> None:
    with pytest.raises(InvalidConfigError, match=r"fit\.parent_min_rows"):
        QuantizerOptions(stage_books="per_parent", parent_min_rows=-1)
    with pytest.raises(InvalidConfigError, match="parent_min_rows"):
        FitConfig(parent_min_rows="many")  # type: ignore[arg-type]
    cfg = FitConfig(stage_books="per_parent", parent_min_rows=4)
    assert cfg.quantizer_options().parent_min_rows == 4.0
