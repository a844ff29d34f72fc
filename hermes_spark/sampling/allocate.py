"""Two-stage allocation math (SPEC "Two-stage sampling — exact semantics"); pure numpy/pandas.

Runs on the driver over per-bucket statistics. Stage 1 turns weights into per-bucket
token targets capped at ``E`` epochs of supply; Stage 2 splits each target over the
bucket's children; :func:`child_selection_plan` and :func:`take_prefix` give the
per-child document rule that the Spark selector applies.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from hermes_spark.errors import BudgetError, InvalidConfigError, InvalidInputError
from hermes_spark.sampling.rules.registry import parse_rule

logger = logging.getLogger(__name__)

CHILD_COLUMNS: tuple[str, ...] = ("parent", "child", "tokens", "pool_tokens", "pool_docs", "docs")
_PASS_TOL = 1e-9


def _check_max_epochs(max_epochs: float) -> float:
    value = float(max_epochs)
    if not value > 0:  # also rejects NaN; +inf means "no epoch cap"
        raise InvalidConfigError(f"max_epochs must be > 0, got {max_epochs!r}")
    return value


def _water_fill(
    caps: np.ndarray, weights: np.ndarray, total: float
) -> tuple[np.ndarray, float, np.ndarray]:
    """Water-fill ``total`` by ``weights`` under ``caps``; also return the capped mask."""
    caps = np.asarray(caps, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if caps.ndim != 1 or caps.shape != weights.shape:
        raise BudgetError(
            f"caps and weights must be 1-D of one length, got {caps.shape}, {weights.shape}"
        )
    if np.isnan(caps).any() or (caps < 0).any():
        raise BudgetError("caps must be >= 0 (inf allowed)")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise BudgetError("weights must be finite and >= 0")
    if not (math.isfinite(total) and total >= 0):
        raise BudgetError(f"total must be finite and >= 0, got {total!r}")
    alloc = np.zeros_like(caps)
    capped = np.zeros(caps.shape, dtype=bool)
    live = np.flatnonzero(weights > 0)
    # Capping in increasing order of cap/weight is the fixed point of "cap whatever exceeds
    # its cap, hand the excess to the uncapped in proportion to their weights".
    # (a subnormal weight makes cap/weight overflow to inf: it is capped last, as it should)
    with np.errstate(over="ignore", divide="ignore"):
        order = live[np.argsort(caps[live] / weights[live], kind="stable")]
    left = float(total)
    # weight still uncapped at each position, as suffix sums (no cancellation from
    # subtracting each capped weight from a running total)
    suffix = np.cumsum(weights[order][::-1])[::-1]
    for pos, i in enumerate(order):
        rest, wleft = order[pos:], float(suffix[pos])
        if left * weights[i] < caps[i] * wleft:
            alloc[rest] = np.minimum(left * (weights[rest] / wleft), caps[rest])
            return alloc, 0.0, capped
        alloc[i], capped[i] = caps[i], True
        left -= caps[i]
    return alloc, max(float(total) - float(alloc.sum()), 0.0), capped


def water_fill(caps: np.ndarray, weights: np.ndarray, total: float) -> tuple[np.ndarray, float]:
    """Split ``total`` in proportion to ``weights`` with ``alloc[i] <= caps[i]``.

    Buckets whose share exceeds their cap are capped and the excess goes to the uncapped
    ones in proportion to their weights, until nothing is left or all are capped.
    Zero-weight buckets get nothing. Returns the allocation and the shortfall
    (``total - alloc.sum()``, 0 unless every positive-weight bucket is capped).

    Raises:
        BudgetError: shapes differ, negative/NaN weights or caps, non-finite total.
    """
    alloc, shortfall, _ = _water_fill(caps, weights, total)
    return alloc, shortfall


def _aligned_nonneg(series: pd.Series, what: str) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce").astype(np.float64)
    if not np.isfinite(values.to_numpy()).all() or (values < 0).any():
        raise BudgetError(f"{what} must be finite and >= 0")
    if values.index.has_duplicates:
        raise InvalidInputError(f"{what} lists a bucket more than once")
    return values


def stage1_targets(
    weights: pd.Series, supply_tokens: pd.Series, budget: float, max_epochs: float
) -> tuple[pd.DataFrame, float]:
    """Stage-1 targets ``T_b = W_b·B`` water-filled against ``cap_b = E·supply_b``.

    Args:
        weights: ``W_b`` indexed by bucket (normalised here to sum 1).
        supply_tokens: tokens of every non-empty bucket, indexed by bucket; buckets absent
            from ``weights`` get weight 0.
        budget: ``B`` tokens.
        max_epochs: ``E``.

    Returns:
        A frame indexed by bucket (sorted) with ``weight, supply, cap, target_raw, target,
        capped`` and the shortfall ``B - Σ target``.

    Raises:
        BudgetError: bad budget or weights, or weights for buckets without supply.
        InvalidConfigError: ``max_epochs <= 0``.
    """
    if not (math.isfinite(budget) and budget > 0):
        raise BudgetError(f"budget must be a finite number of tokens > 0, got {budget!r}")
    epochs = _check_max_epochs(max_epochs)
    w = _aligned_nonneg(weights, "Stage-1 weights")
    supply = _aligned_nonneg(supply_tokens, "bucket supply tokens").sort_index()
    extra = w.index.difference(supply.index)
    if len(extra):
        raise BudgetError(f"weights given for bucket(s) with no supply: {list(extra[:20])}")
    w = w.reindex(supply.index, fill_value=0.0)
    if w.sum() <= 0:
        raise BudgetError("Stage-1 weights sum to 0; nothing to sample")
    w = w / w.sum()
    cap = epochs * supply
    alloc, shortfall, capped = _water_fill(cap.to_numpy(), w.to_numpy(), float(budget))
    frame = pd.DataFrame(
        {
            "weight": w,
            "supply": supply,
            "cap": cap,
            "target_raw": w * float(budget),
            "target": alloc,
            "capped": capped,
        },
        index=supply.index,
    )
    if shortfall > 0:
        logger.warning(
            "Stage 1: every weighted bucket is capped at %s epochs; %.6g of %.6g budget "
            "tokens cannot be met",
            epochs,
            shortfall,
            budget,
        )
    return frame, shortfall


def parse_stage2_rule(rule: str) -> tuple[str, float | None]:
    """Parse ``random``, ``coverage``, ``quality-top:p``, ``target-top:p`` (``0 < p <= 1``)
    or ``quadmix[:PATH]`` into (name, p) (``p`` None but for the ``-top`` rules); the rule
    object is :func:`hermes_spark.sampling.rules.registry.parse_rule`'s."""
    return parse_rule(rule, check_files=False).as_tuple()


