"""The per-task time breakdown ``bench/bench_annotate.py`` prints
(``bench/time_breakdown.py``): shares of the total and the uncovered remainder, never
negative, shares summing to 1."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import bench_module

ba = bench_module("time_breakdown")

seconds = st.floats(-1.0, 1e4, allow_nan=False)
parts_st = st.dictionaries(st.text(min_size=1, max_size=8), seconds, max_size=8)


def test_remainder_and_shares_by_hand():
    rows = ba.breakdown_rows({"model": 6.0, "tokenize": 1.0}, 10.0)
    assert rows == [("model", 6.0, 0.6), ("tokenize", 1.0, 0.1), ("other, ours", 3.0, 0.3)]


def test_parts_over_the_total_leave_no_negative_remainder():
    rows = ba.breakdown_rows({"a": 3.0, "b": 1.0}, 2.0, "rest")
    assert rows[-1] == ("rest", 0.0, 0.0)
    assert [share for _, _, share in rows] == [0.75, 0.25, 0.0]


def test_nothing_measured_goes_to_the_rest():
    assert ba.breakdown_rows({"a": 0.0}, 0.0) == [("a", 0.0, 0.0), ("other, ours", 0.0, 1.0)]


@given(parts=parts_st, total=seconds)
def test_shares_sum_to_one_and_nothing_is_negative(parts, total):
    rows = ba.breakdown_rows(parts, total)
    assert [name for name, _, _ in rows] == [*parts, "other, ours"]
    assert all(sec >= 0 and 0 <= share <= 1 for _, sec, share in rows)
    assert math.fsum(share for _, _, share in rows) == pytest.approx(1.0)
    covered = sum(max(v, 0.0) for v in parts.values())
    assert rows[-1][1] == pytest.approx(max(total - covered, 0.0), abs=1e-9)
    if total >= covered:  # the rows add up to the total
        assert math.fsum(sec for _, sec, _ in rows) == pytest.approx(total, abs=1e-9)
