"""Why ONNX Runtime int8 is not ~2× PyTorch here: every CPU variant, measured the same way.

Run: ``python bench/bench_cpu_variants.py [--n 256] [--agree 1000] [--only NAME,...]``.

Each variant is an ONNX graph built offline from the local MiniLM weights (into
``$HERMES_CACHE_DIR/onnx/<fingerprint>/variants/``; nothing downloads):

* ``sdpa``: the graph ``model.backend: onnx`` exported so far (torch SDPA attention
  traced: ONNX Runtime's transformer optimizer cannot fuse its attention);
* ``eager``: exported with eager attention; ``eager+fused``: that graph after
  ``onnxruntime.transformers.optimizer`` (BERT: Attention, EmbedLayerNormalization,
  SkipLayerNormalization, BiasGelu fused);
* ``int8`` of each: dynamic quantization, per-channel 7-bit weights as the product builds
  them (``pt``: per-tensor; ``mm``: only MatMul/Attention quantized, embeddings kept
  fp32; ``w8``: full-range 8-bit weights, the earlier build, which AVX2 without VNNI
  computes with saturated int16 pair sums);
* OpenVINO compiling the unfused graphs (it cannot read ONNX Runtime's fused ops).

Every variant runs our encoder path (tokenize once, token-budget batches) with
(i) one process and ``intra_op_num_threads`` = all cores, and (ii) one process per core
with one thread each, as Spark runs one task per core (``spark.task.cpus=1``). The
reference is bare ``SentenceTransformer.encode`` (PyTorch fp32, all cores, and one process
per core). Agreement with PyTorch fp32: mean/min cosine, equal level-1 and level-1+2 codes
on one codebook (64, 64, 32; LST 64) fitted on the PyTorch vectors. Timings on a shared
machine are noisy (``uptime`` is printed): compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from c4_sample import SHARED, load_texts

MSL, BATCH = 256, 32


# ---------------------------------------------------------------- variant graphs


def variant_paths() -> dict[str, tuple[str, Path, str]]:
    """``name -> (runtime, graph, precision)``, building missing graphs (offline)."""
    from hermes_spark.embedding import backends

    sdpa = backends.onnx_model("default", "fp32", "openvino")
    folder = sdpa.parent / "variants"
    folder.mkdir(exist_ok=True)
    eager = folder / "eager.onnx"
    if not eager.exists():
        backends.export_onnx("default", eager, attention="eager")
    fused = folder / "eager-fused.onnx"
    if not fused.exists():
        backends.fuse_bert("default", eager, fused)
    out: dict[str, tuple[str, Path, str]] = {
        "ort sdpa fp32": ("onnx", sdpa, "fp32"),
        "ort eager fp32": ("onnx", eager, "fp32"),
        "ort eager+fused fp32": ("onnx", fused, "fp32"),
    }
    for label, src, kwargs in (
        ("sdpa int8", sdpa, {}),
        ("sdpa int8 pt", sdpa, {"per_channel": False}),
        ("eager int8", eager, {}),
        ("eager+fused int8", fused, {}),
        ("eager+fused int8 mm", fused, {"op_types": ["MatMul", "Attention"]}),
        ("eager+fused int8 w8", fused, {"reduce_range": False}),
    ):
        dst = folder / graph_name(label)
        if not dst.exists():
            quantize(src, dst, **kwargs)
        out[f"ort {label}"] = ("onnx", dst, "int8")
    out["ov sdpa fp32"] = ("openvino", sdpa, "fp32")
    out["ov eager fp32"] = ("openvino", eager, "fp32")
    out["ov sdpa int8"] = ("openvino", folder / graph_name("sdpa int8"), "int8")
    out["ov eager int8"] = ("openvino", folder / graph_name("eager int8"), "int8")
    return out


def graph_name(label: str) -> str:
    """File of an int8 variant; ``-w7`` marks 7-bit weights, so graphs quantized before
    (full-range weights under the same label) are never reused."""
    stem = label.replace(" ", "-").replace("+", "_")
    return f"{stem}.onnx" if stem.endswith("-w8") else f"{stem}-w7.onnx"


def quantize(
    src: Path,
    dst: Path,
    *,
    per_channel: bool = True,
    op_types: list[str] | None = None,
    reduce_range: bool = True,
) -> None:
    """Dynamic int8 quantization of ``src`` into ``dst``; 7-bit weights unless
    ``reduce_range`` is false (see ``hermes_spark.embedding.backends._quantize_int8``)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(src),
        str(dst),
        per_channel=per_channel,
        reduce_range=reduce_range,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=op_types,
        # fused contrib ops defeat shape inference: their outputs are float
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def load(runtime: str, path: Path, precision: str, threads: int) -> Any:
    from hermes_spark.embedding.backends import OnnxBackend, OpenVinoBackend

    cls = OnnxBackend if runtime == "onnx" else OpenVinoBackend
    return cls(path, precision, threads)


