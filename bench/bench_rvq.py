"""Benchmark our RVQ against faiss: fit time, assignment throughput, cost vs embedding.

Usage (``make bench`` runs the defaults)::

    python bench/bench_rvq.py [--n 200000] [--dim 384] [--levels 64,64,32] [--npy emb.npy]
                              [--threads 0] [--embed-docs 64] [--skip-embed]

1. **Fit**: our greedy RVQ (``fit_rvq``) and faiss ``ResidualQuantizer`` (beam 1, the same
   level sizes, iterations and ``max_points_per_centroid``) on the same ``n x dim``
   sample (synthetic topic/sub-topic unit vectors unless ``--npy``): seconds, per-stage
   relative MSE, ratio ours/faiss.
   **1b** fits our RVQ and flat k-means with ``K1*K2`` centroids on ``--flat-rows`` rows in
   the LST space (the L12 goal: relative MSE within 5% at a fraction of the fit time).
2. **Assignment**: encoding the sample with our ``RVQ.encode`` vs faiss doing the same
   greedy encoding with ``IndexFlatL2.search`` per stage *on our codebooks* (and faiss
   ``compute_codes`` on its own): vectors/s per core, ratio; the codes of the two
   engines on our codebooks are compared (identical up to float ties).
3. **Cost vs embedding**: LST + assignment seconds per document against the model's
   embedding seconds per document (``all-MiniLM-L6-v2``, CPU, real text), as a fraction.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hermes_spark.quantize.lst import LST
from hermes_spark.quantize.rvq import RVQ, fit_rvq

T = TypeVar("T")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ag_news_test.parquet"


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


def faiss_fit(x: np.ndarray, levels: list[int], seed: int, n_iter: int) -> tuple[Any, float]:
    """faiss ResidualQuantizer, greedy (beam size 1), trained on ``x``."""
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
    _, seconds = timed(rq.train, x)
    return rq, seconds


def faiss_prefixes(rq: Any, x: np.ndarray, levels: list[int]) -> list[np.ndarray]:
    """Decoded prefixes of faiss's own codes."""
    import faiss

    nbits = [int(math.log2(k)) for k in levels]
    codes = faiss.unpack_bitstrings(rq.compute_codes(x), nbits)
    books = faiss.vector_to_array(rq.codebooks).reshape(-1, x.shape[1])
    offsets = faiss.vector_to_array(rq.codebook_offsets).astype(np.int64)
    acc = np.zeros_like(x, dtype=np.float64)
    out = []
    for k in range(len(levels)):
        acc = acc + books[offsets[k] + codes[:, k]]
        out.append(acc.copy())
    return out


def faiss_greedy_encode(model: RVQ, x: np.ndarray) -> np.ndarray:
    """Greedy residual encoding on *our* codebooks with faiss exact search per stage."""
    import faiss

    residual = x.copy()
    codes = np.empty((x.shape[0], len(model.codebooks)), dtype=np.int64)
    for k, book in enumerate(model.codebooks):
        index = faiss.IndexFlatL2(book.shape[1])
        index.add(book)
        _, idx = index.search(residual, 1)
        codes[:, k] = idx[:, 0]
        residual -= book[idx[:, 0]]
    return codes


def embed_seconds_per_doc(n_docs: int) -> tuple[float, str]:
    """CPU seconds per document of all-MiniLM-L6-v2 on real text (after a warm-up)."""
    from hermes_spark.embedding import embed_texts, load_model

    if SHARED.exists():
        import pyarrow.parquet as pq

        texts = pq.read_table(SHARED, columns=["text"])["text"].to_pylist()[: n_docs + 16]
        source = "AG News (shared/data)"
    else:
        texts = [f"news item {i} about markets, sport and science" * 4 for i in range(n_docs + 16)]
        source = "generated sentences"
    model = load_model("all-MiniLM-L6-v2", 256, "cpu")
    embed_texts(model, texts[:16], 64)
    _, seconds = timed(embed_texts, model, texts[16:], 64)
    return seconds / n_docs, source