def _checked_children(children: pd.DataFrame) -> pd.DataFrame:
    missing = set(CHILD_COLUMNS) - set(children.columns)
    if missing:
        raise InvalidInputError(f"Stage-2 child statistics lack column(s) {sorted(missing)}")
    out = children.loc[:, list(CHILD_COLUMNS)].copy()
    for col in ("parent", "child"):
        if not pd.api.types.is_integer_dtype(out[col].dtype) or out[col].isna().any():
            raise InvalidInputError(f"Stage-2 child statistics: {col!r} must hold integer ids")
        out[col] = out[col].astype(np.int64)
    nums = (
        out[["tokens", "pool_tokens", "pool_docs", "docs"]]
        .apply(pd.to_numeric, errors="coerce")
        .astype(np.float64)
    )
    if not np.isfinite(nums.to_numpy()).all() or (nums < 0).to_numpy().any():
        raise InvalidInputError("Stage-2 child statistics: counts must be finite and >= 0")
    if (nums["pool_tokens"] > nums["tokens"]).any() or (nums["pool_docs"] > nums["docs"]).any():
        raise InvalidInputError("Stage-2 child statistics: a pool is larger than its child")
    out[nums.columns] = nums
    if out["child"].duplicated().any():
        raise InvalidInputError("Stage-2 child statistics list a child more than once")
    return out.sort_values(["parent", "child"], kind="stable").reset_index(drop=True)


