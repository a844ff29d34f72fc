"""QuaDMix sampling function math (no Spark): the solved scale meets the target, realized
repeats have the expected value, parameter files parse."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_spark.errors import InvalidInputError
from hermes_spark.sampling.quadmix_math import (
    QuadmixParams,
    candidate_params,
    expected_repeats,
    params_from_dict,
    realized_repeats,
    sigmoid,
    solve_scale,
)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 200),
    seed=st.integers(0, 10_000),
    threshold=st.floats(0.0, 1.0),
    steepness=st.floats(0.0, 60.0),
    epochs=st.floats(0.5, 5.0),
    frac=st.floats(0.01, 0.999),
)
def test_solved_scale_meets_the_target(n, seed, threshold, steepness, epochs, frac):
    rng = np.random.default_rng(seed)
    q = rng.random(n)
    tokens = rng.integers(1, 1000, size=n).astype(float)
    target = frac * epochs * tokens.sum()
    lam = solve_scale(
        q, tokens, threshold=threshold, steepness=steepness, max_epochs=epochs, target=target
    )
    r = expected_repeats(q, threshold=threshold, steepness=steepness, scale=lam, max_epochs=epochs)
    assert (r >= 0).all() and (r <= epochs + 1e-12).all()
    assert float((tokens * r).sum()) == pytest.approx(target, rel=1e-9)
    # more quality never means fewer expected repeats (steepness >= 0)
    order = np.argsort(q)
    assert (np.diff(r[order]) >= -1e-12).all()


def test_full_and_empty_targets():
    q, t = np.array([0.1, 0.9]), np.array([10.0, 30.0])
    assert solve_scale(q, t, threshold=0.5, steepness=5, max_epochs=2, target=80) == math.inf
    assert solve_scale(q, t, threshold=0.5, steepness=5, max_epochs=2, target=0) == 0.0
    r = expected_repeats(q, threshold=0.5, steepness=5, scale=math.inf, max_epochs=2)
    assert list(r) == [2.0, 2.0]
    with pytest.raises(InvalidInputError):
        solve_scale(q, -t, threshold=0.5, steepness=5, max_epochs=2, target=1)


@settings(max_examples=40, deadline=None)
@given(r=st.floats(0.0, 4.0), seed=st.integers(0, 1000))
def test_realized_repeats_average_to_the_expected_value(r, seed):
    u = np.random.default_rng(seed).random(20_000)
    got = realized_repeats(np.full(u.shape, r), u)
    assert set(np.unique(got)) <= {math.floor(r), math.floor(r) + 1}
    assert got.mean() == pytest.approx(r, abs=0.03)
    # deterministic: a function of (r, u) only
    assert (realized_repeats(np.full(u.shape, r), u) == got).all()


def test_sigmoid_is_stable_and_symmetric():
    z = np.array([-800.0, -5.0, 0.0, 5.0, 800.0])
    s = sigmoid(z)
    assert np.isfinite(s).all() and s[0] == 0.0 and s[-1] == 1.0 and s[2] == 0.5
    assert s[1] + s[3] == pytest.approx(1.0)


def test_parameter_files_round_trip_and_candidates_parse():
    p = params_from_dict(
        {"default": {"threshold": 0.4, "steepness": 3}, "buckets": {"2": {"threshold": 0.9}}}
    )
    assert p.of("2") == (0.9, 10.0) and p.of("7") == (0.4, 3.0)
    assert params_from_dict(p.to_dict()) == p
    cands = candidate_params(["0", "1", "2"], 5, seed=1)
    assert len(cands) == 5 and cands != candidate_params(["0", "1", "2"], 5, seed=2)
    for c in cands:
        parsed = params_from_dict(c)
        assert isinstance(parsed, QuadmixParams) and len(parsed.buckets) == 3
        assert all(0 <= t <= 1 and 0 <= s <= 40 for _, t, s in parsed.buckets)
    with pytest.raises(InvalidInputError):
        params_from_dict({"default": {"steepness": -1}})
    with pytest.raises(InvalidInputError):
        params_from_dict({"buckets": [1, 2]})
