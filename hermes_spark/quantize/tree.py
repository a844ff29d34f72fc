"""Per-parent (tree-structured) residual codebooks: the hierarchical k-means option of RVQ.

With shared residual codebooks every stage-``k`` cell is split by the same ``K_k``
codewords. Here each parent cell (the packed prefix of the earlier stages) gets its own
``K_k`` codewords, fitted on the residuals of that parent's rows only:

- ``per_parent``: a fresh k-means++ / Lloyd k-means per parent (hierarchical k-means);
  a parent with fewer training rows than ``K_k`` refines the shared codebook instead;
- ``refined``: the shared residual codebook, refined by Lloyd iterations per parent
  (codewords no row of the parent uses stay where the shared fit put them).

Parents without a training row, or with fewer than ``min_rows_per_code * K_k`` (the
``fit.parent_min_rows`` option), keep the shared codebook: a codebook fitted on a
handful of rows per codeword over-fits them and splits held-out rows worse than the
shared one. Driver side, numpy only; called
by :func:`hermes_spark.quantize.rvq.fit_rvq`.
"""

from __future__ import annotations

import math

import numpy as np

from hermes_spark.quantize.rvq import kmeans

__all__ = ["STAGE_BOOKS", "fit_parent_books", "parent_depths"]

#: Values of ``fit.stage_books``: shared residual codebooks, or one codebook per parent.
STAGE_BOOKS = ("shared", "per_parent", "refined")


def parent_depths(stage_books: str, n_levels: int) -> tuple[int, ...]:
    """Parent depth per stage: 0 everywhere when shared, else stage ``k`` keyed by its whole
    prefix (``k - 1`` earlier stages); stage 1 is always one shared codebook."""
    if stage_books == "shared":
        return (0,) * n_levels
    return tuple(range(n_levels))


def fit_parent_books(
    residual: np.ndarray,
    parent: np.ndarray,
    n_parents: int,
    shared: np.ndarray,
    rng: np.random.Generator,
    *,
    n_iter: int,
    max_points_per_centroid: int,
    fresh: bool,
    min_rows_per_code: float = 0.0,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, int]]:
    """``(n_parents * K, r)`` codebooks, parent ``p`` in rows ``p*K .. p*K+K-1``.

    ``residual`` are the training rows' residuals after the earlier stages and ``parent``
    their packed prefix; each parent trains on at most ``K * max_points_per_centroid`` of
    its own rows (seeded subsample); a parent needs at least ``min_rows_per_code * K``
    rows (and one) for a codebook of its own. Returns the books and how many parents were
    fitted fresh, refined from ``shared``, left at ``shared`` (too few rows) or, with
    ``init``, started from their own block (``warm``).

    ``init`` (``(n_parents * K, r)``, a warm start) starts each parent's Lloyd iterations
    from its own block instead of k-means++ or ``shared``; a parent with too few rows
    keeps its starting block then, so its codes keep their meaning.
    """
    k = shared.shape[0]
    books = np.tile(shared, (n_parents, 1)) if init is None else init.astype(np.float32)
    order = np.argsort(parent, kind="stable")
    counts = np.bincount(parent, minlength=n_parents)
    starts = np.concatenate([[0], np.cumsum(counts)])
    tally = {"fresh": 0, "refined": 0, "shared": 0, **({"warm": 0} if init is not None else {})}
    cap = k * max_points_per_centroid
    need = max(1, math.ceil(min_rows_per_code * k))
    for p in range(n_parents):
        rows = order[starts[p] : starts[p + 1]]
        if rows.size < need:
            tally["shared"] += 1
            continue
        if rows.size > cap:
            rows = np.sort(rng.choice(rows, size=cap, replace=False))
        train = residual[rows]
        if init is not None:
            start = init[p * k : (p + 1) * k]
            centroids, _, _ = kmeans(train, k, rng, n_iter, start, split_empty=False)
            tally["warm"] += 1
        elif fresh and rows.size >= k:
            centroids, _, _ = kmeans(train, k, rng, n_iter)
            tally["fresh"] += 1
        else:
            centroids, _, _ = kmeans(train, k, rng, n_iter, shared, split_empty=False)
            tally["refined"] += 1
        books[p * k : (p + 1) * k] = centroids
    return books, tally
