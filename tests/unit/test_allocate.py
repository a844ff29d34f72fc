"""Tests of the two-stage allocation math (pure numpy/pandas, no Spark)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_spark.errors import BudgetError, InvalidConfigError, InvalidInputError
from hermes_spark.sampling.allocate import (
    child_selection_plan,
    parse_stage2_rule,
    stage1_targets,
    stage2_allocation,
    take_prefix,
    water_fill,
)


def reference_water_fill(caps: np.ndarray, weights: np.ndarray, total: float) -> np.ndarray:
    """The iterative procedure of the SPEC, written naively."""
    alloc = np.zeros_like(caps)
    open_ = weights > 0
    left = total
    while left > 1e-9 * max(total, 1.0) and open_.any():
        share = left * np.where(open_, weights, 0.0) / weights[open_].sum()
        room = caps - alloc
        over = open_ & (share >= room)
        if not over.any():
            alloc += share
            break
        alloc[over] = caps[over]
        left -= room[over].sum()
        open_ &= ~over
    return alloc


def entropy(x: np.ndarray) -> float:
    p = x[x > 0] / x.sum()
    return float(-(p * np.log(p)).sum())


finite = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
problems = st.integers(min_value=1, max_value=25).flatmap(
    lambda n: st.tuples(
        st.lists(finite, min_size=n, max_size=n),
        st.lists(
            st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=100.0)),
            min_size=n,
            max_size=n,
        ),
        st.floats(min_value=0.0, max_value=3e7),
    )
)


@settings(max_examples=300, deadline=None)
@given(problems)
def test_water_fill_properties(problem: tuple[list[float], list[float], float]) -> None:
    caps, weights, total = (np.array(problem[0]), np.array(problem[1]), problem[2])
    alloc, shortfall = water_fill(caps, weights, total)
    assert (alloc <= caps).all()
    assert (alloc >= 0).all()
    assert (alloc[weights == 0] == 0).all()
    live = weights > 0
    supply = caps[live].sum()
    tol = 1e-9 * max(total, supply, 1.0)
    if supply > total + tol:
        assert shortfall == 0.0
        assert alloc.sum() == pytest.approx(total, rel=1e-9, abs=1e-6)
    if supply < total - tol:
        np.testing.assert_array_equal(alloc[live], caps[live])
        assert shortfall == pytest.approx(total - supply, rel=1e-9, abs=1e-6)
    # Optimality: uncapped buckets share one level alloc/weight, capped ones sit below it.
    uncapped = live & (alloc < caps)
    if uncapped.any():
        level = alloc[uncapped] / weights[uncapped]
        np.testing.assert_allclose(level, level[0], rtol=1e-9, atol=1e-9)
        capped = live & ~uncapped
        assert (caps[capped] / weights[capped] <= level[0] * (1 + 1e-9) + 1e-9).all()
    np.testing.assert_allclose(
        alloc, reference_water_fill(caps, weights, total), rtol=1e-7, atol=1e-4
    )


def test_water_fill_redistributes_in_proportion_to_weights() -> None:
    alloc, shortfall = water_fill(np.array([10.0, 100, 100]), np.array([1.0, 1, 2]), 100.0)
    np.testing.assert_allclose(alloc, [10, 30, 60])
    assert shortfall == 0.0


def test_water_fill_all_capped_reports_shortfall() -> None:
    alloc, shortfall = water_fill(np.array([10.0, 20, 99]), np.array([1.0, 3, 0]), 100.0)
    np.testing.assert_allclose(alloc, [10, 20, 0])
    assert shortfall == pytest.approx(70.0)


def test_water_fill_infinite_caps_and_bad_input() -> None:
    alloc, _ = water_fill(np.array([np.inf, 1.0]), np.array([1.0, 1.0]), 10.0)
    np.testing.assert_allclose(alloc, [9, 1])
    with pytest.raises(BudgetError):
        water_fill(np.array([1.0]), np.array([-1.0]), 1.0)
    with pytest.raises(BudgetError):
        water_fill(np.array([np.nan]), np.array([1.0]), 1.0)
    with pytest.raises(BudgetError):
        water_fill(np.array([1.0, 2.0]), np.array([1.0]), 1.0)
    with pytest.raises(BudgetError):
        water_fill(np.array([1.0]), np.array([1.0]), math.inf)


def _series(values: dict[int, float]) -> pd.Series:
    return pd.Series(values, dtype=np.float64)


def test_stage1_unimax_is_uniform_capped_at_epochs() -> None:
    supply = _series({0: 10, 3: 1000, 7: 1000})
    weights = _series({0: 1, 3: 1, 7: 1}) / 3
    frame, shortfall = stage1_targets(weights, supply, budget=900, max_epochs=2)
    assert list(frame.index) == [0, 3, 7]
    np.testing.assert_allclose(frame["cap"], [20, 2000, 2000])
    np.testing.assert_allclose(frame["target_raw"], [300, 300, 300])
    np.testing.assert_allclose(frame["target"], [20, 440, 440])
    assert frame["capped"].tolist() == [True, False, False]
    assert shortfall == 0.0


def test_stage1_targets_equal_weighted_budget_when_no_cap_binds() -> None:
    supply = _series({1: 500, 2: 300, 5: 200})
    weights = _series({1: 0.2, 2: 0.5})  # bucket 5 unlisted -> weight 0
    frame, shortfall = stage1_targets(weights, supply, budget=400, max_epochs=4)
    np.testing.assert_allclose(frame["weight"], [2 / 7, 5 / 7, 0])
    np.testing.assert_allclose(frame["target"], frame["weight"] * 400)
    assert not frame["capped"].any()
    assert shortfall == 0.0


def test_stage1_shortfall_when_everything_is_capped() -> None:
    supply = _series({0: 10, 1: 30})
    frame, shortfall = stage1_targets(_series({0: 0.5, 1: 0.5}), supply, 1000, 2.0)
    np.testing.assert_allclose(frame["target"], [20, 60])
    assert frame["capped"].all()
    assert shortfall == pytest.approx(920)


def test_stage1_rejects_bad_arguments() -> None:
    supply = _series({0: 10, 1: 30})
    with pytest.raises(BudgetError):
        stage1_targets(_series({0: 1.0}), supply, 0, 1)
    with pytest.raises(BudgetError):
        stage1_targets(_series({9: 1.0}), supply, 10, 1)
    with pytest.raises(BudgetError):
        stage1_targets(_series({0: 0.0, 1: 0.0}), supply, 10, 1)
    with pytest.raises(BudgetError):
        stage1_targets(_series({0: np.nan}), supply, 10, 1)
    with pytest.raises(InvalidConfigError):
        stage1_targets(_series({0: 1.0}), supply, 10, 0)


def _children(parents: list[int], tokens: list[float], pools: list[float] | None = None):
    pools = tokens if pools is None else pools
    return pd.DataFrame(
        {
            "parent": parents,
            "child": list(range(100, 100 + len(parents))),
            "tokens": tokens,
            "pool_tokens": pools,
            "pool_docs": [max(1, int(p // 10)) if p else 0 for p in pools],
            "docs": [max(1, int(t // 10)) for t in tokens],
        }
    )


def _stage1(targets: dict[int, float]) -> pd.DataFrame:
    return pd.DataFrame({"target": pd.Series(targets, dtype=np.float64)})


def test_stage2_random_is_proportional_to_child_tokens() -> None:
    kids = _children([0, 0, 0, 1], [100, 300, 600, 50])
    out = stage2_allocation(_stage1({0: 500, 1: 25}), kids, "random", 2.0)
    np.testing.assert_allclose(out["alloc"], [50, 150, 300, 25])
    np.testing.assert_allclose(out["share"], [0.1, 0.3, 0.6, 1.0])
    np.testing.assert_allclose(out["expected_repeats"], [0.5, 0.5, 0.5, 0.5])
    assert (out["parent_unmet"] == 0).all()


def test_stage2_coverage_is_equal_split_when_no_cap_binds() -> None:
    kids = _children([4, 4, 4, 4], [100, 300, 600, 1000])
    out = stage2_allocation(_stage1({4: 200}), kids, "coverage", 1.0)
    np.testing.assert_allclose(out["alloc"], [50, 50, 50, 50])
    np.testing.assert_allclose(out["share"], 0.25)


def test_stage2_coverage_water_fills_against_caps() -> None:
    kids = _children([4, 4, 4], [10, 300, 600])
    out = stage2_allocation(_stage1({4: 330}), kids, "coverage", 2.0)
    np.testing.assert_allclose(out["alloc"], [20, 155, 155])
    np.testing.assert_allclose(out["cap"], [20, 600, 1200])


coverage_cases = st.integers(min_value=2, max_value=12).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(min_value=1, max_value=10_000), min_size=n, max_size=n),
        st.floats(min_value=0.01, max_value=1.0),
        st.floats(min_value=0.5, max_value=4.0),
        st.integers(min_value=0, max_value=2**31),
    )
)


@settings(max_examples=150, deadline=None)
@given(coverage_cases)
def test_coverage_has_maximal_entropy(case: tuple[list[int], float, float, int]) -> None:
    pools, fill, epochs, seed = case
    caps = epochs * np.array(pools, dtype=np.float64)
    target = fill * caps.sum()
    out = stage2_allocation(
        _stage1({0: target}), _children([0] * len(pools), pools), "coverage", epochs
    )
    alloc = out["alloc"].to_numpy()
    assert alloc.sum() == pytest.approx(target, rel=1e-9)
    assert (alloc <= caps).all()
    best = entropy(alloc)
    rng = np.random.default_rng(seed)
    for _ in range(50):
        i, j = rng.choice(len(alloc), size=2, replace=False)
        room = min(alloc[i], caps[j] - alloc[j])
        if room <= 1e-9 * target:
            continue
        moved = alloc.copy()
        delta = rng.uniform(0, room)
        moved[i] -= delta
        moved[j] += delta
        assert entropy(moved) <= best + 1e-12
    # Any other feasible allocation (a random water-fill) has no more entropy.
    other, _ = water_fill(caps, rng.uniform(0.1, 1, len(caps)), target)
    assert entropy(other) <= best + 1e-12


def test_stage2_quality_top_caps_at_pool_and_reports_unmet() -> None:
    kids = _children([2, 2, 3], [100, 100, 400], pools=[10, 50, 100])
    out = stage2_allocation(_stage1({2: 150, 3: 100}), kids, "quality-top:0.3", 2.0)
    # Parent 2: shares 75/75, child 100 capped at 20, child 101 capped at 100 -> unmet 30.
    np.testing.assert_allclose(out["alloc"], [20, 100, 100])
    np.testing.assert_allclose(out["parent_unmet"], [30, 30, 0])
    np.testing.assert_allclose(out["expected_repeats"], [2, 2, 1])
    assert out["full_passes"].tolist() == [2, 2, 1]
    np.testing.assert_allclose(out["remainder"], [0, 0, 0])


def test_stage2_quality_top_redistributes_by_size() -> None:
    kids = _children([2, 2, 2], [100, 200, 700], pools=[10, 200, 700])
    out = stage2_allocation(_stage1({2: 500}), kids, "quality-top:0.5", 1.0)
    # Shares 50/100/350: child 0 capped at 10, 40 left -> 2:7 over the others.
    np.testing.assert_allclose(out["alloc"], [10, 100 + 40 * 2 / 9, 350 + 40 * 7 / 9])
    assert (out["parent_unmet"] == 0).all()


def test_stage2_rejects_inconsistent_tables() -> None:
    kids = _children([0, 0], [10, 20])
    with pytest.raises(InvalidInputError):
        stage2_allocation(_stage1({0: 5, 1: 5}), kids, "random", 1.0)  # 1 has no children
    with pytest.raises(InvalidInputError):
        stage2_allocation(_stage1({5: 5}), kids, "random", 1.0)  # children of unknown 0
    with pytest.raises(InvalidInputError):
        stage2_allocation(_stage1({0: 5}), kids.drop(columns="pool_docs"), "random", 1.0)
    bad = kids.assign(pool_tokens=[50, 20])
    with pytest.raises(InvalidInputError):
        stage2_allocation(_stage1({0: 5}), bad, "random", 1.0)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("random", ("random", None)),
        (" Coverage ", ("coverage", None)),
        ("quality-top:0.3", ("quality-top", 0.3)),
        ("quality-top:1", ("quality-top", 1.0)),
    ],
)
def test_parse_stage2_rule(rule: str, expected: tuple[str, float | None]) -> None:
    assert parse_stage2_rule(rule) == expected


@pytest.mark.parametrize(
    "rule", ["quality-top", "quality-top:0", "quality-top:1.5", "quality-top:x", "top", "random:1"]
)
def test_parse_stage2_rule_rejects(rule: str) -> None:
    with pytest.raises(InvalidConfigError):
        parse_stage2_rule(rule)


def test_child_selection_plan() -> None:
    assert child_selection_plan(250.0, 100.0) == (2, pytest.approx(50.0))
    assert child_selection_plan(40.0, 100.0) == (0, pytest.approx(40.0))
    assert child_selection_plan(0.0, 0.0) == (0, 0.0)
    # E epochs computed in floating point still give E full passes.
    pool = 0.1 + 0.2
    full, rest = child_selection_plan(3 * pool * (1 - 1e-15), pool)
    assert full == 3
    assert rest == 0.0
    with pytest.raises(BudgetError):
        child_selection_plan(5.0, 0.0)
    with pytest.raises(BudgetError):
        child_selection_plan(-1.0, 10.0)


def literal_walk(tokens: np.ndarray, remaining: float) -> int:
    """Take documents while each one brings the running total closer to ``remaining``."""
    total = 0.0
    for k, t in enumerate(tokens):
        if abs(total + t - remaining) >= abs(total - remaining):
            return k
        total += t
    return len(tokens)


@pytest.mark.parametrize(
    ("tokens", "remaining", "expected"),
    [
        ([5, 5, 5], 7, 1),  # 10 is 3 away, 5 is 2 away
        ([5, 5, 5], 8, 2),  # 10 is 2 away, 5 is 3 away; 15 is farther
        ([4], 2, 0),  # a tie is not closer
        ([3, 100, 1], 10, 1),  # stops at the first document that overshoots too far
        ([5, 5], 100, 2),
        ([5, 5], 0, 0),
        ([], 10, 0),
        ([0, 5], 3, 2),  # a zero-token document below the share costs nothing
    ],
)
def test_take_prefix_examples(tokens: list[int], remaining: float, expected: int) -> None:
    assert take_prefix(np.array(tokens), remaining) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=1000), max_size=60),
    st.floats(min_value=-10, max_value=40_000),
)
def test_take_prefix_matches_the_literal_walk(tokens: list[int], remaining: float) -> None:
    arr = np.array(tokens, dtype=np.int64)
    k = take_prefix(arr, remaining)
    assert k == literal_walk(arr, remaining)
    taken = arr[:k].sum()
    if arr.size:
        # The realized total is within half the largest document of the share.
        assert abs(taken - remaining) <= max(arr.max() / 2, remaining - arr.sum(), -remaining)


def test_take_prefix_rejects_negative_tokens() -> None:
    with pytest.raises(InvalidInputError):
        take_prefix(np.array([1, -1]), 3)


def test_water_fill_with_a_subnormal_weight_stays_finite_and_warning_free() -> None:
    # cap/weight overflows to inf for a subnormal weight: it must sort last, not warn or
    # poison the level the other buckets share
    caps = np.array([50.0, 80.0, 1e9])
    weights = np.array([1.0, 1.0, 5e-324])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        alloc, shortfall = water_fill(caps, weights, 100.0)
    assert np.isfinite(alloc).all()
    assert alloc[:2].tolist() == [50.0, 50.0]
    assert alloc[2] == pytest.approx(0.0, abs=1e-300)
    assert shortfall == 0.0
