"""Residual vector quantisation (RVQ): greedy multi-stage encoding and k-means fitting.

Stage ``k`` holds ``K_k`` centroids; a vector is encoded by picking, stage after stage, the
centroid nearest to what the previous stages left over. Nearest-centroid search uses
``||x||^2 - 2 x.C^T + ||C||^2`` with float32 matrix products on bounded row chunks.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from hermes_spark.errors import ArtifactError, InvalidConfigError, InvalidInputError
from hermes_spark.quantize.lst import as_float32_matrix

__all__ = [
    "RVQ",
    "check_level_sizes",
    "fit_rvq",
    "kmeans",
    "nearest_centroids",
    "nearest_in_parent",
    "refine_codebooks",
]

log = logging.getLogger(__name__)

#: Upper bound on elements of one (rows x centroids) distance block during search.
_MAX_BLOCK_ELEMS = 1 << 22
#: Relative size of the symmetric perturbation used when splitting a cluster.
_SPLIT_EPS = 1.0 / 1024.0


def _chunk_rows(n_centroids: int, dim: int) -> int:
    """Rows per chunk so that distance and residual blocks stay near ``_MAX_BLOCK_ELEMS``."""
    return max(1, _MAX_BLOCK_ELEMS // max(n_centroids, dim, 1))


def nearest_centroids(
    x: np.ndarray,
    centroids: np.ndarray,
    centroid_sq: np.ndarray | None = None,
    bias: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Index of and squared distance to the nearest centroid for each row of ``x``.

    Both inputs are float32 matrices with the same width. Returns ``(idx int32 (n,),
    dist float32 (n,))``; distances are clipped at zero. ``bias`` (one value per centroid)
    is added to the squared distances for the choice only (training-time size penalty);
    the returned distance is always the true one.
    """
    n = x.shape[0]
    k = centroids.shape[0]
    if centroid_sq is None:
        centroid_sq = np.einsum("ij,ij->i", centroids, centroids)
    if bias is not None:
        centroid_sq = centroid_sq + np.asarray(bias, dtype=np.float32)
    idx = np.empty(n, dtype=np.int32)
    dist = np.empty(n, dtype=np.float32)
    step = _chunk_rows(k, x.shape[1])
    for start in range(0, n, step):
        block = x[start : start + step]
        scores = block @ centroids.T
        scores *= -2.0
        scores += centroid_sq
        best = np.argmin(scores, axis=1)
        rows = np.arange(block.shape[0])
        idx[start : start + step] = best
        x_sq = np.einsum("ij,ij->i", block, block)
        chosen = scores[rows, best] + x_sq
        if bias is not None:
            chosen -= bias[best]
        dist[start : start + step] = np.maximum(chosen, 0.0)
    return idx, dist


