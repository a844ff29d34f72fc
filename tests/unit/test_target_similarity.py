"""``target-top:p``: similarity scores in LST space and the allocation over its pools."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_spark.errors import InvalidConfigError
from hermes_spark.quantize.codebook import fit_codebook
from hermes_spark.sampling.allocate import parse_stage2_rule, stage1_targets, stage2_allocation
from hermes_spark.sampling.similarity import (
    BLOCK_ROWS,
    TargetCentroids,
    fit_target_centroids,
    lst_arrays,
    similarity_scores,
)
from tests.helpers import labelled_vectors

DIM = 24


@pytest.fixture(scope="module")
def book():
    x, _ = labelled_vectors(800, DIM, clusters=5, seed=4)
    return fit_codebook(x, (4, 3), seed=0, lst_dim=12, n_iter=5, model={"name": "fake", "dim": DIM})


@pytest.fixture(scope="module")
def target(book):
    x, _ = labelled_vectors(120, DIM, clusters=5, seed=9)
    return fit_target_centroids(x, book, k=4, seed=1)


def test_scores_are_the_cosine_to_the_nearest_centroid_in_lst_space(book, target):
    x, _ = labelled_vectors(300, DIM, clusters=5, seed=2)
    got = similarity_scores(x, lst_arrays(book), target.centroids)
    z = book.lst.transform(x).astype(np.float64)
    c = target.centroids.astype(np.float64)
    want = (z @ c.T).max(axis=1) / np.linalg.norm(z, axis=1)
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert np.all(got <= 1 + 1e-9)
    # centroids are unit rows; zero / non-finite vectors have no score
    np.testing.assert_allclose(np.linalg.norm(target.centroids, axis=1), 1.0, atol=1e-6)
    bad = np.vstack([np.zeros(DIM), np.full(DIM, np.nan), x[0]])
    out = similarity_scores(bad, lst_arrays(book), target.centroids)
    assert np.isnan(out[:2]).all() and out[2] == got[0]


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3 * BLOCK_ROWS + 5),
    cuts=st.lists(st.integers(0, 3 * BLOCK_ROWS + 5), max_size=4),
    seed=st.integers(0, 2**16),
)
def test_scores_do_not_depend_on_partitioning_or_order(book, target, n, cuts, seed):
    """Partition independence: a document's score is bitwise the same whichever rows
    share its batch, in whatever order (executors see arbitrary partitions)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    arrays = lst_arrays(book)
    whole = similarity_scores(x, arrays, target.centroids)
    perm = rng.permutation(n)
    parts = np.split(perm, sorted({c for c in cuts if 0 < c < n}))
    pieces = np.empty(n)
    for idx in parts:
        pieces[idx] = similarity_scores(x[idx], arrays, target.centroids)
    assert np.array_equal(whole, pieces)


def test_centroids_are_deterministic_capped_and_round_trip_through_json(book):
    x, _ = labelled_vectors(6, DIM, clusters=2, seed=3)
    a = fit_target_centroids(x, book, k=10, seed=5)
    b = fit_target_centroids(x, book, k=10, seed=5)
    assert a.k == 6 and a.target_docs == 6  # k is capped at the usable examples
    assert np.array_equal(a.centroids, b.centroids)
    back = TargetCentroids.from_dict(json.loads(json.dumps(a.to_dict())))
    assert np.array_equal(back.centroids, a.centroids)
    assert back.codebook_version == book.version
    with pytest.raises(InvalidConfigError):
        fit_target_centroids(x, book, k=0)


def test_target_top_rule_parses_like_quality_top():
    assert parse_stage2_rule("target-top:0.3") == ("target-top", 0.3)
    for bad in ("target-top", "target-top:0", "target-top:2"):
        with pytest.raises(InvalidConfigError):
            parse_stage2_rule(bad)


def _children(rng: np.random.Generator, parents: int, per: int, p: float) -> pd.DataFrame:
    """Children whose pools are the top share ``p`` of random per-document scores."""
    rows = []
    for b in range(parents):
        for c in range(per):
            n = int(rng.integers(1, 40))
            tokens = rng.integers(1, 500, size=n)
            score = rng.random(n)
            k = max(1, int(np.ceil((1 - p) * n)))
            thr = np.sort(score)[k - 1]
            pool = score >= thr
            rows.append(
                {
                    "parent": b,
                    "child": b * per + c,
                    "tokens": float(tokens.sum()),
                    "docs": float(n),
                    "pool_tokens": float(tokens[pool].sum()),
                    "pool_docs": float(pool.sum()),
                }
            )
    return pd.DataFrame(rows)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**20),
    p=st.sampled_from([0.1, 0.3, 0.5, 1.0]),
    share=st.floats(0.05, 1.5),
    epochs=st.sampled_from([1.0, 2.0, 4.0]),
)
def test_target_top_allocation_meets_the_budget_the_pools_allow(seed, p, share, epochs):
    """Stage 1 capped at E × the buckets' pools, Stage 2 water-filled against E × each
    child's pool: the budget is met whenever the pools hold it, no child exceeds its
    cap, and the result does not depend on the order of the rows (determinism)."""
    rng = np.random.default_rng(seed)
    kids = _children(rng, int(rng.integers(1, 5)), int(rng.integers(1, 6)), p)
    supply = kids.groupby("parent")["pool_tokens"].sum()
    weights = pd.Series(rng.random(len(supply)) + 0.01, index=supply.index)
    budget = share * float(kids["tokens"].sum())
    stage1, shortfall = stage1_targets(weights, supply, budget, epochs)
    out = stage2_allocation(stage1, kids, f"target-top:{p}", epochs)
    total = float(out["alloc"].sum())
    assert total == pytest.approx(min(budget, epochs * float(supply.sum())), rel=1e-9)
    assert shortfall == pytest.approx(max(budget - epochs * float(supply.sum()), 0.0), abs=1e-6)
    assert (out["alloc"] <= epochs * out["pool_tokens"] * (1 + 1e-12)).all()
    shuffled = kids.sample(frac=1.0, random_state=seed % 1000)
    again = stage2_allocation(stage1, shuffled, f"target-top:{p}", epochs)
    assert np.array_equal(
        out.set_index("child")["alloc"].sort_index().to_numpy(),
        again.set_index("child")["alloc"].sort_index().to_numpy(),
    )
    same = stage2_allocation(stage1, kids, f"quality-top:{p}", epochs)
    assert np.array_equal(out["alloc"].to_numpy(), same["alloc"].to_numpy())