def part_1b(x: np.ndarray, levels: list[int], args: argparse.Namespace) -> None:
    """RVQ fit vs flat k-means with K1*K2 centroids in the LST space: both fitted on one
    half of ``--flat-rows`` rows, relative MSE on the other half, fit-time ratio."""
    import faiss

    rows = min(args.flat_rows, len(x))
    lst_b = LST.fit(x[:rows], out_dim=min(args.lst_dim, x.shape[1]))
    z = lst_b.transform(x[:rows])
    z_fit, z_held = z[: rows // 2], z[rows // 2 :]
    k12 = levels[0] * levels[1]
    km = faiss.Kmeans(
        z.shape[1], k12, niter=args.n_iter, seed=args.seed, max_points_per_centroid=256
    )
    _, km_s = timed(km.train, z_fit)
    _, assign = km.index.search(z_held, 1)
    rel_km = prefix_rel_mse(z_held, [km.centroids[assign[:, 0]]])[0]
    print(
        f"\n1b. L12 vs flat k-means with {k12} centroids (fit on {len(z_fit)}, scored on "
        f"{len(z_held)} held-out rows, LST dim {z.shape[1]})"
    )
    for books in args.stage_books.split(","):
        (rvq_z, _), rvq_s = timed(
            lambda b=books: fit_rvq(
                z_fit, levels, seed=args.seed, n_iter=args.n_iter, stage_books=b
            )
        )
        codes_z, _ = rvq_z.encode(z_held)
        rel12 = prefix_rel_mse(z_held, [rvq_z.decode(codes_z, n_levels=2)])[0]
        print(
            f"   stage_books={books}: fit seconds ours (all {len(levels)} stages) {rvq_s:.2f}, "
            f"flat k-means {km_s:.2f}, ratio {rvq_s / km_s:.3f}; rel MSE ours L12 "
            f"{rel12:.4f}, flat k-means {rel_km:.4f}, ratio {rel12 / rel_km:.4f}"
        )


def main(argv: list[str] | None = None) -> None:
    """Run the three benchmarks and print their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npy", help="optional .npy file of (n, d) embeddings")
    parser.add_argument("--n", type=int, default=200_000, help="rows (default 200000)")
    parser.add_argument("--dim", type=int, default=384, help="synthetic dimension")
    parser.add_argument("--levels", default="64,64,32", help="codebook sizes per stage")
    parser.add_argument("--n-iter", type=int, default=10, help="Lloyd iterations per stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lst-dim", type=int, default=64, help="LST output dim for part 3")
    parser.add_argument("--threads", type=int, default=0, help="threads for both (0 = all)")
    parser.add_argument("--embed-docs", type=int, default=64, help="documents for part 3")
    parser.add_argument("--skip-embed", action="store_true", help="skip part 3 (no model)")
    parser.add_argument(
        "--flat-rows", type=int, default=100_000, help="rows for part 1b (0 skips it)"
    )
    parser.add_argument("--only-1b", action="store_true", help="run only part 1b")
    parser.add_argument(
        "--stage-books", default="shared,per_parent", help="stage codebook options of part 1b"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import faiss

    threads = args.threads or os.cpu_count() or 1
    faiss.omp_set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    levels = [int(s) for s in args.levels.split(",")]
    if args.npy:
        x = np.ascontiguousarray(np.load(args.npy)[: args.n], dtype=np.float32)
        source = args.npy
    else:
        x = synthetic(args.n, args.dim, args.seed)
        source = "synthetic topic/sub-topic unit vectors"
    print(
        f"data: {source}, n={len(x)}, dim={x.shape[1]}, levels={levels}, "
        f"n_iter={args.n_iter}, threads={threads}"
    )

    if args.only_1b:
        part_1b(x, levels, args)
        return

    # 1. fit
    (ours, _), ours_fit = timed(lambda: fit_rvq(x, levels, seed=args.seed, n_iter=args.n_iter))
    rq, faiss_fit_s = faiss_fit(x, levels, args.seed, args.n_iter)
    (codes, _), ours_enc = timed(ours.encode, x)
    ours_rel = prefix_rel_mse(x, [ours.decode(codes, n_levels=k + 1) for k in range(len(levels))])
    faiss_rel = prefix_rel_mse(x, faiss_prefixes(rq, x, levels))
    print(f"\n1. fit          {'ours':>10}{'faiss':>10}{'ours/faiss':>12}")
    print(f"   seconds      {ours_fit:>10.2f}{faiss_fit_s:>10.2f}{ours_fit / faiss_fit_s:>12.3f}")
    for k, (a, b) in enumerate(zip(ours_rel, faiss_rel, strict=True), start=1):
        print(f"   rel MSE L{k}   {a:>10.4f}{b:>10.4f}{a / b:>12.4f}")

    # 1b. the L12 goal
    if args.flat_rows and len(levels) > 1:
        part_1b(x, levels, args)

    # 2. assignment throughput on the same (our) codebooks
    faiss_codes, faiss_enc = timed(faiss_greedy_encode, ours, x)
    _, faiss_own_enc = timed(rq.compute_codes, x)
    agree = float((faiss_codes == codes).all(axis=1).mean())
    per_core = [len(x) / s / threads for s in (ours_enc, faiss_enc, faiss_own_enc)]
    print(f"\n2. assignment, vectors/s per core ({threads} threads)")
    print(f"   ours RVQ.encode                       {per_core[0]:>12.0f}")
    print(
        f"   faiss IndexFlatL2.search per stage    {per_core[1]:>12.0f}"
        f"   ours/faiss {per_core[0] / per_core[1]:.3f}"
    )
    print(
        f"   faiss ResidualQuantizer.compute_codes {per_core[2]:>12.0f}"
        f"   ours/faiss {per_core[0] / per_core[2]:.3f}"
    )
    print(f"   rows with identical codes (ours vs faiss search, same codebooks): {agree:.4f}")

    # 3. LST + assignment vs embedding
    if args.skip_embed:
        return
    lst = LST.fit(x[:20_000], out_dim=min(args.lst_dim, x.shape[1]))
    z_small = lst.transform(x[:20_000])
    small, _ = fit_rvq(z_small, levels, seed=args.seed, n_iter=args.n_iter)
    _, lst_s = timed(lst.transform, x)
    _, assign_s = timed(small.encode, lst.transform(x))
    quant_per_doc = (lst_s + assign_s) / len(x)
    embed_per_doc, text_source = embed_seconds_per_doc(args.embed_docs)
    print(f"\n3. cost per document ({text_source}, max_seq_length 256, lst_dim {lst.out_dim})")
    print(f"   LST + assignment  {quant_per_doc * 1e6:>10.2f} us")
    print(f"   embedding         {embed_per_doc * 1e6:>10.0f} us")
    print(f"   fraction          {quant_per_doc / embed_per_doc:>10.6f}")


if __name__ == "__main__":
    main()
