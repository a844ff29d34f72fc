"""CPU throughput and agreement of the annotate UDF path vs bare ``SentenceTransformer.encode``.

Run: ``python bench/bench_annotate.py [--n 256] [--agree 1000] [--spark] [--combos onnx:int8]``
(``make bench``). On C4 (``shared/data/c4_en_1k.parquet``; without it the benchmark skips
with the reason) at 256 tokens, all in one run:

* throughput, docs/s, steady state (models loaded and warmed up first; for each backend
  (a), (b) and (c) are timed next to each other, best of ``--repeats`` rounds, so a load
  spike on a shared machine moves all three):
  (a) bare ``SentenceTransformer.encode`` (PyTorch backend, fp32),
  (b) the bare equivalent of our backend (the ``transformers`` tokenizer + the same
      ONNX Runtime session, fixed batches in input order) when ours is not PyTorch,
  (c) our annotate function for every backend × precision: the exact function
      ``mapInPandas`` runs on executors (embed → LST → RVQ → tokens → quality), called
      in-process on pandas frames; ``--spark`` also times it through Spark ``local[*]``
      (rate = N / (t(2N) - t(N)), Spark's start-up excluded);
* agreement with fp32 PyTorch per backend × precision: mean/min cosine of the vectors
  and the share of equal level-1 and level-1+2 codes on one codebook (64,64,32, fitted
  on the fp32 PyTorch vectors);
* tokenizer share of the embedding time: before (sentence-transformers tokenizes inside
  ``encode``, then ``count_tokens`` tokenizes again) and after (tokenize once);
* the hardware bound (``bench/hardware_bound.py``): the model's FLOPs per document at
  ``--max-seq-length`` tokens over this CPU's int8 GEMM rate, measured on a one-node
  ``MatMulInteger`` graph in ONNX Runtime with as many threads as the timed paths use,
  the better of one measurement before and one after them (an fp32 ``MatMul`` rate
  beside it); every timed path's docs/s as a share of it;
* where the time goes per task for the chosen CPU default (``--no-breakdown`` skips
  it): tokenize (token counts come from the same pass), model, LST, RVQ assignment,
  row checks and quality, timed on the documents of one in-process annotate run (the
  tokenize and model seconds are the encoder's own totals for that run), the Arrow
  conversions ``mapInPandas`` does around the function (Arrow → pandas of the input,
  pandas → Arrow of the output in the Spark schema), the rest of the in-process total
  ("other, ours"), and with ``--spark`` the Spark overhead: the seconds of one Spark job
  over the same documents (models already loaded) minus all of the above;
* last, the chosen CPU default against the goals: ≥ 3× (a), ≥ 0.95× (b), ≥ 50% of the
  hardware bound.

Timings on a shared machine are noisy: compare ratios from one run, not absolute rates.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from c4_sample import SHARED, load_texts
from hardware_bound import (
    bound_docs_per_s,
    fp32_gemm_rate,
    int8_gemm_rate,
    model_flops_per_doc,
)
from time_breakdown import ARROW, INNER, OTHER, SPARK_REST, breakdown_rows

from hermes_spark.embedding import count_tokens, load_model, resolve_model_path
from hermes_spark.embedding.encoder import Encoder, EncodeStats, get_encoder
from hermes_spark.embedding.settings import DEFAULT_BACKEND, ModelSettings
from hermes_spark.quantize.codebook import fit_codebook
from udfs.annotate_udf import annotate_schema, make_annotate_fn, text_reasons
from udfs.quality import quality_scores

COMBOS = (
    ("torch", "fp32"),
    ("onnx", "fp32"),
    ("onnx", "int8"),
    ("openvino", "fp32"),
    ("openvino", "int8"),
)


def rates(fns: dict[str, Any], n: int, repeats: int) -> dict[str, float]:
    """docs/s of each ``fn()`` over ``n`` documents, best of ``repeats`` rounds, the
    functions timed in turn in every round."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {k: n / t for k, t in best.items()}


