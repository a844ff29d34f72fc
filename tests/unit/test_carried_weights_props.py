"""Properties of carrying a weights file keyed by written V1 keys to V2 keys (driver math)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_spark.errors import BudgetError
from hermes_spark.quantize.crosswalk_math import realized
from hermes_spark.sampling.carried_weights import keyed_weights
from hermes_spark.sampling.carry import carry_table


@st.composite
def refinements(draw):
    """V1 cells each split into 1..3 V2 cells of their own (V2 refines V1), with weights."""
    n_from = draw(st.integers(1, 6))
    rows, to = [], 0
    for a in range(n_from):
        for _ in range(draw(st.integers(1, 3))):
            rows.append((str(a), f"{to // 4}.{to % 4}", draw(st.integers(1, 500))))
            to += 1
    w = draw(st.lists(st.floats(0.0, 1.0), min_size=n_from, max_size=n_from))
    if sum(w) <= 0:
        w[0] = 1.0
    return rows, {str(a): x for a, x in enumerate(w)}


@st.composite
def crossings(draw):
    """Arbitrary token counts over (V1 key, V2 key) pairs, every V1 cell non-empty."""
    n_from, n_to = draw(st.integers(1, 5)), draw(st.integers(1, 7))
    t = np.array(
        draw(st.lists(st.integers(0, 300), min_size=n_from * n_to, max_size=n_from * n_to))
    ).reshape(n_from, n_to)
    t[:, 0] += 1
    rows = [(f"{a}", f"{b}.1", int(t[a, b])) for a in range(n_from) for b in range(n_to)]
    w = draw(st.lists(st.floats(0.01, 1.0), min_size=n_from, max_size=n_from))
    return [r for r in rows if r[2] > 0], {str(a): x for a, x in enumerate(w)}


def _cells(rows):
    return pd.DataFrame(rows, columns=["from_bucket", "to_bucket", "tokens"]).assign(docs=1)


@settings(max_examples=60, deadline=None)
@given(refinements())
def test_a_refinement_is_carried_exactly_and_keeps_each_cells_weight(case):
    rows, weights = case
    carried, _, tv, plain_tv, coverage = carry_table(_cells(rows), weights)
    assert tv == pytest.approx(0.0, abs=1e-6) and plain_tv == pytest.approx(0.0, abs=1e-6)
    assert coverage == pytest.approx(1.0)
    parent = {to: a for a, to, _ in rows}
    total = sum(weights.values())
    for a, w in weights.items():
        got = sum(x for to, x in carried.items() if parent[to] == a)
        assert got == pytest.approx(w / total, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(crossings(), st.floats(0.1, 100.0))
def test_carried_weights_are_a_distribution_over_v2_keys_whatever_the_scale(case, scale):
    rows, weights = case
    carried, _, tv, plain_tv, _ = carry_table(_cells(rows), weights)
    assert set(carried) <= {to for _, to, _ in rows}
    assert all(x > 0 for x in carried.values())
    assert sum(carried.values()) == pytest.approx(1.0)
    assert tv <= plain_tv + 1e-9
    _, _, tv2, _, _ = carry_table(_cells(rows), {k: v * scale for k, v in weights.items()})
    assert tv2 == pytest.approx(tv, abs=1e-6)
    # the recorded TV is the realized mixture's, recomputed from the table
    table = _cells(rows).pivot_table(
        index="from_bucket", columns="to_bucket", values="tokens", fill_value=0
    )
    w = np.array([carried.get(c, 0.0) for c in table.columns])
    p = np.array([weights[k] for k in table.index])
    got = realized(table.to_numpy(dtype=np.float64), w)
    assert 0.5 * np.abs(got - p / p.sum()).sum() == pytest.approx(tv, abs=1e-9)


@given(
    st.dictionaries(st.integers(0, 40), st.floats(0.0, 5.0), min_size=1),
    st.integers(1, 3),
)
def test_keyed_weights_read_a_doremi_file_at_its_key_depth(tmp_path_factory, raw, depth):
    if sum(raw.values()) <= 0:
        raw[0] = 1.0
    keys = {".".join([str(k)] * depth): w for k, w in raw.items()}
    path = tmp_path_factory.mktemp("w") / "doremi.json"
    path.write_text(json.dumps({"train_domain_weights": keys}))
    weights, level = keyed_weights(str(path))
    assert level == depth and weights == pytest.approx(keys)


def test_keyed_weights_refuse_mixed_depths_and_bad_values(tmp_path):
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"1": 0.5, "1.2": 0.5}))
    with pytest.raises(BudgetError, match="mixes keys of levels"):
        keyed_weights(str(path))
    path.write_text(json.dumps({"1": -0.5}))
    with pytest.raises(BudgetError, match=">= 0"):
        keyed_weights(str(path))
    path.write_text(json.dumps({"a.b": 1.0}))
    with pytest.raises(BudgetError, match="not a bucket code"):
        keyed_weights(str(path))
