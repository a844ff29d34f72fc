"""Crosswalk math between two codebook versions, as plain numpy/scipy functions (driver).

Everything here takes the small contingency table of a crosswalk (from-cells × to-cells,
token or document counts) or two codebooks' centroids; nothing touches Spark, so it is
testable in milliseconds and the Spark side only has to build the table.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment, nnls

from hermes_spark.errors import InvalidInputError
from hermes_spark.quantize.metrics import entropy

__all__ = [
    "agreement_from_sums",
    "ari_from_table",
    "best_match_share",
    "carry_weights",
    "match_codes",
    "nmi_from_table",
    "plain_carry",
    "realized",
]

#: Weight of the "sums to one" row appended to the NNLS system.
_SUM_ROW = 1e3


def _table(table: np.ndarray) -> np.ndarray:
    arr = np.asarray(table, dtype=np.float64)
    if arr.ndim != 2 or (arr < 0).any() or not np.isfinite(arr).all():
        raise InvalidInputError("a crosswalk table must be a 2-D array of non-negative counts")
    return arr


def nmi_from_table(table: np.ndarray) -> float:
    """NMI (arithmetic-mean normaliser, scikit-learn's default) of two partitions given
    their contingency table of document counts."""
    t = _table(table)
    n = t.sum()
    h_r, h_c = entropy(t.sum(axis=1)), entropy(t.sum(axis=0))
    if h_r == 0.0 and h_c == 0.0:
        return 1.0
    nz = t > 0
    outer = np.outer(t.sum(axis=1), t.sum(axis=0))[nz]
    vals = t[nz]
    mi = max(float((vals / n * (np.log(vals) + np.log(n) - np.log(outer))).sum()), 0.0)
    denom = (h_r + h_c) / 2.0
    return float(min(mi / denom, 1.0)) if denom > 0 else 0.0


def ari_from_table(table: np.ndarray) -> float:
    """Adjusted Rand index of two partitions given their contingency table of counts."""
    t = _table(table)

    def comb2(v: np.ndarray) -> float:
        return float((v * (v - 1) / 2.0).sum())

    total = comb2(np.asarray([t.sum()]))
    if total == 0:
        return 1.0
    cells, rows, cols = comb2(t), comb2(t.sum(axis=1)), comb2(t.sum(axis=0))
    expected = rows * cols / total
    max_index = (rows + cols) / 2.0
    if max_index == expected:
        return 1.0
    return float((cells - expected) / (max_index - expected))


def best_match_share(table: np.ndarray) -> np.ndarray:
    """Per from-cell (row): the share of its mass in its best-matching to-cell."""
    t = _table(table)
    rows = t.sum(axis=1)
    share: np.ndarray = np.divide(t.max(axis=1), rows, out=np.zeros_like(rows), where=rows > 0)
    return share


def _columns_normalised(table: np.ndarray) -> np.ndarray:
    """``A[i, j]`` = share of to-cell ``j``'s mass that lies in from-cell ``i``."""
    cols = table.sum(axis=0)
    shares: np.ndarray = np.divide(table, cols, out=np.zeros_like(table), where=cols > 0)
    return shares


def realized(table: np.ndarray, to_weights: np.ndarray) -> np.ndarray:
    """The from-cell mixture a sample with ``to_weights`` over to-cells realizes."""
    return _columns_normalised(_table(table)) @ np.asarray(to_weights, dtype=np.float64)


def _target(table: np.ndarray, from_weights: np.ndarray) -> np.ndarray:
    p = np.asarray(from_weights, dtype=np.float64)
    if p.shape != (table.shape[0],) or (p < 0).any() or p.sum() <= 0:
        raise InvalidInputError(
            f"from-weights must be {table.shape[0]} non-negative numbers with a positive sum"
        )
    target: np.ndarray = p / p.sum()
    return target


def plain_carry(table: np.ndarray, from_weights: np.ndarray) -> np.ndarray:
    """Token-mass mapping: each from-cell's weight split over the to-cells by its tokens."""
    t = _table(table)
    p = _target(t, from_weights)
    rows = t.sum(axis=1, keepdims=True)
    share = np.divide(t, rows, out=np.zeros_like(t), where=rows > 0)
    w = share.T @ p
    return w / w.sum() if w.sum() > 0 else np.full(t.shape[1], 1.0 / t.shape[1])


def carry_weights(table: np.ndarray, from_weights: np.ndarray) -> tuple[np.ndarray, float]:
    """To-cell weights whose sample best realizes ``from_weights`` in from-cells.

    Non-negative least squares on the column-normalised crosswalk with a heavy
    "sums to one" row, then normalised; the plain token-mass mapping is kept instead when
    it realizes the target at least as well. Returns ``(weights, residual)`` with the
    residual the L2 distance between the realized and the wanted from-mixture.
    """
    t = _table(table)
    p = _target(t, from_weights)
    a = _columns_normalised(t)
    system = np.vstack([a, np.full((1, t.shape[1]), _SUM_ROW)])
    w, _ = nnls(system, np.append(p, _SUM_ROW), maxiter=50 * max(t.shape[1], 10))
    plain = plain_carry(t, p)
    candidates = [plain] if w.sum() <= 0 else [w / w.sum(), plain]
    scored = [(float(np.linalg.norm(a @ c - p)), i) for i, c in enumerate(candidates)]
    residual, best = min(scored)
    return candidates[best], residual


def match_codes(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Renumbering of ``new`` centroids so each keeps the number of the old centroid it
    matches best (Hungarian assignment on squared distance).

    Returns ``order`` with ``new[order]`` the renumbered centroids: row ``i`` of the
    result is the new centroid matched to old code ``i``. Both arrays are ``(K, d)``.
    """
    o, n = np.asarray(old, dtype=np.float64), np.asarray(new, dtype=np.float64)
    if o.ndim != 2 or o.shape != n.shape:
        raise InvalidInputError(
            f"centroids to match must have one shape (K, d), got {o.shape} and {n.shape}"
        )
    cost = (o * o).sum(1)[:, None] - 2.0 * o @ n.T + (n * n).sum(1)[None, :]
    rows, cols = linear_sum_assignment(cost)
    order = np.empty(o.shape[0], dtype=np.int64)
    order[rows] = cols
    return order


def agreement_from_sums(
    n: float, cells: tuple[float, float], rows: tuple[float, float], cols: tuple[float, float]
) -> dict[str, float]:
    """NMI and ARI from the sums a distributed contingency table reduces to.

    Each pair is ``(Σ x·log x, Σ x(x-1)/2)`` over the cells, the row totals and the column
    totals of a table of ``n`` documents; the Spark crosswalk aggregates these per level so
    no table reaches the driver. Same definitions as :func:`nmi_from_table` and
    :func:`ari_from_table`.
    """
    if n <= 0:
        return {"nmi": 0.0, "ari": 0.0}
    log_n = float(np.log(n))
    h_r, h_c = log_n - rows[0] / n, log_n - cols[0] / n
    mi = max((cells[0] + n * log_n - rows[0] - cols[0]) / n, 0.0)
    denom = (h_r + h_c) / 2.0
    if h_r <= 1e-15 and h_c <= 1e-15:
        nmi = 1.0
    else:
        nmi = float(min(mi / denom, 1.0)) if denom > 0 else 0.0
    total = n * (n - 1) / 2.0
    expected = rows[1] * cols[1] / total if total else 0.0
    max_index = (rows[1] + cols[1]) / 2.0
    ari = (
        1.0
        if total == 0 or max_index == expected
        else (cells[1] - expected) / (max_index - expected)
    )
    return {"nmi": nmi, "ari": float(ari)}