def bare_onnx(encoder: Encoder, texts: list[str], batch: int, msl: int) -> np.ndarray:
    """What a user would write around the same ONNX session: HF tokenizer, fixed batches."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_path(encoder.settings.name))
    session = encoder.backend.session
    out = []
    for i in range(0, len(texts), batch):
        enc = tok(
            texts[i : i + batch], padding=True, truncation=True, max_length=msl, return_tensors="np"
        )
        feeds = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        out.append(session.run(None, feeds)[0])
    return np.concatenate(out)


def udf_frames(texts: list[str]) -> list[pd.DataFrame]:
    ids = [f"d{i}" for i in range(len(texts))]
    return [pd.DataFrame({"doc_id": ids, "text": texts})]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="documents per throughput timing")
    ap.add_argument("--agree", type=int, default=1000, help="documents for agreement")
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--spark", action="store_true", help="also time through Spark local[*]")
    ap.add_argument(
        "--no-breakdown",
        dest="breakdown",
        action="store_false",
        help="skip the per-task time breakdown of the CPU default",
    )
    ap.add_argument("--repeats", type=int, default=2, help="rounds per timing (best kept)")
    ap.add_argument(
        "--combos",
        default=",".join(f"{b}:{p}" for b, p in COMBOS),
        help="backend:precision list (the chosen default is always included)",
    )
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if not SHARED.exists():
        print(f"bench_annotate skipped: the shared corpus {SHARED} is absent")
        return
    import torch

    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    msl, bs = args.max_seq_length, args.batch_size
    texts = load_texts(max(args.n, args.agree))
    bench, agree_texts = texts[: args.n], texts[: args.agree]
    combos = [tuple(c.split(":")) for c in args.combos.split(",") if c]
    if DEFAULT_BACKEND not in combos:
        combos.append(DEFAULT_BACKEND)
    print(
        f"corpus: C4 en ({SHARED.name}); max_seq_length {msl}; batch {bs}; {cores} cores; "
        f"N={args.n}; load average {os.getloadavg()}"
    )

    st_model = load_model("default", msl, "cpu")
    st_model.encode(bench[:16], batch_size=bs)  # warm-up

    def bare_torch() -> np.ndarray:
        return st_model.encode(bench, batch_size=bs, normalize_embeddings=True)

    bare_torch_rate = rates({"a": bare_torch}, len(bench), 1)["a"]
    print(f"(a) bare SentenceTransformer.encode, torch fp32: {bare_torch_rate:8.1f} docs/s")
    share_before = tokenizer_share_before(st_model, bench, msl, bare_torch_rate)
    print(f"tokenizer share before (tokenize twice): {100 * share_before:5.1f}%")

    ref_encoder = Encoder(ModelSettings("default", msl, bs, "cpu", sort_window=0))
    reference = ref_encoder.encode(agree_texts)[0]  # tokenize once: ids and counts
    book = fit_codebook(
        reference,
        (64, 64, 32),
        seed=0,
        lst_dim=64,
        n_iter=10,
        model={"name": "default", "max_seq_length": msl},
    )
    ref_codes, _ = book.assign(reference)
    ref = (reference, ref_codes, ref_encoder.stats)
    gemm_before = (int8_gemm_rate(cores), fp32_gemm_rate(cores))  # best of before/after

    rows, parts = [], None
    for backend, precision in combos:
        settings = ModelSettings(
            "default", msl, bs, "cpu", sort_window=0, backend=backend, precision=precision
        )
        rows.append(measure(settings, book, bench, agree_texts, bare_torch, ref, args.repeats))
        print(f"  {backend} {precision}: {rows[-1][2]} (load {os.getloadavg()[0]:.1f})", flush=True)
        if args.breakdown and (backend, precision) == DEFAULT_BACKEND:
            parts = component_seconds(book, settings, bench)
        if args.spark:
            spark_rate, spark_seconds = time_spark(book, settings, bench, cores)
            print(f"    {backend} {precision} via Spark local[{cores}]: {spark_rate:.1f} docs/s")
            if parts is not None and (backend, precision) == DEFAULT_BACKEND:
                parts["spark"] = spark_seconds

    print_table(rows)
    if parts is not None:
        print_breakdown(parts, len(bench))
    bound = hardware_bound_block(rows, cores, msl, gemm_before)
    print_goals(rows, args.n, len(agree_texts), msl, share_before, bound)


def tokenizer_share_before(st_model: Any, bench: list[str], msl: int, torch_rate: float) -> float:
    """Tokenizer share before: ``encode`` tokenizes inside, then ``count_tokens`` again."""
    t0 = time.perf_counter()
    st_model.tokenizer(bench, truncation=True, max_length=msl, padding=True)
    t_inside = time.perf_counter() - t0
    t0 = time.perf_counter()
    count_tokens(st_model, bench)
    t_count = time.perf_counter() - t0
    before_total = len(bench) / torch_rate + t_count
    return (t_inside + t_count) / before_total


def measure(
    settings: ModelSettings,
    book: Any,
    bench: list[str],
    agree_texts: list[str],
    bare_torch: Any,
    ref: tuple[np.ndarray, np.ndarray, EncodeStats],
    repeats: int,
) -> tuple:
    """One backend × precision: (ours, (a), (b)) timed side by side, then agreement with
    the fp32 PyTorch reference; the row the table and the goals read."""
    backend, precision = settings.backend, settings.precision
    reference, ref_codes, ref_stats = ref
    msl, bs = settings.max_seq_length, settings.batch_size
    enc = Encoder(settings)
    enc.encode(bench[:16])  # load / export and warm up
    fn = make_annotate_fn(book, settings, has_embedding=False, has_tokens=False, has_quality=False)
    frames = udf_frames(bench)
    timed = {"ours": lambda: list(fn(iter(frames))), "a": bare_torch}
    if backend == "onnx":
        bare_onnx(enc, bench[:16], bs, msl)
        timed["b"] = lambda: bare_onnx(enc, bench, bs, msl)
    got = rates(timed, len(bench), repeats)
    if (backend, precision) == ("torch", "fp32"):  # the reference itself
        vecs, stats_enc = reference, ref_stats
    else:
        enc.stats = EncodeStats()
        vecs, _ = enc.encode(agree_texts)  # tokenize once: ids and whole-text counts
        stats_enc = enc.stats
    cos = (vecs * reference).sum(axis=1)
    codes, _ = book.assign(vecs)
    l1 = float(np.mean(codes[:, 0] == ref_codes[:, 0]))
    l12 = float(np.mean((codes[:, :2] == ref_codes[:, :2]).all(axis=1)))
    return (backend, precision, got, cos.mean(), cos.min(), l1, l12, stats_enc)


def print_table(rows: list[tuple]) -> None:
    print()
    print(
        "backend  prec   ours docs/s  x bare torch  x bare same  cos mean  cos min"
        "   L1 equal  L1+2 equal  padding  tokenize share"
    )
    for backend, precision, got, cmean, cmin, l1, l12, s in rows:
        ours = got["ours"]
        print(
            f"{backend:7s}  {precision:5s}  {ours:11.1f}  {ours / got['a']:12.2f}  "
            f"{ours / got.get('b', got['a']):11.2f}  {cmean:8.4f}  {cmin:7.4f}  "
            f"{100 * l1:8.1f}%  {100 * l12:9.1f}%  "
            f"{100 * s.padding_ratio:6.1f}%  {100 * s.tokenize_share:13.1f}%"
        )


def hardware_bound_block(
    rows: list[tuple], threads: int, msl: int, before: tuple[float, float]
) -> float:
    """Print the hardware bound (model FLOPs per ``msl``-token document over this CPU's
    int8 GEMM rate with ``threads`` threads like the timed paths, the better of the rate
    ``before`` the timed paths and one measured now) and every timed path's share of it;
    return the bound in docs/s."""
    flops = model_flops_per_doc(resolve_model_path("default"), msl)
    after = (int8_gemm_rate(threads), fp32_gemm_rate(threads))
    int8_rate, fp32_rate = max(before[0], after[0]), max(before[1], after[1])
    bound = bound_docs_per_s(flops, int8_rate)
    print(
        f"\nhardware bound ({threads} threads, load {os.getloadavg()[0]:.1f}): "
        f"{flops / 1e9:.2f} GFLOPs/doc at {msl} tokens\n"
        f"  int8 GEMM (MatMulInteger {256 * 8}x384 @ 384x1536): {int8_rate / 1e9:.1f} GOPS "
        f"(before the timed paths {before[0] / 1e9:.1f}, after {after[0] / 1e9:.1f})\n"
        f"  fp32 GEMM (MatMul, same shape): {fp32_rate / 1e9:.1f} GFLOPS "
        f"(before {before[1] / 1e9:.1f}, after {after[1] / 1e9:.1f})\n"
        f"  bound: {bound:.1f} docs/s int8 ({bound_docs_per_s(flops, fp32_rate):.1f} at "
        f"the fp32 rate)"
    )
    names = {"ours": "ours (annotate UDF path)", "a": "(a) bare torch encode", "b": "(b) bare same"}
    for backend, precision, got, *_ in rows:
        for key, rate in got.items():
            print(
                f"  {backend:8s} {precision:5s} {names[key]:26s} {rate:8.1f} docs/s  "
                f"{100 * rate / bound:5.1f}% of the bound"
            )
    return bound


def print_goals(
    rows: list[tuple], n: int, n_agree: int, msl: int, share_before: float, bound: float
) -> None:
    d = next(r for r in rows if (r[0], r[1]) == DEFAULT_BACKEND)
    got = d[2]
    vs_a = got["ours"] / got["a"]
    print(
        f"\nCPU default {DEFAULT_BACKEND[0]} {DEFAULT_BACKEND[1]} (annotate UDF path), "
        f"{n} C4 documents at {msl} tokens, load average {os.getloadavg()[0]:.1f}:\n"
        f"  vs (a) bare SentenceTransformer.encode, PyTorch fp32: {vs_a:.2f}x (goal >= 3)\n"
        f"  vs (b) bare encode around the same backend: "
        f"{got['ours'] / got.get('b', got['a']):.2f}x (goal >= 0.95)\n"
        f"  agreement with fp32 PyTorch on {n_agree} documents: cosine mean "
        f"{d[3]:.4f} min {d[4]:.4f}; level-1 codes equal {100 * d[5]:.1f}%, "
        f"level-1+2 {100 * d[6]:.1f}%\n"
        f"  tokenizer share of the time: before {100 * share_before:.1f}%, "
        f"after {100 * d[7].tokenize_share:.1f}%\n"
        f"goals: share of hardware bound {100 * got['ours'] / bound:.1f}% (goal ≥ 50%); "
        f"vs bare encode {vs_a:.2f}× (goal ≥ 3×)"
    )


def timed_call(fn: Any, *args: Any, repeats: int = 1) -> tuple[Any, float]:
    """``(fn(*args), seconds)``, the best of ``repeats`` calls (the later ones warm)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return out, best


