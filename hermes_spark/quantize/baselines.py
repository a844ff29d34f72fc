"""KMeans-family baselines for ``hermes evaluate``: fit on one sample, assign another.

Driver side, numpy plus faiss (flat k-means, greedy ``ResidualQuantizer``) and
scikit-learn (bisecting k-means). Every baseline is fitted on the fitting-side sample and
returns, for the held-out rows, one cell id per level and the reconstruction (the assigned
centroid, or the sum of the chosen codewords), so the same metrics apply to all methods.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hermes_spark.quantize.rvq import nearest_centroids

__all__ = ["BaselineFit", "bisecting_kmeans", "faiss_residual", "flat_kmeans"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BaselineFit:
    """One baseline scored on held-out rows.

    ``cells[i]`` and ``reconstruction[i]`` belong to level ``levels[i]`` (a flat method
    has one level); ``k[i]`` is the number of cells it was fitted with.
    """

    name: str
    levels: tuple[int, ...]
    k: tuple[int, ...]
    cells: tuple[np.ndarray, ...]
    reconstruction: tuple[np.ndarray, ...]
    fit_seconds: float


def flat_kmeans(
    fit_x: np.ndarray,
    eval_x: np.ndarray,
    k: int,
    level: int,
    seed: int,
    n_iter: int = 20,
    nredo: int = 3,
) -> BaselineFit:
    """faiss k-means with ``k`` centroids (at most ``len(fit_x)``), fitted on ``fit_x``.

    Best of ``nredo`` random initialisations, so the baseline is not handicapped by one
    unlucky start (its fit time includes every restart).
    """
    import faiss

    k = int(min(k, fit_x.shape[0]))
    t0 = time.perf_counter()
    km = faiss.Kmeans(
        fit_x.shape[1],
        k,
        niter=n_iter,
        nredo=nredo,
        seed=seed,
        max_points_per_centroid=256,
        verbose=False,
    )
    km.train(np.ascontiguousarray(fit_x, dtype=np.float32))
    seconds = time.perf_counter() - t0
    centroids = np.asarray(km.centroids, dtype=np.float32)
    cells, _ = nearest_centroids(np.ascontiguousarray(eval_x, np.float32), centroids)
    return BaselineFit(
        f"kmeans_{k}", (level,), (k,), (cells.astype(np.int64),), (centroids[cells],), seconds
    )


def bisecting_kmeans(
    fit_x: np.ndarray, eval_x: np.ndarray, k: int, level: int, seed: int
) -> BaselineFit:
    """scikit-learn bisecting k-means (largest cluster split first) with ``k`` leaves."""
    from sklearn.cluster import BisectingKMeans

    k = int(min(k, fit_x.shape[0]))
    t0 = time.perf_counter()
    model = BisectingKMeans(
        n_clusters=k, random_state=seed, bisecting_strategy="largest_cluster"
    ).fit(fit_x.astype(np.float32))
    seconds = time.perf_counter() - t0
    centroids = np.asarray(model.cluster_centers_, dtype=np.float32)
    cells, _ = nearest_centroids(np.ascontiguousarray(eval_x, np.float32), centroids)
    return BaselineFit(
        f"bisecting_kmeans_{k}",
        (level,),
        (k,),
        (cells.astype(np.int64),),
        (centroids[cells],),
        seconds,
    )


def faiss_residual(
    fit_x: np.ndarray, eval_x: np.ndarray, sizes: Sequence[int], seed: int, n_iter: int = 20
) -> BaselineFit | None:
    """faiss ``ResidualQuantizer`` with greedy encoding (beam 1) and the same level sizes.

    ``None`` (logged) when a level size is not a power of two, which faiss requires.
    """
    import faiss

    nbits = [round(math.log2(k)) for k in sizes]
    if [1 << b for b in nbits] != list(sizes):
        log.warning("faiss ResidualQuantizer baseline skipped: level sizes must be powers of 2")
        return None
    t0 = time.perf_counter()
    vec = faiss.UInt64Vector()
    for b in nbits:
        vec.push_back(b)
    # faiss' stubs list a Python list of bits; the SWIG constructor takes the std::vector
    rq = faiss.ResidualQuantizer(fit_x.shape[1], vec)  # type: ignore[call-overload]
    rq.max_beam_size = 1
    rq.cp.niter = n_iter
    rq.cp.seed = seed
    rq.cp.max_points_per_centroid = 256
    rq.train(np.ascontiguousarray(fit_x, dtype=np.float32))
    seconds = time.perf_counter() - t0
    packed = rq.compute_codes(np.ascontiguousarray(eval_x, dtype=np.float32))
    codes = faiss.unpack_bitstrings(packed, np.asarray(nbits, dtype=np.int32)).astype(np.int64)

    books = faiss.vector_to_array(rq.codebooks).reshape(-1, fit_x.shape[1])
    offsets = faiss.vector_to_array(rq.codebook_offsets).astype(np.int64)
    cells, recon = [], []
    acc = np.zeros(eval_x.shape, dtype=np.float64)
    prefix = np.zeros(eval_x.shape[0], dtype=np.int64)
    for level, size in enumerate(sizes):
        acc = acc + books[offsets[level] + codes[:, level]]
        prefix = prefix * int(size) + codes[:, level]
        cells.append(prefix.copy())
        recon.append(acc.astype(np.float32))
    ks = tuple(math.prod(sizes[: i + 1]) for i in range(len(sizes)))
    return BaselineFit(
        "faiss_rq",
        tuple(range(1, len(sizes) + 1)),
        ks,
        tuple(cells),
        tuple(recon),
        seconds,
    )
