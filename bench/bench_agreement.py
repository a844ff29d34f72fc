"""Code agreement per backend x precision against fp32 PyTorch, on held-out real text.

Usage::

    python bench/bench_agreement.py ../shared/data/arxiv_0704_2k.parquet \
        [--n 2000] [--held 200] [--levels 16,8,8] [--max-seq-length 128] \
        [--rows "torch fp32,onnx int8,onnx int8 (8-bit weights)"]

The codebook is fitted on the fitting half of the corpus' cached fp32 PyTorch vectors (the
same seeded sample and 50/50 split as ``bench_fine_cells.py``, cache under
``~/.cache/hermes-spark-bench``); ``--held`` documents of the held-out half are then
embedded from text with every backend x precision through the annotate path's encoder
(length-sorted token-budget batches of ``--batch-size``) and coded. Prints, per backend,
the share of documents whose level-1 / level-1..2 / full code equals the fp32 PyTorch
one, and the mean and minimum cosine to the fp32 PyTorch vector. ``onnx int8
(batched)`` replays the earlier scheme (a whole padded batch per run, activation scales
shared by the batch) for comparison; ``... (8-bit weights)`` rows run the int8 /
int8-static graph quantized with full-range weights (``reduce_range=False``, the earlier
build; graphs under ``variants/`` of the model cache) against the product's 7-bit
weights. ``--rows`` picks rows (the first is the reference: keep ``torch fp32`` first).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_vectors import DEFAULT_CACHE, Embedding, embed_cached

from hermes_spark.embedding import backends
from hermes_spark.embedding.device import task_cpus
from hermes_spark.embedding.encoder import Encoder
from hermes_spark.embedding.settings import ModelSettings
from hermes_spark.quantize.codebook import fit_codebook

BACKENDS = (
    ("torch", "fp32"),
    ("onnx", "fp32"),
    ("onnx", "int8"),
    ("onnx", "int8 (batched)"),
    ("onnx", "int8 (8-bit weights)"),
    ("onnx", "int8-static"),
    ("onnx", "int8-static (8-bit weights)"),
    ("openvino", "fp32"),
    ("openvino", "int8"),
)
FULL_RANGE = "(8-bit weights)"


def full_range_graph(precision: str) -> Path:
    """The ONNX Runtime int8 (or int8-static) graph with full-range 8-bit weights, as
    the product built it before 7-bit weights (built once into ``variants/``)."""
    fp32 = backends.onnx_model("default", "fp32")
    folder = fp32.parent / "variants"
    folder.mkdir(exist_ok=True)
    int8 = folder / "ort-int8-w8.onnx"
    backends.build_once(int8, lambda tmp: backends._quantize_int8(fp32, tmp, reduce_range=False))
    if precision == "int8":
        return int8
    static = folder / "ort-int8-w8-static.onnx"
    backends.build_once(static, lambda tmp: backends._calibrate_static("default", int8, tmp))
    return static


def embed_with(
    texts: list[str], backend: str, precision: str, seq: int, bs: int
) -> tuple[np.ndarray, float]:
    """Vectors of ``texts`` through the encoder of ``backend`` x ``precision``, and the
    seconds they took (the graph is built and loaded before the clock starts)."""
    batched = precision.endswith("(batched)")
    base = precision.split()[0]
    settings = ModelSettings("default", seq, bs, "cpu", backend=backend, precision=base)
    enc = Encoder(settings)
    if precision.endswith(FULL_RANGE):
        enc._backend = backends.OnnxBackend(full_range_graph(base), base, task_cpus())
    run = enc.backend.run
    if batched:  # the graph on whole padded batches (one activation scale per batch)
        enc.backend.run = enc.backend._run  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        vecs = enc.encode(texts, counts=False)[0]
        return vecs, time.perf_counter() - t0
    finally:
        if batched:
            enc.backend.run = run  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    """Fit on cached vectors, embed the held-out texts per backend, print agreement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--held", type=int, default=200)
    parser.add_argument("--levels", default="16,8,8")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument(
        "--rows",
        default=",".join(f"{b} {p}" for b, p in BACKENDS),
        help="comma-separated 'backend precision' rows; the first is the reference",
    )
    args = parser.parse_args(argv)
    rows = [tuple(r.strip().split(" ", 1)) for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in BACKENDS]
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {BACKENDS}")
    logging.basicConfig(level=logging.WARNING)
    levels = tuple(int(v) for v in args.levels.split(","))
    reference = Embedding(args.max_seq_length, "torch", "fp32")
    x, _ = embed_cached(args.corpus, args.n, Path(args.cache), reference)
    table = pq.read_table(args.corpus).to_pandas()
    table = table.sample(n=min(args.n, len(table)), random_state=0).reset_index(drop=True)
    order = np.random.default_rng(args.seed).permutation(len(x))
    fit_idx, held_idx = np.sort(order[: len(x) // 2]), np.sort(order[len(x) // 2 :])
    model = {"name": "default", "dim": int(x.shape[1]), "max_seq_length": args.max_seq_length}
    book = fit_codebook(x[fit_idx], levels, seed=args.seed, lst_dim=64, model=model)
    texts = table["text"].iloc[held_idx[: args.held]].tolist()
    ref_vecs = ref_codes = None
    print(f"{Path(args.corpus).name}: {len(texts)} held-out documents, levels {list(levels)}")
    print(f"load average {os.getloadavg()[0]:.1f}, task cores {task_cpus()}")
    print("| backend | precision | L1 | L1..2 | full code | mean cos | min cos | s | docs/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for backend, precision in rows:
        vecs, seconds = embed_with(texts, backend, precision, args.max_seq_length, args.batch_size)
        codes, _ = book.assign(vecs)
        if ref_vecs is None:
            ref_vecs, ref_codes = vecs, codes
        same = [float((codes[:, :k] == ref_codes[:, :k]).all(axis=1).mean()) for k in (1, 2)]
        full = float((codes == ref_codes).all(axis=1).mean())
        cos = (vecs * ref_vecs).sum(axis=1)
        print(
            f"| {backend} | {precision} | {same[0]:.3f} | {same[1]:.3f} | {full:.3f} | "
            f"{cos.mean():.4f} | {cos.min():.4f} | {seconds:.0f} | "
            f"{len(texts) / seconds:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
