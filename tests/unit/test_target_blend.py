"""The target-weight formula (no Spark): smoothed target cell shares mixed with the prior."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_spark.errors import InvalidConfigError
from hermes_spark.sampling.target import blend, is_target_spec


@settings(max_examples=50, deadline=None)
@given(
    counts=st.lists(st.integers(0, 50), min_size=2, max_size=12),
    alpha=st.floats(0.0, 5.0),
    beta=st.floats(0.0, 1.0),
    seed=st.integers(0, 1000),
)
def test_blend_is_a_distribution_between_target_and_prior(counts, alpha, beta, seed):
    n = pd.Series(counts, index=np.arange(len(counts)))
    prior = pd.Series(np.random.default_rng(seed).integers(1, 100, len(counts)), index=n.index)
    if n.sum() == 0 and alpha == 0:
        return
    w = blend(n, prior, smoothing=alpha, prior_mix=beta)
    assert w.sum() == pytest.approx(1.0)
    assert (w >= 0).all()
    target = (n + alpha) / (n.sum() + alpha * len(n))
    p = prior / prior.sum()
    assert np.allclose(w, (1 - beta) * target + beta * p)
    # the more target documents a cell has, the more weight (same prior)
    if beta == 0:
        order = np.argsort(n.to_numpy(), kind="stable")
        assert (np.diff(w.to_numpy()[order]) >= -1e-12).all()


def test_cells_outside_the_corpus_are_dropped_and_bad_parameters_refused():
    n = pd.Series([5, 5, 90], index=[0, 1, 7])  # cell 7 is not a corpus bucket
    prior = pd.Series([1.0, 3.0], index=[0, 1])
    w = blend(n, prior, smoothing=0.0, prior_mix=0.0)
    assert list(w.index) == [0, 1] and w.tolist() == [0.5, 0.5]
    with pytest.raises(InvalidConfigError):
        blend(n, prior, smoothing=-1.0, prior_mix=0.1)
    with pytest.raises(InvalidConfigError):
        blend(n, prior, smoothing=1.0, prior_mix=1.5)
    assert is_target_spec("target:/x") and not is_target_spec("temperature:0.5")
