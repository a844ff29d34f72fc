"""Quantizer options measured on a real labelled corpus (the numbers of docs/quality.md).

Usage::

    python bench/bench_quality.py ../shared/data/ag_news_test.parquet --labels label \
        [--n 2000] [--levels 16,16,8] [--cache /tmp/hermes_vectors] [--out result.json] \
        [--backend onnx --precision int8 --max-seq-length 256]

Embeds ``--n`` documents (a seeded sample) with all-MiniLM-L6-v2 once through the
product's annotate path (default: the ONNX Runtime int8 backend ``hermes fit`` records on
CPU), caching the vectors under ``--cache`` (never in the repository; ``real_vectors.py``),
splits them 50/50 by a seeded permutation into a fitting half and a held-out half, fits
one codebook per quantizer variant on the fitting half and scores it, with the same baselines as
``hermes evaluate`` (flat k-means K1 and K1*K2, bisecting k-means, faiss
ResidualQuantizer), on the held-out half. Prints one line per variant: L1 and L12
relative MSE over flat k-means in the same LST space, NMI per label column, stage-1
imbalance, dead codes, leaf collisions and the fit-time ratio against flat k-means K1*K2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

# one BLAS/OpenMP thread: fit times are per core and do not collapse on a busy machine
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_vectors import DEFAULT_CACHE, Embedding, embed_cached, split_halves  # noqa: E402

from hermes_spark.quantize.codebook import fit_codebook  # noqa: E402
from hermes_spark.quantize.options import QuantizerOptions  # noqa: E402
from hermes_spark.quantize.scoring import score_codebook  # noqa: E402

VARIANTS: dict[str, tuple[QuantizerOptions, int | None]] = {
    "default": (QuantizerOptions(), 64),
    "lst=none": (QuantizerOptions(lst="none"), None),
    "whiten_power=1": (QuantizerOptions(whiten_power=1.0), 64),
    "whiten_power=0 (PCA only)": (QuantizerOptions(whiten_power=0.0), 64),
    "lst_dim=32": (QuantizerOptions(), 32),
    "rotation=opq": (QuantizerOptions(rotation="opq"), 64),
    "refine_iters=3": (QuantizerOptions(refine_iters=3), 64),
    "balance=0.5": (QuantizerOptions(balance=0.5), 64),
    "balance=1": (QuantizerOptions(balance=1.0), 64),
    "kmeans=spherical": (QuantizerOptions(kmeans="spherical"), 64),
}


def measure(
    x: np.ndarray,
    labels: dict[str, np.ndarray],
    levels: tuple[int, ...],
    seed: int,
    emb: Embedding,
) -> dict[str, Any]:
    """Fit every variant on one half, score on the other; one summary dict per variant."""
    fit_idx, held_idx = split_halves(len(x), seed)
    fit_x, held_x = x[fit_idx], x[held_idx]
    held_labels = {c: v[held_idx] for c, v in labels.items()}
    model = emb.model(int(x.shape[1]))
    out: dict[str, Any] = {}
    kmeans_by_space: dict[str, list[dict[str, Any]]] = {}
    for name, (opts, lst_dim) in VARIANTS.items():
        t0 = time.perf_counter()
        book = fit_codebook(
            fit_x, levels, seed=seed, lst_dim=lst_dim, model=model, n_iter=20, options=opts
        )
        fit_s = time.perf_counter() - t0
        # flat k-means depends only on the LST space (not on rotation/balance/refinement):
        # fit it once per space; bisecting k-means and faiss only for the default variant
        space = json.dumps({k: v for k, v in book.lst.params().items() if k != "rotation"})
        wanted = ["kmeans"] if space not in kmeans_by_space else []
        if name == "default":
            wanted += ["bisecting_kmeans", "faiss_rq"]
        scored = score_codebook(book, fit_x, held_x, held_labels, seed=seed, baselines=wanted)
        methods = scored["methods"]
        if space in kmeans_by_space:
            methods = methods + kmeans_by_space[space]
        else:
            kmeans_by_space[space] = [r for r in methods if r["method"] == "kmeans"]
        rows = {(r["method"], r["level"]): r for r in methods}
        ours1, ours2, leaf = rows[("hermes", 1)], rows[("hermes", 2)], rows[("hermes", 3)]
        km1, km2 = rows[("kmeans", 1)], rows[("kmeans", 2)]
        out[name] = {
            "version": book.version,
            "l1_mse_ratio": ours1["relative_mse"] / km1["relative_mse"],
            "l12_mse_ratio": ours2["relative_mse"] / km2["relative_mse"],
            "l12_fit_time_ratio": fit_s / km2["fit_seconds"],
            "fit_seconds": fit_s,
            "kmeans_k1k2_fit_seconds": km2["fit_seconds"],
            "nmi_l1": {c: ours1["labels"][c]["nmi"] for c in labels},
            "kmeans_nmi_l1": {c: km1["labels"][c]["nmi"] for c in labels},
            "nmi_l2": {c: ours2["labels"][c]["nmi"] for c in labels},
            "kmeans_nmi_l2": {c: km2["labels"][c]["nmi"] for c in labels},
            "imbalance_l1": ours1["imbalance"],
            "max_share_l1": ours1["max_share"],
            "dead_codes": [rows[("hermes", k)]["dead_codes"] for k in (1, 2, 3)],
            "leaf_collision_rate": leaf["collision_rate"],
            "silhouette_l1": ours1["silhouette_cosine"],
            "faiss_rq_l12_mse_ratio": (
                ours2["relative_mse"] / rows[("faiss_rq", 2)]["relative_mse"]
                if ("faiss_rq", 2) in rows
                else None
            ),
            "bisecting_nmi_l1": (
                {c: rows[("bisecting_kmeans", 1)]["labels"][c]["nmi"] for c in labels}
                if ("bisecting_kmeans", 1) in rows
                else None
            ),
            "bisecting_l12_mse_ratio": (
                ours2["relative_mse"] / rows[("bisecting_kmeans", 2)]["relative_mse"]
                if ("bisecting_kmeans", 2) in rows
                else None
            ),
        }
        print(name, json.dumps(out[name]), flush=True)
    return {"fit_rows": len(fit_idx), "held_out_rows": len(held_idx), "variants": out}


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, embed (cached), measure every variant and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", help="Parquet file with text and label columns")
    parser.add_argument("--labels", required=True, help="comma-separated label columns")
    parser.add_argument("--n", type=int, default=2000, help="documents to embed (sample)")
    parser.add_argument("--levels", default="16,16,8")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--out", help="write the JSON result here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    levels = tuple(int(v) for v in args.levels.split(","))
    cols = [c.strip() for c in args.labels.split(",") if c.strip()]
    emb = Embedding(args.max_seq_length, args.backend, args.precision)
    x, meta = embed_cached(args.corpus, args.n, Path(args.cache), emb)
    labels = {c: meta[c].astype(str).to_numpy() for c in cols}
    result = measure(x, labels, levels, args.seed, emb)
    result.update({"corpus": Path(args.corpus).name, "levels": list(levels), "n": len(x)})
    print(
        f"{result['corpus']}: {result['fit_rows']} fit / {result['held_out_rows']} held-out "
        f"docs, levels {list(levels)}"
    )
    head = f"{'variant':<26}{'L1/km':>7}{'L12/km':>8}{'t/km12':>8}"
    head += "".join(f"{'NMI ' + c[:8]:>14}" for c in cols) + f"{'imb1':>7}{'dead':>12}{'coll':>7}"
    print(head)
    for name, v in result["variants"].items():
        line = f"{name:<26}{v['l1_mse_ratio']:>7.3f}{v['l12_mse_ratio']:>8.3f}"
        line += f"{v['l12_fit_time_ratio']:>8.2f}"
        line += "".join(f"{v['nmi_l1'][c]:>7.3f}/{v['kmeans_nmi_l1'][c]:<6.3f}" for c in cols)
        line += f"{v['imbalance_l1']:>7.3f}{v['dead_codes']!s:>12}"
        line += f"{v['leaf_collision_rate']:>7.3f}"
        print(line)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
