"""Benchmark our greedy RVQ against faiss ``ResidualQuantizer`` (beam size 1).

Usage::

    python bench/bench_rvq.py [--n 20000] [--dim 384] [--levels 64,64,32] [--npy emb.npy]

Fits both quantisers on the same sample (real embeddings from ``--npy``, else synthetic
clustered unit vectors), then prints fit time and per-stage relative MSE
(``sum ||x - decode_prefix||^2 / sum ||x - mean||^2``) with the ratio ours/faiss, and encode
throughput in rows per second.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from hermes_spark.quantize.lst import LST
from hermes_spark.quantize.rvq import fit_rvq

T = TypeVar("T")


def synthetic(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors around a hierarchy of random directions (topics and sub-topics)."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((100, dim))
    sub = topics[rng.integers(100, size=1000)] + 0.6 * rng.standard_normal((1000, dim))
    x = sub[rng.integers(1000, size=n)] + 0.5 * rng.standard_normal((n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def prefix_rel_mse(x: np.ndarray, prefixes: list[np.ndarray]) -> list[float]:
    """Relative MSE of each decoded prefix against the variance of ``x`` around its mean."""
    x64 = x.astype(np.float64)
    total = np.square(x64 - x64.mean(axis=0)).sum()
    return [float(np.square(x64 - p).sum() / total) for p in prefixes]


def timed(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    """Call ``fn(*args)`` and return its result with the elapsed seconds."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def run_ours(x: np.ndarray, levels: list[int], seed: int, n_iter: int) -> dict[str, Any]:
    """Fit and encode with our RVQ."""
    model, fit_s = timed(lambda: fit_rvq(x, levels, seed=seed, n_iter=n_iter)[0])
    (codes, _), enc_s = timed(model.encode, x)
    prefixes = [model.decode(codes, n_levels=k + 1) for k in range(len(levels))]
    return {"fit_s": fit_s, "rows_s": len(x) / enc_s, "rel": prefix_rel_mse(x, prefixes)}


def run_faiss(x: np.ndarray, levels: list[int], seed: int, n_iter: int) -> dict[str, Any]:
    """Fit and encode with faiss ResidualQuantizer, greedy (beam size 1)."""
    import faiss

    nbits = [int(math.log2(k)) for k in levels]
    if [1 << b for b in nbits] != levels:
        raise SystemExit(f"faiss needs power-of-two level sizes, got {levels}")
    vec = faiss.UInt64Vector()
    for b in nbits:
        vec.push_back(b)
    rq = faiss.ResidualQuantizer(x.shape[1], vec)
    rq.max_beam_size = 1
    rq.cp.niter = n_iter
    rq.cp.seed = seed
    rq.cp.max_points_per_centroid = 256
    _, fit_s = timed(rq.train, x)
    packed, enc_s = timed(rq.compute_codes, x)
    codes = faiss.unpack_bitstrings(packed, nbits)
    books = faiss.vector_to_array(rq.codebooks).reshape(-1, x.shape[1])
    offsets = faiss.vector_to_array(rq.codebook_offsets).astype(np.int64)
    acc = np.zeros_like(x, dtype=np.float64)
    prefixes = []
    for k in range(len(levels)):
        acc = acc + books[offsets[k] + codes[:, k]]
        prefixes.append(acc.copy())
    return {"fit_s": fit_s, "rows_s": len(x) / enc_s, "rel": prefix_rel_mse(x, prefixes)}


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run both quantisers and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("npy", nargs="?", help="optional .npy file of (n, d) embeddings")
    parser.add_argument("--npy", dest="npy_opt", help="same as the positional argument")
    parser.add_argument("--n", type=int, default=20000, help="sample rows (default 20000)")
    parser.add_argument("--dim", type=int, default=384, help="synthetic dimension")
    parser.add_argument("--levels", default="64,64,32", help="codebook sizes per stage")
    parser.add_argument("--n-iter", type=int, default=20, help="Lloyd iterations per stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lst", action="store_true", help="apply the LST to the sample first")
    parser.add_argument("--threads", type=int, default=0, help="faiss OpenMP threads (0=all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    levels = [int(s) for s in args.levels.split(",")]
    path = args.npy or args.npy_opt
    if path:
        x = np.load(path, mmap_mode="r")
        rows = np.random.default_rng(args.seed).permutation(len(x))[: args.n]
        x = np.ascontiguousarray(x[np.sort(rows)], dtype=np.float32)
        source = path
    else:
        x = synthetic(args.n, args.dim, args.seed)
        source = "synthetic clustered unit vectors"
    if args.lst:
        x = LST.fit(x).transform(x)
        source += " + LST"
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)

    print(f"data: {source}, n={len(x)}, dim={x.shape[1]}, levels={levels}, n_iter={args.n_iter}")
    ours = run_ours(x, levels, args.seed, args.n_iter)
    theirs = run_faiss(x, levels, args.seed, args.n_iter)

    print(f"{'':>14}{'ours':>12}{'faiss':>12}{'ours/faiss':>12}")
    print(
        f"{'fit seconds':>14}{ours['fit_s']:>12.2f}{theirs['fit_s']:>12.2f}"
        f"{ours['fit_s'] / theirs['fit_s']:>12.3f}"
    )
    for k, (a, b) in enumerate(zip(ours["rel"], theirs["rel"], strict=True), start=1):
        print(f"{f'rel MSE L{k}':>14}{a:>12.4f}{b:>12.4f}{a / b:>12.4f}")
    print(
        f"{'encode rows/s':>14}{ours['rows_s']:>12.0f}{theirs['rows_s']:>12.0f}"
        f"{ours['rows_s'] / theirs['rows_s']:>12.3f}"
    )


if __name__ == "__main__":
    main()