def stage2_allocation(
    stage1: pd.DataFrame, children: pd.DataFrame, rule: str, max_epochs: float
) -> pd.DataFrame:
    """Split each Stage-1 ``target`` over the bucket's non-empty children.

    Every child is capped at ``E · pool_tokens``; ``random``, ``quality-top:p`` and
    ``target-top:p`` weight children by their tokens, ``coverage`` equally (the
    maximum-entropy allocation under the caps). For ``random``/``coverage`` the pool is the
    whole child (``pool_tokens == tokens``); for the ``-top`` rules the caller gives the
    tokens of the documents at or above the child's ``(1-p)`` quantile of the score
    (quality, or the similarity to the target examples).

    Args:
        stage1: the frame of :func:`stage1_targets` (index bucket, column ``target``).
        children: columns ``parent, child, tokens, pool_tokens, pool_docs, docs``.
        rule: the Stage-2 rule string.
        max_epochs: ``E``.

    Returns:
        One row per child, sorted by (parent, child): the input columns plus ``share``
        (the child's weight within its parent), ``cap``, ``alloc``, ``expected_repeats``
        (``alloc / pool_tokens``), ``full_passes`` and ``remainder`` (see
        :func:`child_selection_plan`), ``parent_target`` and ``parent_unmet`` (the part
        of the parent's target its children cannot absorb).

    Raises:
        InvalidInputError: bad child table, or a parent with a target but no children.
    """
    stage2 = parse_rule(rule, check_files=False)
    epochs = _check_max_epochs(max_epochs)
    if "target" not in stage1.columns:
        raise InvalidInputError("Stage-1 frame lacks column 'target'")
    kids = _checked_children(children)
    targets = stage1["target"].astype(np.float64)
    orphans = kids.loc[~kids["parent"].isin(targets.index), "parent"].unique()
    if len(orphans):
        raise InvalidInputError(f"children name unknown Stage-1 bucket(s) {list(orphans[:20])}")
    childless = targets[(targets > 0) & ~targets.index.isin(kids["parent"])]
    if len(childless):
        raise InvalidInputError(
            f"Stage-1 bucket(s) {list(childless.index[:20])} have a target but no children"
        )
    parent = kids["parent"].to_numpy()
    pool = kids["pool_tokens"].to_numpy()
    caps = epochs * pool
    weights = stage2.child_weights(kids["tokens"].to_numpy())
    parent_target = targets.reindex(parent).to_numpy()
    share, alloc, unmet = (np.zeros(len(kids)) for _ in range(3))
    starts = np.flatnonzero(np.r_[True, parent[1:] != parent[:-1]]) if len(parent) else parent
    for lo, hi in zip(starts, np.r_[starts[1:], len(kids)], strict=True):
        seg = slice(lo, hi)
        alloc[seg], unmet[seg], _ = _water_fill(caps[seg], weights[seg], parent_target[lo])
        wsum = weights[seg].sum()
        share[seg] = weights[seg] / wsum if wsum > 0 else 0.0
    kids["share"] = share
    kids["cap"] = caps
    kids["alloc"] = alloc
    with np.errstate(divide="ignore", invalid="ignore"):
        kids["expected_repeats"] = np.where(pool > 0, alloc / pool, 0.0)
    plans = [child_selection_plan(a, p) for a, p in zip(alloc, pool, strict=True)]
    kids["full_passes"] = np.array([f for f, _ in plans], dtype=np.int64)
    kids["remainder"] = np.array([r for _, r in plans], dtype=np.float64)
    kids["parent_target"] = parent_target
    kids["parent_unmet"] = unmet
    total_unmet = float(unmet[starts].sum())
    if total_unmet > 0:
        logger.warning(
            "Stage 2 (%s): %.6g target tokens cannot be met by the pools", rule, total_unmet
        )
    return kids


def child_selection_plan(alloc: float, pool_tokens: float) -> tuple[int, float]:
    """Return ``(floor(a/P), a - floor(a/P)·P)``: full passes over the pool, then the share.

    A quotient within 1e-9 (relative) below an integer counts as that integer, so a
    child capped at exactly ``E`` epochs gets ``E`` full passes and no remainder.

    Raises:
        BudgetError: negative/non-finite values, or ``alloc > 0`` with an empty pool.
    """
    a, p = float(alloc), float(pool_tokens)
    if not (math.isfinite(a) and math.isfinite(p) and a >= 0 and p >= 0):
        raise BudgetError(f"allocation and pool must be finite and >= 0, got {a!r}, {p!r}")
    if p == 0:
        if a > 0:
            raise BudgetError(f"allocation {a:.6g} tokens for an empty pool")
        return 0, 0.0
    q = a / p
    full = math.floor(q * (1 + _PASS_TOL))
    return full, max(a - full * p, 0.0)


def take_prefix(tokens_in_u_order: np.ndarray, remaining: float) -> int:
    """Number of documents to take walking the pool in ``u`` order to approach ``remaining``.

    A document is taken while taking it brings the running total closer to
    ``remaining`` (``|S + t - r| < |S - r|``); the walk stops at the first document that
    would not. For ``t > 0`` this is ``S_{i-1} + S_i < 2r`` (the document's midpoint lies
    below ``r``); a zero-token document is taken by the same test, i.e. while the total
    is still below ``r``. The test is monotone in ``i``, so the answer is
    ``#{i : S_i - t_i/2 < r}`` and a distributed selector can find it from sums alone.

    Raises:
        InvalidInputError: negative or non-finite token counts.
        BudgetError: non-finite ``remaining``.
    """
    t = np.asarray(tokens_in_u_order, dtype=np.float64)
    if t.ndim != 1 or not np.isfinite(t).all() or (t < 0).any():
        raise InvalidInputError("document token counts must be a 1-D array of finite values >= 0")
    if not math.isfinite(remaining):
        raise BudgetError(f"remaining share must be finite, got {remaining!r}")
    midpoints = np.cumsum(t) - t / 2
    return int(np.searchsorted(midpoints, float(remaining), side="left"))


def stage2_argument(rule: str) -> str:
    """What follows the first ``:`` of a Stage-2 rule, case kept (a path for quadmix)."""
    return str(rule).strip().partition(":")[2].strip()