def component_seconds(book: Any, settings: ModelSettings, texts: list[str]) -> dict[str, float]:
    """Seconds per component of one in-process annotate run over ``texts`` (one task, one
    frame): ``total``, the encoder's own tokenize and model totals for that run (the
    annotate function's cached encoder, its stats reset by the run), then LST, RVQ,
    row checks, quality and both Arrow conversions timed alone on the same documents
    (each the best of 3 calls: warm, like the run's own)."""
    fn = make_annotate_fn(book, settings, has_embedding=False, has_tokens=False, has_quality=False)
    frames = udf_frames(texts)
    batches = [pa.RecordBatch.from_pandas(f, preserve_index=False) for f in frames]
    pdfs, t_in = timed_call(lambda: [b.to_pandas() for b in batches], repeats=3)
    outs, total = timed_call(lambda: list(fn(iter(pdfs))))
    encoder = get_encoder(settings)  # the one the run used (one per settings per worker)
    stats = EncodeStats(**vars(encoder.stats))
    schema = to_arrow(annotate_schema(len(book.levels), []))
    _, t_out = timed_call(
        lambda: [pa.RecordBatch.from_pandas(o, schema=schema, preserve_index=False) for o in outs],
        repeats=3,
    )
    vecs, _ = encoder.encode(texts, counts=False)  # the vectors the run assigned
    z, t_lst = timed_call(book.lst.transform, vecs, repeats=3)
    _, t_rvq = timed_call(book.rvq.encode, z, repeats=3)
    series = pdfs[0]["text"]
    _, t_checks = timed_call(text_reasons, series, repeats=3)
    _, t_quality = timed_call(quality_scores, series, repeats=3)
    seconds = (stats.tokenize_seconds, stats.embed_seconds, t_lst, t_rvq, t_checks, t_quality)
    return {
        "total": total,
        **dict(zip(INNER, seconds, strict=True)),
        ARROW[0]: t_in,
        ARROW[1]: t_out,
    }


