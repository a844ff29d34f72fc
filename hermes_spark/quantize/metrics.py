"""Clustering and code-health metrics as plain numpy functions (no Spark, no scikit-learn).

Used by ``hermes evaluate`` on the driver, on a bounded sample of vectors; the label
metrics follow scikit-learn's definitions (NMI with the arithmetic mean, ARI, homogeneity,
completeness) and the geometric ones its silhouette, Davies-Bouldin and Calinski-Harabasz
scores, so the numbers can be compared with other tools'.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hermes_spark.errors import InvalidInputError

__all__ = [
    "adjusted_rand",
    "calinski_harabasz",
    "cell_mse",
    "code_usage",
    "collision_rate",
    "davies_bouldin",
    "entropy",
    "homogeneity_completeness",
    "label_scores",
    "normalized_mutual_info",
    "prefix_cells",
    "relative_mse",
    "silhouette_cosine",
]

#: Rows of the pairwise-distance block computed at once by the silhouette.
_SIL_BLOCK = 1024


def _dense(labels: np.ndarray | Sequence[object]) -> tuple[np.ndarray, int]:
    """Labels renumbered ``0..k-1`` (any hashable values) and ``k``."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise InvalidInputError(f"labels must be 1-D, got shape {arr.shape}")
    uniq, inv = np.unique(arr, return_inverse=True)
    return inv.astype(np.int64), int(uniq.shape[0])


def prefix_cells(codes: np.ndarray, sizes: Sequence[int], level: int) -> np.ndarray:
    """Packed prefix id of each row at ``level`` (``bucket_level`` of SPEC), int64."""
    cells = np.zeros(codes.shape[0], dtype=np.int64)
    for k in range(level):
        cells = cells * int(sizes[k]) + codes[:, k].astype(np.int64)
    return cells


def relative_mse(x: np.ndarray, reconstruction: np.ndarray) -> float:
    """Residual energy over total variance: ``sum ||x - x_hat||^2 / sum ||x - mean(x)||^2``."""
    x64 = np.asarray(x, dtype=np.float64)
    total = float(np.square(x64 - x64.mean(axis=0)).sum())
    err = float(np.square(x64 - np.asarray(reconstruction, dtype=np.float64)).sum())
    return err / total if total > 0 else 0.0


def cell_mse(x: np.ndarray, cells: np.ndarray) -> float:
    """Within-cell energy over total: ``sum_i ||x_i - mean(cell(i))||^2 / sum ||x - mean||^2``.

    The k-means objective of the partition ``cells`` in the space of ``x`` (each cell
    represented by the mean of its own rows), so it compares any two partitions of the same
    rows, whatever produced them; 0.0 when the rows have no spread.
    """
    arr, lab, k = _check_geometry(x, cells)
    total = float(np.square(arr - arr.mean(axis=0)).sum())
    if total <= 0:
        return 0.0
    cent, _ = _centroids(arr, lab, k)
    return float(np.square(arr - cent[lab]).sum()) / total