def nearest_in_parent(
    x: np.ndarray, book: np.ndarray, parent: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest of the ``k`` codewords of each row's own parent: ``book`` is ``(P * k, r)``,
    parent ``p``'s codewords are rows ``p*k .. p*k+k-1``. Returns ``(idx int32 in [0, k),
    dist float32)`` like :func:`nearest_centroids`; ``P = 1`` is the shared case.

    With many rows per parent, rows are grouped by parent (a stable sort) and each group is
    searched with one matrix product against its parent's codewords; with few, each row's
    codewords are gathered in bounded chunks (:func:`_nearest_gathered`).
    """
    if book.shape[0] == k:
        return nearest_centroids(x, book)
    order = np.argsort(parent, kind="stable")
    ordered = parent[order]
    cuts = np.flatnonzero(np.diff(ordered)) + 1
    if x.shape[0] < _MIN_GROUP_ROWS * (len(cuts) + 1):
        return _nearest_gathered(x, book, parent, k)
    idx = np.empty(x.shape[0], dtype=np.int32)
    dist = np.empty(x.shape[0], dtype=np.float32)
    for start, stop in zip(
        np.concatenate([[0], cuts]), np.concatenate([cuts, [len(order)]]), strict=True
    ):
        if stop <= start:
            continue
        rows = order[start:stop]
        p = int(ordered[start])
        best, d = nearest_centroids(x[rows], book[p * k : (p + 1) * k])
        idx[rows], dist[rows] = best, d
    return idx, dist


#: Mean rows per parent from which grouping by parent beats gathering codewords per row.
_MIN_GROUP_ROWS = 32


def _nearest_gathered(
    x: np.ndarray, book: np.ndarray, parent: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_in_parent` by gathering each row's ``k`` codewords, in row chunks."""
    blocks = book.reshape(-1, k, book.shape[1])
    sq = np.einsum("pkr,pkr->pk", blocks, blocks)
    idx = np.empty(x.shape[0], dtype=np.int32)
    dist = np.empty(x.shape[0], dtype=np.float32)
    step = max(1, _MAX_BLOCK_ELEMS // max(k * x.shape[1], 1))
    for start in range(0, x.shape[0], step):
        block, par = x[start : start + step], parent[start : start + step]
        scores = np.matmul(blocks[par], block[:, :, None])[:, :, 0]
        scores *= -2.0
        scores += sq[par]
        best = np.argmin(scores, axis=1)
        chosen = scores[np.arange(block.shape[0]), best] + np.einsum("ij,ij->i", block, block)
        idx[start : start + step] = best
        dist[start : start + step] = np.maximum(chosen, 0.0)
    return idx, dist


def _packed(codes: np.ndarray, sizes: Sequence[int], depth: int) -> np.ndarray:
    """Packed prefix id of the first ``depth`` code columns (0 for depth 0), int64."""
    out = np.zeros(codes.shape[0], dtype=np.int64)
    for j in range(depth):
        out = out * int(sizes[j]) + codes[:, j]
    return out


def _sizes_from_books(books: Sequence[np.ndarray], depths: Sequence[int]) -> tuple[int, ...]:
    """Stage sizes of parent-indexed books: stage ``k`` holds ``prod(K_<depth_k) * K_k`` rows."""
    sizes: list[int] = []
    for i, (book, depth) in enumerate(zip(books, depths, strict=True)):
        if not 0 <= depth <= i:
            raise ArtifactError(f"RVQ stage {i + 1} cannot be keyed by {depth} earlier stages")
        parents = math.prod(sizes[:depth])
        if book.shape[0] % parents:
            raise ArtifactError(
                f"RVQ codebook {i} has {book.shape[0]} rows, not a multiple of {parents} parents"
            )
        sizes.append(book.shape[0] // parents)
    return tuple(sizes)


@dataclass(frozen=True, eq=False)
class RVQ:
    """A fitted residual quantiser: one float32 codebook per stage.

    ``parent_depths[k]`` (default all 0: shared books) is how many earlier stages key
    stage ``k``'s codebook: with depth ``d`` the book is ``(prod(K_1..K_d) * K_k, r)`` and
    a row uses the ``K_k`` codewords of its packed ``d``-stage prefix (tree-structured,
    per-parent codebooks). Codes stay in ``[0, K_k)`` either way.
    """

    codebooks: tuple[np.ndarray, ...]
    parent_depths: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        books = tuple(np.ascontiguousarray(c, dtype=np.float32) for c in self.codebooks)
        if not books:
            raise ArtifactError("RVQ needs at least one codebook")
        for i, c in enumerate(books):
            if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] < 1:
                raise ArtifactError(f"RVQ codebook {i} must be non-empty and 2-D, got {c.shape}")
            if c.shape[1] != books[0].shape[1]:
                raise ArtifactError(
                    f"RVQ codebook {i} has width {c.shape[1]}, expected {books[0].shape[1]}"
                )
            if not np.isfinite(c).all():
                raise ArtifactError(f"RVQ codebook {i} contains NaN or infinite values")
        depths = tuple(int(d) for d in self.parent_depths) or (0,) * len(books)
        if len(depths) != len(books):
            raise ArtifactError(f"RVQ has {len(books)} codebooks but {len(depths)} parent depths")
        object.__setattr__(self, "codebooks", books)
        object.__setattr__(self, "parent_depths", depths)
        _ = self.levels  # checks each book's rows against its parent depth now

    @cached_property
    def levels(self) -> tuple[int, ...]:
        """Codebook sizes ``(K_1, ..., K_L)``."""
        return _sizes_from_books(self.codebooks, self.parent_depths)

    @property
    def is_tree(self) -> bool:
        """Whether any stage has per-parent codebooks."""
        return any(self.parent_depths)

    def stage_parents(self, codes: np.ndarray, stage: int) -> np.ndarray:
        """Parent index of each row's codebook at 0-based ``stage`` (0 when shared)."""
        return _packed(codes, self.levels, self.parent_depths[stage])

    @property
    def dim(self) -> int:
        """Width ``r`` of the vectors this quantiser encodes."""
        return int(self.codebooks[0].shape[1])

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Greedy encode ``(n, r)`` rows.

        Returns codes ``(n, L)`` int32 and qerr ``(n, L)`` float32, the squared norm of the
        residual left after each stage. Stage ``k`` picks the centroid nearest to the residual
        left by stages ``< k``.
        """
        arr = as_float32_matrix(x, "RVQ input", self.dim)
        n, n_levels = arr.shape[0], len(self.codebooks)
        codes = np.empty((n, n_levels), dtype=np.int32)
        qerr = np.empty((n, n_levels), dtype=np.float32)
        if self.is_tree:
            residual = arr.copy()
            for k, book in enumerate(self.codebooks):
                parent = self.stage_parents(codes, k)
                codes[:, k], qerr[:, k] = self._stage_step(residual, book, parent, k)
            return codes, qerr
        sq_norms = [np.einsum("ij,ij->i", c, c) for c in self.codebooks]
        step = _chunk_rows(max(self.levels), self.dim)
        for start in range(0, n, step):
            residual = arr[start : start + step].copy()
            for k, (book, c_sq) in enumerate(zip(self.codebooks, sq_norms, strict=True)):
                scores = residual @ book.T
                scores *= -2.0
                scores += c_sq
                best = np.argmin(scores, axis=1)
                residual -= book[best]
                codes[start : start + step, k] = best
                qerr[start : start + step, k] = np.einsum("ij,ij->i", residual, residual)
        return codes, qerr

    def _stage_step(
        self, residual: np.ndarray, book: np.ndarray, parent: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encode one stage in place on ``residual``; return its codes and qerr."""
        size = self.levels[k]
        best, _ = nearest_in_parent(residual, book, parent, size)
        residual -= book[parent * size + best]
        return best, np.einsum("ij,ij->i", residual, residual)

    def decode(self, codes: np.ndarray, n_levels: int | None = None) -> np.ndarray:
        """Sum of the chosen centroids, float32 ``(n, r)``; only the first ``n_levels`` stages
        when given."""
        arr = np.asarray(codes)
        total_levels = len(self.codebooks)
        use = total_levels if n_levels is None else int(n_levels)
        if not 0 <= use <= total_levels:
            raise InvalidInputError(f"n_levels must lie in [0, {total_levels}], got {n_levels}")
        if arr.ndim != 2 or arr.shape[1] < use or not np.issubdtype(arr.dtype, np.integer):
            raise InvalidInputError(
                f"codes must be an integer (n, >={use}) array, got {arr.dtype} {arr.shape}"
            )
        out = np.zeros((arr.shape[0], self.dim), dtype=np.float32)
        for k in range(use):
            col = arr[:, k]
            size = self.levels[k]
            if col.size and (col.min() < 0 or col.max() >= size):
                raise InvalidInputError(f"codes at level {k + 1} fall outside [0, {size})")
            out += self.codebooks[k][self.stage_parents(arr, k) * size + col]
        return out


# --------------------------------------------------------------------------- k-means


def _sq_dist_to(x: np.ndarray, x_sq: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Squared distances ``(m, n)`` from each of ``points`` (m, r) to every row of ``x``."""
    p_sq = np.einsum("ij,ij->i", points, points)
    d = points @ x.T
    d *= -2.0
    d += x_sq
    d += p_sq[:, None]
    dist: np.ndarray = np.maximum(d, 0.0, out=d)
    return dist


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding: ``2 + log(k)`` D^2-sampled candidates per centre.

    When every row already coincides with a chosen centre (fewer distinct rows than ``k``)
    the remaining centres are drawn uniformly, which leaves duplicates for the Lloyd loop to
    re-seed.
    """
    n = x.shape[0]
    x_sq = np.einsum("ij,ij->i", x, x)
    trials = 2 + int(math.log(k))
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = rng.integers(n)
    closest = _sq_dist_to(x, x_sq, x[chosen[:1]])[0].astype(np.float64)
    for c in range(1, k):
        cum = np.cumsum(closest)
        total = cum[-1]
        if total <= 0.0:
            chosen[c] = rng.integers(n)
            continue
        cand = np.searchsorted(cum, rng.random(trials) * total, side="right")
        cand = np.minimum(cand, n - 1)
        cand_d = np.minimum(closest[None, :], _sq_dist_to(x, x_sq, x[cand]))
        best = int(np.argmin(cand_d.sum(axis=1)))
        chosen[c] = cand[best]
        closest = cand_d[best]
    return x[chosen].copy()


def _split_empty(
    centroids: np.ndarray,
    counts: np.ndarray,
    rng: np.random.Generator,
    floor: float,
) -> int:
    """Re-seed empty clusters in place by splitting the largest cluster; return split count.

    The empty centroid becomes a copy of the largest cluster's centroid; the pair is then
    pushed apart by a symmetric perturbation of relative size ``_SPLIT_EPS`` (plus ``floor``
    so that centroids at the origin still separate), and the count is shared between them.
    """
    splits = 0
    for empty in np.flatnonzero(counts == 0):
        big = int(np.argmax(counts))
        if counts[big] < 2:
            break
        base = centroids[big].astype(np.float64)
        signs = rng.choice(np.array([-1.0, 1.0]), size=base.shape[0])
        delta = _SPLIT_EPS * (np.abs(base) + floor) * signs
        centroids[empty] = (base + delta).astype(np.float32)
        centroids[big] = (base - delta).astype(np.float32)
        half = counts[big] // 2
        counts[empty] = half
        counts[big] -= half
        splits += 1
    return splits


def _cluster_sums(x: np.ndarray, assign: np.ndarray, k: int) -> np.ndarray:
    """Per-cluster row sums ``(k, r)`` in float64, via chunked one-hot matrix products.

    Costs as much as one assignment pass and runs in BLAS, unlike scatter-adds.
    """
    sums = np.zeros((k, x.shape[1]), dtype=np.float64)
    step = _chunk_rows(k, x.shape[1])
    for start in range(0, x.shape[0], step):
        block_assign = assign[start : start + step]
        onehot = np.zeros((k, block_assign.shape[0]), dtype=np.float32)
        onehot[block_assign, np.arange(block_assign.shape[0])] = 1.0
        sums += onehot @ x[start : start + step]
    return sums


#: Rows used to solve the Sinkhorn balance (bias per centroid) when training is larger.
_SINKHORN_ROWS = 1 << 14


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    top = a.max(axis=axis, keepdims=True)
    out: np.ndarray = np.squeeze(top, axis=axis) + np.log(np.exp(a - top).sum(axis=axis))
    return out


def _balance_bias(
    x: np.ndarray,
    centroids: np.ndarray,
    strength: float,
    rng: np.random.Generator,
    iters: int = 50,
) -> np.ndarray:
    """Per-centroid offsets to the squared distance that balance the assignment (Sinkhorn).

    The target cell shares are ``(1 - strength) * natural + strength / K`` (``natural`` =
    the plain nearest-centroid shares, so ``strength = 1`` asks for equal cells). An
    entropic transport plan with those column marginals is solved in the log domain on at
    most ``_SINKHORN_ROWS`` rows; its column potentials ``g`` turn into the offsets
    ``-eps * g``, so a hard ``argmin(d + offset)`` realises the balanced assignment.
    ``eps`` is the mean gap between each row's two nearest centroids.
    """
    n, k = x.shape[0], centroids.shape[0]
    rows = x if n <= _SINKHORN_ROWS else x[rng.choice(n, size=_SINKHORN_ROWS, replace=False)]
    x_sq = np.einsum("ij,ij->i", rows, rows).astype(np.float64)
    dist = _sq_dist_to(rows, x_sq.astype(np.float32), centroids).T.astype(np.float64)
    part = np.partition(dist, 1, axis=1) if k > 1 else np.concatenate([dist, dist], axis=1)
    eps = max(float((part[:, 1] - part[:, 0]).mean()), 1e-9)
    natural = np.bincount(dist.argmin(axis=1), minlength=k) / rows.shape[0]
    target = (1.0 - strength) * natural + strength / k
    log_target = np.log(np.maximum(target, 1e-12))
    kernel = -dist / eps
    g = np.zeros(k)
    for _ in range(iters):
        f = -np.log(rows.shape[0]) - _logsumexp(kernel + g[None, :], axis=1)
        g = log_target - _logsumexp(kernel + f[:, None], axis=0)
    g -= g.mean()
    return (-eps * g).astype(np.float32)


def kmeans(
    x: np.ndarray,
    k: int,
    rng: np.random.Generator,
    n_iter: int,
    init: np.ndarray | None = None,
    *,
    spherical: bool = False,
    balance: float = 0.0,
    split_empty: bool = True,
) -> tuple[np.ndarray, list[float], int]:
    """Lloyd k-means on float32 ``x``; returns centroids, per-iteration objective, splits.

    Each iteration assigns rows to the nearest centroid (objective = sum of squared
    distances), recomputes centroids as cluster means and re-seeds empty clusters.
    ``spherical`` projects the centroids on the unit sphere after every update (cosine
    k-means on unit rows); ``balance > 0`` assigns with the Sinkhorn offsets of
    :func:`_balance_bias` at that strength (re-solved every iteration). Without
    ``split_empty`` an empty cluster keeps its centroid (refinement of a given ``init``).
    """
    centroids = (_kmeans_pp(x, k, rng) if init is None else np.array(init, np.float32)).copy()
    if spherical:
        _to_sphere(centroids)
    floor = 1e-3 * float(np.sqrt(np.mean(np.square(x, dtype=np.float64))) or 1.0)
    objective: list[float] = []
    splits = 0
    for _ in range(n_iter):
        bias = _balance_bias(x, centroids, balance, rng) if balance > 0.0 else None
        assign, dist = nearest_centroids(x, centroids, bias=bias)
        objective.append(float(dist.sum(dtype=np.float64)))
        counts = np.bincount(assign, minlength=k).astype(np.int64)
        present = np.flatnonzero(counts)
        sums = _cluster_sums(x, assign, k)
        centroids[present] = (sums[present] / counts[present, None]).astype(np.float32)
        if split_empty:
            splits += _split_empty(centroids, counts, rng, floor)
        if spherical:
            _to_sphere(centroids)
    return centroids, objective, splits


def _to_sphere(centroids: np.ndarray) -> None:
    """Scale non-zero rows of ``centroids`` to unit norm, in place."""
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    np.divide(centroids, norms, out=centroids, where=norms > 0)


def _usage_stats(codes: np.ndarray, k: int) -> dict[str, float | int]:
    """Perplexity, dead codes and imbalance factor (``nonempty * sum n^2 / N^2``)."""
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    n = counts.sum()
    p = counts[counts > 0] / n
    return {
        "perplexity": float(np.exp(-(p * np.log(p)).sum())),
        "dead_codes": int((counts == 0).sum()),
        "imbalance": float((counts > 0).sum() * np.square(counts).sum() / (n * n)),
    }


def check_level_sizes(levels: Sequence[int]) -> tuple[int, ...]:
    """Validate level sizes; :class:`InvalidConfigError` on anything but positive ints."""
    try:
        items = [levels] if isinstance(levels, (str, bytes)) else list(levels)
    except TypeError as exc:
        raise InvalidConfigError(f"levels must be a sequence of integers, got {levels!r}") from exc
    ok = all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in items)
    if not items or not ok or any(int(s) < 1 for s in items):
        raise InvalidConfigError(f"levels must be positive integers, got {items!r}")
    return tuple(int(s) for s in items)


def _check_fit(
    x: np.ndarray,
    levels: Sequence[int],
    n_iter: int,
    max_points_per_centroid: int,
    init: Sequence[np.ndarray] | None,
    stage_books: str,
    refine_iters: int,
) -> tuple[tuple[int, ...], np.ndarray, tuple[int, ...]]:
    """Validated ``(sizes, float32 sample, parent depths)`` of a :func:`fit_rvq` call."""
    from hermes_spark.quantize.tree import STAGE_BOOKS, parent_depths

    sizes = check_level_sizes(levels)
    arr = as_float32_matrix(x, "RVQ training sample")
    if arr.shape[0] < max(sizes):
        raise InvalidConfigError(
            f"level sizes {','.join(map(str, sizes))} need at least {max(sizes)} "
            f"training documents, got {arr.shape[0]}"
        )
    if n_iter < 1:
        raise InvalidConfigError(f"n_iter must be at least 1, got {n_iter}")
    if max_points_per_centroid < 1:
        raise InvalidConfigError(
            f"max_points_per_centroid must be at least 1, got {max_points_per_centroid}"
        )
    if stage_books not in STAGE_BOOKS:
        raise InvalidConfigError(f"stage_books must be one of {', '.join(STAGE_BOOKS)}")
    depths = parent_depths(stage_books, len(sizes))
    rows = [math.prod(sizes[:d]) * k for k, d in zip(sizes, depths, strict=True)]
    if init is not None and [np.shape(c)[0] for c in init] != rows:
        raise InvalidConfigError("init codebooks must have the level sizes (per parent cell)")
    if any(depths) and refine_iters > 0:
        raise InvalidConfigError("refine_iters works with shared stage codebooks only")
    return sizes, arr, depths


def fit_rvq(
    x: np.ndarray,
    levels: Sequence[int],
    *,
    seed: int = 0,
    n_iter: int = 20,
    max_points_per_centroid: int = 256,
    spherical: bool = False,
    balance: float = 0.0,
    refine_iters: int = 0,
    init: Sequence[np.ndarray] | None = None,
    stage_books: str = "shared",
    parent_min_rows: float = 0.0,
) -> tuple[RVQ, dict[str, Any]]:
    """Fit one k-means codebook per stage on the residuals left by earlier stages.

    Each stage trains on at most ``K * max_points_per_centroid`` rows (seeded subsample),
    seeds with k-means++ (or starts from ``init[k]``) and runs ``n_iter`` Lloyd iterations,
    re-seeding empty clusters by splitting the largest one. ``spherical`` keeps stage-1
    centroids on the unit sphere; ``balance`` is the training-time Sinkhorn balance of
    :func:`kmeans` for stage 1 (the coarse buckets); ``refine_iters`` rounds of
    :func:`refine_codebooks` follow the greedy pass. ``stage_books`` other than ``shared``
    gives stages 2.. one codebook per parent cell (:mod:`hermes_spark.quantize.tree`),
    fitted after the shared one on all the training rows; a parent with fewer than
    ``parent_min_rows * K`` rows keeps the shared codebook. Deterministic for a given
    ``seed``. Runs wherever it is called (the driver in ``fit``); numpy only.

    Returns the model and a JSON-able report ``{"stages": [...], "fit_seconds": float}``;
    each stage records ``level``, ``size``, ``relative_mse`` (residual energy over the total
    variance of ``x`` around its mean), ``perplexity``, ``dead_codes``, ``imbalance``,
    ``splits`` and the per-iteration ``objective``; with refinement, ``refine`` holds the
    per-round relative MSE after greedy re-encoding.
    """
    t0 = time.perf_counter()
    sizes, arr, depths = _check_fit(
        x, levels, n_iter, max_points_per_centroid, init, stage_books, refine_iters
    )
    n = arr.shape[0]
    total = _total_energy(arr)
    residual = arr.copy()
    all_codes = np.zeros((n, len(sizes)), dtype=np.int32)
    books: list[np.ndarray] = []
    stages: list[dict[str, Any]] = []
    for level, (k, child) in enumerate(
        zip(sizes, np.random.SeedSequence(seed).spawn(len(sizes)), strict=True), start=1
    ):
        centroids, codes, stage = _fit_stage(
            residual, _packed(all_codes, sizes, depths[level - 1]), level, k,
            np.random.default_rng(child), None if init is None else init[level - 1],
            n_parents=math.prod(sizes[: depths[level - 1]]) if depths[level - 1] else 0,
            n_iter=n_iter, max_points_per_centroid=max_points_per_centroid,
            spherical=spherical and level == 1, balance=balance if level == 1 else 0.0,
            stage_books=stage_books, parent_min_rows=parent_min_rows,
        )  # fmt: skip
        all_codes[:, level - 1] = codes
        rel = float(np.square(residual, dtype=np.float64).sum() / total)
        stages.append({"level": level, "size": k, "relative_mse": rel, **stage})
        books.append(centroids)
        log.info(
            "RVQ stage %d: K=%d rel_mse=%.4f perplexity=%.1f dead=%d splits=%d",
            level, k, rel, stage["perplexity"], stage["dead_codes"], stage["splits"],
        )  # fmt: skip
    model = RVQ(tuple(books), depths)
    report: dict[str, Any] = {"stages": stages}
    if refine_iters > 0:
        model, history = refine_codebooks(arr, model, refine_iters)
        report["refine"] = history
        codes, qerr = model.encode(arr)
        for k, stage in enumerate(stages):
            stage["relative_mse"] = float(qerr[:, k].sum(dtype=np.float64) / total)
            stage.update(_usage_stats(codes[:, k], sizes[k]))
    report["fit_seconds"] = time.perf_counter() - t0
    return model, report


def _fit_stage(
    residual: np.ndarray,
    parent: np.ndarray,
    level: int,
    k: int,
    rng: np.random.Generator,
    init: np.ndarray | None,
    *,
    n_parents: int,
    n_iter: int,
    max_points_per_centroid: int,
    spherical: bool,
    balance: float,
    stage_books: str,
    parent_min_rows: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One RVQ stage: its centroids, the rows' codes and the stage's report fields.

    Subtracts the chosen centroids from ``residual`` in place. ``n_parents`` > 0 gives the
    stage one codebook per parent cell (``parent`` holds each row's cell).
    """
    from hermes_spark.quantize.tree import fit_parent_books  # tree imports this module

    n = residual.shape[0]
    cap = k * max_points_per_centroid
    train = residual[np.sort(rng.choice(n, size=cap, replace=False))] if n > cap else residual
    shared_init = None if n_parents else init  # a per-parent start seeds each parent's fit
    centroids, objective, splits = kmeans(
        train, k, rng, n_iter, shared_init, spherical=spherical, balance=balance
    )
    extra: dict[str, Any] = {"train_rows": len(train)}
    if n_parents:
        centroids, tally = fit_parent_books(
            residual, parent, n_parents, centroids, rng, n_iter=n_iter,
            max_points_per_centroid=max_points_per_centroid,
            fresh=stage_books == "per_parent", min_rows_per_code=parent_min_rows, init=init,
        )  # fmt: skip
        extra = {"train_rows": n, "parents": n_parents, "parent_fits": tally}
    codes, _ = nearest_in_parent(residual, centroids, parent, k)
    residual -= centroids[parent * k + codes]
    stage = {**_usage_stats(codes, k), "splits": splits, "objective": objective, **extra}
    return centroids, codes, stage


def _total_energy(x: np.ndarray) -> float:
    """``sum ||x - mean||^2`` in float64 (1.0 when the sample has no spread)."""
    x64 = x.astype(np.float64)
    total = float(np.square(x64 - x64.mean(axis=0)).sum())
    return total if total > 0 else 1.0


def _joint_least_squares(
    x: np.ndarray, codes: np.ndarray, model: RVQ, ridge: float = 1e-6
) -> tuple[np.ndarray, ...]:
    """All stages' centroids minimising ``sum ||x - sum_k C_k[codes_k]||^2`` for fixed codes.

    Solves the normal equations ``(B^T B + ridge I) C = B^T X + ridge C_old`` with ``B``
    the one-hot code matrix of all stages stacked (``sum K`` columns, so the system is
    tiny); the ridge keeps never-used codewords where they were.
    """
    sizes = model.levels
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    total = int(offsets[-1])
    gram = np.zeros((total, total), dtype=np.float64)
    rhs = np.zeros((total, x.shape[1]), dtype=np.float64)
    for a, ka in enumerate(sizes):
        rhs[offsets[a] : offsets[a + 1]] = _cluster_sums(x, codes[:, a], ka)
        for b in range(a, len(sizes)):
            kb = sizes[b]
            pair = np.bincount(
                codes[:, a].astype(np.int64) * kb + codes[:, b], minlength=ka * kb
            ).reshape(ka, kb)
            gram[offsets[a] : offsets[a + 1], offsets[b] : offsets[b + 1]] = pair
            gram[offsets[b] : offsets[b + 1], offsets[a] : offsets[a + 1]] = pair.T
    scale = ridge * max(float(np.trace(gram)) / total, 1.0)
    old = np.concatenate([c.astype(np.float64) for c in model.codebooks])
    solved = np.linalg.solve(gram + scale * np.eye(total), rhs + scale * old)
    return tuple(solved[offsets[k] : offsets[k + 1]].astype(np.float32) for k in range(len(sizes)))


def refine_codebooks(x: np.ndarray, model: RVQ, rounds: int) -> tuple[RVQ, list[float]]:
    """Joint re-estimation of every stage's centroids, ``rounds`` times, keeping greedy codes.

    Each round encodes ``x`` greedily, solves the joint least squares for all codebooks with
    those codes fixed (faiss ``ResidualQuantizer`` ``Train_refine_codebook`` style) and keeps
    the new codebooks only if greedy re-encoding lowers the full-depth error. Returns the
    model and the full-depth relative MSE after each round (the first entry: before).
    """
    arr = as_float32_matrix(x, "RVQ refinement sample", model.dim)
    total = _total_energy(arr)
    codes, qerr = model.encode(arr)
    best = float(qerr[:, -1].sum(dtype=np.float64) / total)
    history = [best]
    for _ in range(rounds):
        candidate = RVQ(_joint_least_squares(arr, codes, model))
        new_codes, new_qerr = candidate.encode(arr)
        err = float(new_qerr[:, -1].sum(dtype=np.float64) / total)
        history.append(err)
        if err >= best:
            break
        model, codes, best = candidate, new_codes, err
    return model, history