def to_arrow(schema: Any) -> pa.Schema:
    """The Arrow schema Spark converts a ``mapInPandas`` output frame to."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(schema)


def print_breakdown(parts: dict[str, float], n: int) -> None:
    """The per-task table: component, seconds, share, ms per document; the total is the
    in-process run plus the Arrow conversions, or the Spark path's seconds when timed."""
    inner = {k: parts[k] for k in INNER}
    in_process = parts["total"]
    other = breakdown_rows(inner, in_process)[-1][1]
    arrow = {k: parts[k] for k in ARROW}
    measured = {**inner, OTHER: other, **arrow}
    spark = parts.get("spark")
    total = spark if spark is not None else in_process + sum(arrow.values())
    rows = breakdown_rows(measured, total, SPARK_REST)
    if spark is None:
        rows = rows[:-1]  # no Spark path timed: nothing left over
    where = "Spark path, one job" if spark is not None else "in process + Arrow"
    print(f"\nwhere the time goes per task, {DEFAULT_BACKEND[0]} {DEFAULT_BACKEND[1]} ({where}):")
    print(f"{'component':28s} {'seconds':>8s} {'share':>7s} {'ms/doc':>8s}")
    for name, sec, share in rows:
        print(f"{name:28s} {sec:8.4f} {100 * share:6.1f}% {1000 * sec / max(n, 1):8.3f}")
    print(f"{'total':28s} {total:8.4f} {100.0:6.1f}% {1000 * total / max(n, 1):8.3f}")
    if other == 0.0:
        print("  (the parts timed alone add up to more than the in-process run)")
    print(f"  in-process annotate total {in_process:.3f} s for {n} documents")
    if spark is not None:
        over = spark - in_process
        print(
            f"  Spark overhead: Spark path {spark:.3f} s - in-process {in_process:.3f} s = "
            f"{over:.3f} s ({100 * over / spark:.1f}% of the Spark path; Arrow included)\n"
            f"  (Spark runs {os.cpu_count()} one-core tasks side by side, in process one "
            "session uses every core: a negative overhead is that layout's gain)"
        )


def time_spark(book, settings: ModelSettings, texts: list[str], cores: int) -> tuple[float, float]:
    """Steady-state docs/s of the annotate function through Spark ``local[cores]``, and
    the seconds of one whole job over ``texts`` (models loaded, job overhead included)."""
    from hermes_spark.session import get_spark

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

    n = len(texts)
    timed(2 * cores * 8)  # warm-up: Python workers start, models load
    t_n, t_2n = timed(n), timed(2 * n)
    return n / max(t_2n - t_n, 1e-9), t_n


if __name__ == "__main__":
    main()
