"""The boundary walk of Stage-2 selection: per-child windows and the sibling carry.

Inside a Stage-1 bucket the children are walked in child id order; child ``k`` gets the
target ``T_k = r_k + c_{k-1}`` (``c_0 = 0``), walks to the goal ``g_k = clip(T_k, 0,
rmax_k)`` (:func:`hermes_spark.sampling.allocate.take_prefix`: ``n = #{i : S_i - t_i/2 <
g_k}`` in ``(u, doc_id)`` order, realized ``R_k = S_n``) and passes ``c_k = T_k - R_k`` on.

**Why a child's window only needs ``|c_{k-1}|``.** With ``0 <= r_k <= rmax_k`` clipping
moves the goal towards ``r_k``, so ``|g_k - r_k| <= |c_{k-1}|``. A document whose whole
bin ends before ``r_k - B`` has ``S_i - t_i/2 < r_k - B <= g_k`` (taken); one whose bin
starts after ``r_k + B`` has ``S_i - t_i/2 >= r_k + B >= g_k`` (not taken). So with
``B >= |c_{k-1}|`` only the bins within ``r_k ± B`` need sorting, and the result is the
walk over the whole pool.

**The bound on the carry** (:func:`carry_bounds`, from one row per child). Let ``e_k =
g_k - R_k`` and ``t_max`` the child's largest pool document. Between the first and the
last document ``|e_k| <= t_max/2`` (the walk stops at a midpoint); ``n = 0`` gives
``0 <= e_k <= t_1/2``; ``n = N`` gives ``-t_N/2 < e_k <= rmax_k - P_k``. So ``|e_k| <=
E_k = max(t_max/2, rmax_k - P_k)``. Given ``|c_{k-1}| <= C``:

- unclipped goal: ``c_k = e_k``, ``|c_k| <= E_k``;
- ``T_k < 0``: ``g_k = 0`` takes nothing, ``c_k = T_k``, ``|c_k| <= C - r_k``;
- ``T_k > rmax_k``: ``c_k = (T_k - rmax_k) + e_k``, ``|c_k| <= C + r_k - rmax_k + E_k``,
  where ``e_k = rmax_k - P_k`` once ``rmax_k >= P_k`` (every midpoint is below the goal).

``C_k`` is the largest of the cases that ``r_k ± C`` makes possible. Without an epoch cap
(``rmax = P``) the last case takes the whole pool (``e_k = 0``, ``|c_k| <= C``), so every
bound stays within half the bucket's largest document (and so does the bucket's total
error, its last carry); a child after siblings of small documents gets a window of a bin
or two instead of one as wide as the bucket's largest document. Under a fractional epoch
cap the bound grows by what the cap withholds; it stays exact, only wider.

**How it runs.** :func:`order_window` sorts one child's window documents (a pandas group
per child) and gives each its midpoint; :func:`resolve_goals` chains the carries of one
Stage-1 bucket over the few midpoints within each child's ``r ± B`` (plus one base row per
child) and returns each child's goal; a document is then taken once more iff its midpoint
is below its child's goal. Every step is a function of the data and the seed only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hermes_spark.schema import lineage_of, lineage_schema

#: Tokens added to every bound: covers float rounding of ``r ± B``; it only widens windows.
SLACK = 1.0
#: Output schema of :func:`order_window` (before the optional source column).
ORDERED_SCHEMA = (
    "parent long, child long, doc_id string, t long, full long, r double, rmax double, "
    "s0 long, b double, mid double"
)
GOALS_SCHEMA = "child long, x double"


def _next_bound(c: float, r: float, rmax: float, pool: float, tmax: float) -> float:
    """Bound on ``|c_k|`` given ``|c_{k-1}| <= c`` (the cases of the module docstring)."""
    e = max(tmax / 2.0, rmax - pool, 0.0)
    out = e  # the unclipped case is always possible: 0 <= r <= rmax
    if r - c < 0.0:
        out = max(out, c - r)
    if r + c > rmax:  # the goal is rmax; from rmax >= P on, the whole pool is taken
        e_cap = rmax - pool if rmax >= pool else e
        out = max(out, c + r - rmax + e_cap)
    return out


def carry_bounds(kids: pd.DataFrame) -> np.ndarray:
    """Per child, a bound ``B`` with ``|g - r| <= B`` (driver; one row per active child).

    ``kids``: ``parent, child, r, rmax, pool_tokens, max_tokens``. Returns ``B`` in the
    rows' order (``SLACK`` included).
    """
    order = np.lexsort((kids["child"].to_numpy(), kids["parent"].to_numpy()))
    parent = kids["parent"].to_numpy()[order]
    cols = [kids[c].to_numpy(dtype=np.float64)[order] for c in ("r", "rmax", "pool_tokens")]
    tmax = kids["max_tokens"].to_numpy(dtype=np.float64)[order]
    out = np.empty(len(kids), dtype=np.float64)
    c = 0.0
    for i in range(len(kids)):
        if i == 0 or parent[i] != parent[i - 1]:
            c = 0.0
        r, rmax, pool = cols[0][i], cols[1][i], cols[2][i]
        out[order[i]] = c + max(0.0, -r) + SLACK
        c = _next_bound(c, r, rmax, pool, tmax[i])
    return out


def order_window(pdf: pd.DataFrame) -> pd.DataFrame:
    """One child's window documents in ``(u, doc_id)`` order with their midpoints (executor).

    ``mid = cumsum(t) - t/2`` relative to the tokens ``s0`` before the window, computed as
    :func:`~hermes_spark.sampling.allocate.take_prefix` does.
    """
    pdf = pdf.sort_values(["u", "doc_id"], kind="mergesort").reset_index(drop=True)
    t = pdf["t"].to_numpy(dtype=np.float64)
    out = pdf.drop(columns=["u"])
    out["mid"] = np.cumsum(t) - t / 2
    return out


def resolve_goals(pdf: pd.DataFrame) -> pd.DataFrame:
    """Chain the carries of one Stage-1 bucket; each child's goal relative to ``s0`` (executor).

    Rows per child: one ``kind = 0`` row whose ``t`` is the window tokens with a midpoint
    below ``r - B`` (always taken), and one ``kind = 1`` row per window document with a
    midpoint within ``r ± B`` (``mid, t``). Returns ``child, x``: a window document is
    taken once more iff ``mid < x``.
    """
    pdf = pdf.sort_values(["child", "kind", "mid"], kind="mergesort").reset_index(drop=True)
    child = pdf["child"].to_numpy(dtype=np.int64)
    kind = pdf["kind"].to_numpy()
    mid = pdf["mid"].to_numpy(dtype=np.float64)
    tok = pdf["t"].to_numpy(dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, child[1:] != child[:-1]])
    ends = np.r_[starts[1:], len(pdf)]
    xs = np.empty(len(starts), dtype=np.float64)
    carry = 0.0
    for j, (lo, hi) in enumerate(zip(starts, ends, strict=True)):
        s0 = float(pdf["s0"].iat[lo])
        target = float(pdf["r"].iat[lo]) + carry
        goal = min(max(target, 0.0), float(pdf["rmax"].iat[lo]))
        x = goal - s0
        base = int(tok[lo:hi][kind[lo:hi] == 0].sum())
        taken = (kind[lo:hi] == 1) & (mid[lo:hi] < x)
        carry = target - (s0 + float(base + int(tok[lo:hi][taken].sum())))
        xs[j] = x
    return pd.DataFrame({"child": child[starts], "x": xs})


def walk_windows(inside: DataFrame) -> DataFrame:
    """Manifest rows of the window documents (lazy; executors, grouped by child then by
    Stage-1 bucket over the few midpoints near each goal).

    ``inside``: ``parent, child, doc_id, u, t, full, r, rmax, s0, b`` (+ lineage columns).
    """
    schema = ORDERED_SCHEMA + lineage_schema(inside.columns)
    ordered = inside.groupBy("child").applyInPandas(order_window, schema)
    mid, s0 = F.col("mid"), F.col("s0")
    low = F.col("r") - F.col("b") - s0
    high = F.col("r") + F.col("b") - s0
    keys = ["parent", "child", "r", "rmax", "s0"]
    base = ordered.groupBy(*keys).agg(
        F.coalesce(F.sum(F.when(mid < low, F.col("t"))), F.lit(0)).cast("long").alias("t")
    )
    rows = ["parent", "child", "kind", "mid", "t", "r", "rmax", "s0"]
    base = base.withColumn("kind", F.lit(0)).withColumn("mid", F.lit(None).cast("double"))
    near = ordered.where(mid.between(low, high)).withColumn("kind", F.lit(1))
    goals = (
        base.select(*rows)
        .unionByName(near.select(*rows))
        .groupBy("parent")
        .applyInPandas(resolve_goals, GOALS_SCHEMA)
    )
    repeats = F.col("full") + (mid < F.col("x")).cast("long")
    return (
        ordered.join(F.broadcast(goals), "child")
        .withColumn("repeats", repeats.cast("int"))
        .where(F.col("repeats") >= 1)
        .select(
            "doc_id",
            F.col("parent").alias("stage1_bucket"),
            F.col("child").alias("stage2_bucket"),
            "repeats",
            F.col("t").cast("int").alias("tokens"),
            *lineage_of(inside.columns),
        )
    )