def entropy(counts: np.ndarray) -> float:
    """Shannon entropy (nats) of a count vector."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    if c.size == 0:
        return 0.0
    p = c / c.sum()
    return float(-(p * np.log(p)).sum())


def code_usage(cells: np.ndarray, cells_total: int) -> dict[str, float | int]:
    """Usage of ``cells_total`` cells by a sample: perplexity, non-empty, dead, balance.

    ``imbalance = cells_nonempty * sum n_i^2 / N^2`` (1.0 = perfectly balanced, SPEC),
    ``max_share`` the largest cell's share, ``dead`` the cells no sample row uses.
    """
    _, counts = np.unique(np.asarray(cells), return_counts=True)
    n = float(counts.sum())
    nonempty = int(counts.shape[0])
    if n == 0:
        return {
            "perplexity": 0.0,
            "cells_nonempty": 0,
            "dead": int(cells_total),
            "imbalance": 0.0,
            "max_share": 0.0,
        }
    return {
        "perplexity": float(np.exp(entropy(counts))),
        "cells_nonempty": nonempty,
        "dead": int(cells_total) - nonempty,
        "imbalance": float(nonempty * np.square(counts, dtype=np.float64).sum() / (n * n)),
        "max_share": float(counts.max() / n),
    }


def collision_rate(cells: np.ndarray) -> float:
    """Share of rows whose cell holds at least one other row (documents sharing a code)."""
    arr = np.asarray(cells)
    if arr.size == 0:
        return 0.0
    _, inv, counts = np.unique(arr, return_inverse=True, return_counts=True)
    return float((counts[inv] > 1).mean())


def _contingency(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    t, kt = _dense(truth)
    p, kp = _dense(pred)
    if t.shape != p.shape:
        raise InvalidInputError(f"label arrays differ in length: {t.shape[0]} vs {p.shape[0]}")
    return np.bincount(t * kp + p, minlength=kt * kp).reshape(kt, kp).astype(np.float64)


def _mutual_info(table: np.ndarray) -> float:
    n = table.sum()
    if n == 0:
        return 0.0
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    nz = table > 0
    outer = np.outer(rows, cols)[nz]
    vals = table[nz]
    return float(max((vals / n * (np.log(vals) + np.log(n) - np.log(outer))).sum(), 0.0))


def normalized_mutual_info(truth: np.ndarray, pred: np.ndarray) -> float:
    """NMI with the arithmetic-mean normaliser (scikit-learn's default)."""
    table = _contingency(truth, pred)
    h_t, h_p = entropy(table.sum(axis=1)), entropy(table.sum(axis=0))
    if h_t == 0.0 and h_p == 0.0:
        return 1.0
    mi = _mutual_info(table)
    denom = (h_t + h_p) / 2.0
    return float(min(mi / denom, 1.0)) if denom > 0 else 0.0


def homogeneity_completeness(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Homogeneity (each cell holds one class) and completeness (each class in one cell)."""
    table = _contingency(truth, pred)
    h_t, h_p = entropy(table.sum(axis=1)), entropy(table.sum(axis=0))
    mi = _mutual_info(table)
    homogeneity = 1.0 if h_t == 0 else mi / h_t
    completeness = 1.0 if h_p == 0 else mi / h_p
    return float(min(homogeneity, 1.0)), float(min(completeness, 1.0))


def adjusted_rand(truth: np.ndarray, pred: np.ndarray) -> float:
    """Adjusted Rand index (pair counting, chance-corrected)."""
    table = _contingency(truth, pred)
    n = table.sum()

    def comb2(v: np.ndarray) -> np.ndarray:
        pairs: np.ndarray = v * (v - 1) / 2.0
        return pairs

    sum_cells = float(comb2(table).sum())
    sum_rows = float(comb2(table.sum(axis=1)).sum())
    sum_cols = float(comb2(table.sum(axis=0)).sum())
    total = float(comb2(np.asarray(n)))
    if total == 0:
        return 1.0
    expected = sum_rows * sum_cols / total
    max_index = (sum_rows + sum_cols) / 2.0
    if max_index == expected:  # both partitions trivial in the same way
        return 1.0
    return float((sum_cells - expected) / (max_index - expected))


def label_scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """``nmi, ari, homogeneity, completeness`` of a clustering against reference labels."""
    homogeneity, completeness = homogeneity_completeness(truth, pred)
    return {
        "nmi": normalized_mutual_info(truth, pred),
        "ari": adjusted_rand(truth, pred),
        "homogeneity": homogeneity,
        "completeness": completeness,
    }


def _check_geometry(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    arr = np.asarray(x, dtype=np.float64)
    lab, k = _dense(labels)
    if arr.ndim != 2 or arr.shape[0] != lab.shape[0]:
        raise InvalidInputError(f"x {arr.shape} and labels {lab.shape} disagree")
    return arr, lab, k


def _centroids(x: np.ndarray, lab: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(lab, minlength=k).astype(np.float64)
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, lab, x)
    return sums / counts[:, None], counts


def silhouette_cosine(x: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean silhouette with cosine distance (``1 - cos``); ``None`` unless 2 <= k <= n-1.

    Singleton cells score 0, as in scikit-learn. Costs O(n^2 d) in blocks of rows.
    """
    arr, lab, k = _check_geometry(x, labels)
    n = arr.shape[0]
    if not 2 <= k <= n - 1:
        return None
    unit = arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)
    counts = np.bincount(lab, minlength=k).astype(np.float64)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), lab] = 1.0
    scores = np.empty(n)
    for start in range(0, n, _SIL_BLOCK):
        block = unit[start : start + _SIL_BLOCK]
        dist = np.maximum(1.0 - block @ unit.T, 0.0)
        dist[np.arange(block.shape[0]), np.arange(start, start + block.shape[0])] = 0.0
        per_cell = dist @ onehot  # sum of distances to every cell
        own = lab[start : start + _SIL_BLOCK]
        rows = np.arange(block.shape[0])
        own_n = counts[own]
        a = per_cell[rows, own] / np.maximum(own_n - 1.0, 1.0)
        mean_other = per_cell / counts[None, :]
        mean_other[rows, own] = np.inf
        b = mean_other.min(axis=1)
        s = (b - a) / np.maximum(np.maximum(a, b), 1e-300)
        s[own_n == 1] = 0.0
        scores[start : start + _SIL_BLOCK] = s
    return float(scores.mean())


def davies_bouldin(x: np.ndarray, labels: np.ndarray) -> float | None:
    """Davies-Bouldin index (lower is better); ``None`` with fewer than two cells."""
    arr, lab, k = _check_geometry(x, labels)
    if k < 2:
        return None
    cent, _ = _centroids(arr, lab, k)
    spread = np.zeros(k)
    np.add.at(spread, lab, np.linalg.norm(arr - cent[lab], axis=1))
    spread /= np.bincount(lab, minlength=k)
    sq = np.einsum("ij,ij->i", cent, cent)
    gap = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * cent @ cent.T, 0.0))
    if np.allclose(gap, 0.0) or np.allclose(spread, 0.0):
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (spread[:, None] + spread[None, :]) / gap
    ratio[~np.isfinite(ratio)] = 0.0
    np.fill_diagonal(ratio, 0.0)
    return float(ratio.max(axis=1).mean())


def calinski_harabasz(x: np.ndarray, labels: np.ndarray) -> float | None:
    """Calinski-Harabasz index (higher is better); ``None`` unless 2 <= k <= n-1."""
    arr, lab, k = _check_geometry(x, labels)
    n = arr.shape[0]
    if not 2 <= k <= n - 1:
        return None
    cent, counts = _centroids(arr, lab, k)
    mean = arr.mean(axis=0)
    between = float((counts * np.square(cent - mean).sum(axis=1)).sum())
    within = float(np.square(arr - cent[lab]).sum())
    if within == 0.0:
        return 1.0
    return float(between * (n - k) / (within * (k - 1)))
