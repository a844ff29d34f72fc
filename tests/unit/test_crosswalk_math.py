"""Crosswalk math: partition agreement from a contingency table, carried weights, code
matching (numpy/scipy only; checked against scikit-learn and by properties)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from hermes_spark.errors import InvalidInputError
from hermes_spark.quantize.crosswalk_math import (
    agreement_from_sums,
    ari_from_table,
    best_match_share,
    carry_weights,
    match_codes,
    nmi_from_table,
    plain_carry,
    realized,
)

labels = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 6)), min_size=2, max_size=80)


def _table(pairs: list[tuple[int, int]]) -> np.ndarray:
    t = np.zeros((6, 7))
    for a, b in pairs:
        t[a, b] += 1
    return t


@settings(max_examples=60, deadline=None)
@given(labels)
def test_nmi_ari_match_sklearn(pairs):
    a, b = zip(*pairs, strict=True)
    table = _table(pairs)
    assert nmi_from_table(table) == pytest.approx(normalized_mutual_info_score(a, b), abs=1e-9)
    assert ari_from_table(table) == pytest.approx(adjusted_rand_score(a, b), abs=1e-9)


tables = st.lists(st.lists(st.integers(0, 50), min_size=4, max_size=4), min_size=3, max_size=3).map(
    lambda rows: np.asarray(rows, dtype=float) + np.eye(3, 4)
)
weights = st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3).filter(lambda w: sum(w) > 1e-3)


def test_identical_partitions_give_the_identity():
    table = np.diag([10.0, 30.0, 5.0, 55.0])
    p = np.array([0.4, 0.1, 0.3, 0.2])
    w, residual = carry_weights(table, p)
    np.testing.assert_allclose(w, p, atol=1e-6)
    np.testing.assert_allclose(plain_carry(table, p), p)
    assert residual < 1e-6
    assert nmi_from_table(table) == pytest.approx(1.0)
    assert ari_from_table(table) == pytest.approx(1.0)
    np.testing.assert_allclose(best_match_share(table), 1.0)


@settings(max_examples=80, deadline=None)
@given(tables, weights)
def test_carried_weights_are_a_distribution_and_beat_the_plain_mapping(table, p):
    p = np.asarray(p) / sum(p)
    w, residual = carry_weights(table, p)
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
    assert residual == pytest.approx(np.linalg.norm(realized(table, w) - p))
    plain = np.linalg.norm(realized(table, plain_carry(table, p)) - p)
    assert residual <= plain + 1e-12


def test_nnls_improves_on_plain_mapping_where_cells_overlap():
    # from-cell 0 is split between to-cells 0 and 1; to-cell 1 is shared with from-cell 1
    table = np.array([[50.0, 50.0, 0.0], [0.0, 50.0, 50.0]])
    p = np.array([1.0, 0.0])
    w, residual = carry_weights(table, p)
    plain = np.linalg.norm(realized(table, plain_carry(table, p)) - p)
    assert residual < plain - 0.1
    np.testing.assert_allclose(w, [1.0, 0.0, 0.0], atol=1e-6)


def test_bad_weights_are_refused():
    with pytest.raises(InvalidInputError, match="from-weights"):
        carry_weights(np.eye(2), np.array([0.0, 0.0]))
    with pytest.raises(InvalidInputError, match="non-negative counts"):
        nmi_from_table(np.array([[-1.0]]))


def test_match_codes_recovers_a_permutation():
    rng = np.random.default_rng(0)
    old = rng.normal(size=(16, 8))
    perm = rng.permutation(16)
    new = old[perm] + rng.normal(scale=1e-3, size=(16, 8))
    order = match_codes(old, new)
    np.testing.assert_allclose(new[order], old, atol=1e-2)
    with pytest.raises(InvalidInputError, match="one shape"):
        match_codes(old, new[:4])


@settings(max_examples=60, deadline=None)
@given(labels)
def test_agreement_from_sums_matches_the_table_form(pairs):
    t = _table(pairs)

    def sums(v):
        v = v[v > 0]
        return float((v * np.log(v)).sum()), float((v * (v - 1) / 2).sum())

    got = agreement_from_sums(t.sum(), sums(t), sums(t.sum(axis=1)), sums(t.sum(axis=0)))
    assert got["nmi"] == pytest.approx(nmi_from_table(t), abs=1e-9)
    assert got["ari"] == pytest.approx(ari_from_table(t), abs=1e-9)