# ---------------------------------------------------------------- timing


def encoder_with(backend: Any, budget: int) -> Any:
    from hermes_spark.embedding.encoder import Encoder
    from hermes_spark.embedding.settings import ModelSettings

    enc = Encoder(ModelSettings("default", MSL, BATCH, "cpu", batch_tokens=budget))
    enc._backend = backend
    return enc


def _worker(spec: tuple, texts: list[str], barrier: Any, queue: Any) -> None:
    """One process: load ``spec`` with one thread, warm up, wait, time ``texts``."""
    kind, args, budget = spec
    if kind == "torch":
        import torch

        torch.set_num_threads(1)
        from hermes_spark.embedding import load_model

        st = load_model("default", MSL, "cpu")
        torch.set_num_threads(1)

        def run(ts: list[str]) -> Any:
            return st.encode(ts, batch_size=BATCH, normalize_embeddings=True)
    else:
        enc = encoder_with(load(*args, threads=1), budget)

        def run(ts: list[str]) -> Any:
            return enc.encode(ts, counts=False)

    run(texts[:16])  # warm-up
    barrier.wait()
    t0 = time.perf_counter()
    run(texts)
    queue.put(time.perf_counter() - t0)


def parallel_rate(spec: tuple, texts: list[str], procs: int) -> float:
    """docs/s of ``procs`` one-thread processes each timing its share of ``texts``."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(procs), ctx.Queue()
    parts = [texts[i::procs] for i in range(procs)]
    ps = [ctx.Process(target=_worker, args=(spec, p, barrier, queue)) for p in parts]
    for p in ps:
        p.start()
    times = [queue.get() for _ in ps]
    for p in ps:
        p.join()
    return len(texts) / max(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="documents per timing")
    ap.add_argument("--agree", type=int, default=1000, help="documents for agreement")
    ap.add_argument("--repeats", type=int, default=3, help="round-robin rounds (best kept)")
    ap.add_argument("--only", default="", help="comma-separated variant names (default all)")
    ap.add_argument("--budget", type=int, default=BATCH * MSL, help="padded tokens per batch")
    ap.add_argument(
        "--budgets", default="2048,16384", help="other token budgets, for --budget-variants"
    )
    ap.add_argument("--budget-variants", default="ort sdpa int8,ort eager+fused int8")
    ap.add_argument(
        "--procs-variants",
        default="ort sdpa int8,ort eager+fused int8",
        help="also timed as one one-thread process per core ('' for none)",
    )
    ap.add_argument("--out", default="out/bench/cpu_variants.json")
    args = ap.parse_args()
    if not SHARED.exists():
        print(f"skipped: the shared corpus {SHARED} is absent")
        return
    import torch

    from hermes_spark.embedding import load_model
    from hermes_spark.quantize.codebook import fit_codebook

    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    texts = load_texts(max(args.n, args.agree))
    bench, agree = texts[: args.n], texts[: args.agree]
    print(f"C4, {MSL} tokens, {cores} cores, N={args.n}; load before: {os.getloadavg()}")

    st = load_model("default", MSL, "cpu")
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    variants = {k: v for k, v in variant_paths().items() if not wanted or k in wanted}
    # every candidate loaded first, then timed round-robin (best of rounds): a load spike
    # on the shared machine hits one round of every candidate, not one candidate
    runs: dict[str, Any] = {
        "bare torch fp32": lambda: st.encode(bench, batch_size=BATCH, normalize_embeddings=True)
    }
    encoders: dict[str, Any] = {}
    for name, (runtime, path, precision) in variants.items():
        backend = load(runtime, path, precision, cores)
        encoders[name] = encoder_with(backend, args.budget)
        runs[name] = lambda e=encoders[name]: e.encode(bench, counts=False)
        if name in args.budget_variants.split(","):
            for b in (int(x) for x in args.budgets.split(",") if x):
                other = encoder_with(backend, b)
                runs[f"{name} @{b}"] = lambda e=other: e.encode(bench, counts=False)
    warm = bench[:16]
    st.encode(warm, batch_size=BATCH)
    for enc in encoders.values():  # warm-up (sessions allocate their arenas)
        enc.encode(warm, counts=False)
    best = dict.fromkeys(runs, float("inf"))
    for r in range(args.repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
        print(f"round {r + 1}: load {os.getloadavg()[0]:.1f}", flush=True)
    results: dict[str, dict[str, Any]] = {k: {"rate": len(bench) / t} for k, t in best.items()}

    procs = [v for v in args.procs_variants.split(",") if v in variants]
    if procs and cores > 1:
        results["bare torch fp32"]["rate_procs"] = parallel_rate(("torch", None, 0), bench, cores)
        for name in procs:
            spec = ("ort", variants[name], args.budget)
            results[name]["rate_procs"] = parallel_rate(spec, bench, cores)

    reference = st.encode(agree, batch_size=BATCH, normalize_embeddings=True)
    book = fit_codebook(
        reference,
        (64, 64, 32),
        seed=0,
        lst_dim=64,
        n_iter=10,
        model={"name": "default", "max_seq_length": MSL},
    )
    ref_codes, _ = book.assign(reference)
    for name, enc in encoders.items():
        vecs, _ = enc.encode(agree, counts=False)
        cos = (vecs * reference).sum(axis=1)
        codes, _ = book.assign(vecs)
        results[name].update(
            graph=variants[name][1].name,
            cos_mean=float(cos.mean()),
            cos_min=float(cos.min()),
            l1=float(np.mean(codes[:, 0] == ref_codes[:, 0])),
            l12=float(np.mean((codes[:, :2] == ref_codes[:, :2]).all(axis=1))),
        )
        print(f"agreement {name}: {results[name]}", flush=True)

    base = results["bare torch fp32"]
    print(f"\nload after: {os.getloadavg()}; bare encode {base['rate']:.1f} docs/s")
    print(f"{'variant':30s} docs/s  x bare torch  x procs   cos mean  cos min   L1 eq   L1+2 eq")
    for name, r in results.items():
        agreement = results.get(name.split(" @")[0], {})
        xp = f"{r['rate_procs'] / base['rate_procs']:7.2f}" if "rate_procs" in r else "      -"
        line = f"{name:30s} {r['rate']:6.1f}  {r['rate'] / base['rate']:12.2f}  {xp}"
        if "cos_mean" in agreement:
            line += (
                f"   {agreement['cos_mean']:.4f}   {agreement['cos_min']:.4f}"
                f"  {100 * agreement['l1']:5.1f}%  {100 * agreement['l12']:6.1f}%"
            )
        print(line)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"n": args.n, "agree": args.agree, "cores": cores, "budget": args.budget}
    out.write_text(json.dumps({**meta, "results": results}, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
