"""The bounded boundary walk (hermes_spark.sampling.walk) against the walk over whole pools.

The Spark side of the walk is simulated here with numpy (bins, windows, the two pandas
steps exactly as Spark calls them), so the property runs without a session.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_spark.sampling.allocate import take_prefix
from hermes_spark.sampling.walk import SLACK, carry_bounds, order_window, resolve_goals


def full_walk(kids: list[dict]) -> tuple[list[np.ndarray], list[float], list[float]]:
    """The SPEC walk over whole pools: per child taken flags, incoming carry, goal."""
    carry, taken, carries, goals = 0.0, [], [], []
    for k in kids:
        target = k["r"] + carry
        goal = min(max(target, 0.0), k["rmax"])
        n = take_prefix(k["t"], goal)
        carries.append(carry)
        goals.append(goal)
        taken.append(np.arange(len(k["t"])) < n)
        carry = target - float(k["t"][:n].sum())
    return taken, carries, goals


def windowed_walk(kids: list[dict]) -> tuple[list[np.ndarray], np.ndarray, list[int]]:
    """select_manifest's path: histogram bins, per-child windows of ``r ± b``, the pandas
    steps per child and per parent. Returns taken flags, ``b`` and the window sizes."""
    frame = pd.DataFrame(
        {
            "parent": 0,
            "child": np.arange(len(kids)),
            "r": [k["r"] for k in kids],
            "rmax": [k["rmax"] for k in kids],
            "pool_tokens": [float(k["t"].sum()) for k in kids],
            "max_tokens": [float(k["t"].max()) for k in kids],
        }
    )
    b = carry_bounds(frame)
    rows, ordered = [], []
    for c, k in enumerate(kids):
        t, bins = k["t"], k["bins"]
        tok = np.bincount(bins, weights=t, minlength=bins.max() + 1)
        cum_end = np.cumsum(tok)
        cum_start = cum_end - tok
        low, high = k["r"] - b[c], k["r"] + b[c]
        inside = (cum_end >= low) & (cum_start <= high)
        s0 = int(tok[cum_end < low].sum())
        lo, hi = np.flatnonzero(inside)[[0, -1]]
        win = (bins >= lo) & (bins <= hi)
        docs = pd.DataFrame(
            {
                "parent": 0,
                "child": c,
                "doc_id": [f"d{c}-{i:04d}" for i in np.flatnonzero(win)],
                "u": np.flatnonzero(win) / len(t),
                "t": t[win],
                "full": 0,
                "r": k["r"],
                "rmax": k["rmax"],
                "s0": s0,
                "b": b[c],
            }
        ).sample(frac=1.0, random_state=c)  # a group arrives in any order
        got = order_window(docs)
        ordered.append(got)
        lo_x, hi_x = k["r"] - b[c] - s0, k["r"] + b[c] - s0
        base = int(got["t"][got["mid"] < lo_x].sum())
        rows.append(dict(child=c, kind=0, mid=np.nan, t=base, r=k["r"], rmax=k["rmax"], s0=s0))
        near = got[(got["mid"] >= lo_x) & (got["mid"] <= hi_x)]
        for m, tt in zip(near["mid"], near["t"], strict=True):
            rows.append(dict(child=c, kind=1, mid=m, t=tt, r=k["r"], rmax=k["rmax"], s0=s0))
    goals = resolve_goals(pd.DataFrame(rows).sample(frac=1.0, random_state=1))
    x = dict(zip(goals["child"], goals["x"], strict=True))
    taken, sizes = [], []
    for c, (k, got) in enumerate(zip(kids, ordered, strict=True)):
        tok = np.bincount(k["bins"], weights=k["t"])
        flags = np.cumsum(tok)[k["bins"]] < k["r"] - b[c]  # bins before the window
        idx = got["doc_id"].str.slice(-4).astype(int).to_numpy()
        flags[idx] = got["mid"].to_numpy() < x[c]
        taken.append(flags)
        sizes.append(len(got))
    return taken, b, sizes


@st.composite
def parents(draw, capped: bool | None = None):
    n_kids = draw(st.integers(1, 6))
    kids = []
    for _ in range(n_kids):
        n = draw(st.integers(1, 40))
        t = np.array(draw(st.lists(st.integers(0, 300), min_size=n, max_size=n)), dtype=np.int64)
        if draw(st.booleans()):
            t[draw(st.integers(0, n - 1))] = draw(st.integers(300, 20_000))
        if t.sum() == 0:
            t[0] = 1
        pool = float(t.sum())
        r = draw(st.floats(0.0, 1.0)) * pool
        frac = 1.0 if capped is False else draw(st.sampled_from([1.0, 1.0, 0.5, 0.25]))
        rmax = max(min(pool, frac * pool), r)
        cuts = sorted(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=6)))
        bins = np.searchsorted(np.array(cuts), np.arange(n), side="right")
        kids.append({"t": t, "r": r, "rmax": rmax, "bins": bins})
    return kids


@settings(max_examples=150, deadline=None)
@given(parents())
def test_windowed_walk_equals_the_walk_over_whole_pools(kids):
    want, carries, goals = full_walk(kids)
    got, b, _ = windowed_walk(kids)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)
    for c, bound in zip(carries, b, strict=True):
        assert abs(c) <= bound  # the proven bound holds on the real carries
    for k, goal, flags in zip(kids, goals, want, strict=True):
        realized = float(k["t"][flags].sum())
        assert abs(goal - realized) <= max(k["t"].max() / 2, k["rmax"] - k["t"].sum(), 0.0)


@settings(max_examples=100, deadline=None)
@given(parents(capped=False))
def test_without_a_cap_bounds_and_the_bucket_total_stay_within_half_its_largest_doc(kids):
    want, _, _ = full_walk(kids)
    _, b, _ = windowed_walk(kids)
    largest = max(float(k["t"].max()) for k in kids)
    assert b.max() <= largest / 2 + SLACK
    realized = sum(float(k["t"][f].sum()) for k, f in zip(kids, want, strict=True))
    assert abs(sum(k["r"] for k in kids) - realized) <= largest / 2 + 1e-6


def test_a_large_document_widens_only_the_next_siblings_window():
    rng = np.random.default_rng(0)
    kids = []
    for c in range(5):
        t = rng.integers(10, 60, 400)
        if c == 1:
            t[7] = 5_000
        pool = float(t.sum())
        kids.append({"t": t, "r": 0.37 * pool, "rmax": pool, "bins": np.arange(400) // 8})
    want, _, _ = full_walk(kids)
    got, b, sizes = windowed_walk(kids)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)
    # only child 2 can receive the large carry; its siblings' shares absorb it
    assert b[2] >= 2_500 and max(b[0], b[1], b[3], b[4]) < 100
    assert sizes[3] <= 40 and sizes[4] <= 40  # a few bins of 8, not the whole child
