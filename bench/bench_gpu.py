"""GPU throughput: bare ``SentenceTransformer.encode`` vs the annotate UDF path on one GPU.

Run: ``python bench/bench_gpu.py [--n 20000] [--precision fp16] [--batch-tokens 65536]``.
Both embed the same C4 documents at 256 tokens on ``cuda:0``: (a) plain ``encode`` with
``batch_size`` documents in fp16, (b) our annotate function (tokenize once on a CPU
thread one window ahead, token-budget batches, pinned non-blocking copies, SDPA, LST +
RVQ assignment in torch on the GPU), called in-process on pandas frames exactly as
``mapInPandas`` calls it. Prints docs/s and the mean GPU utilisation sampled with
``nvidia-smi`` during each run. Without CUDA it prints why it skips and exits 0.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "c4_en_1k.parquet"


class Utilisation:
    """Samples ``nvidia-smi`` GPU utilisation (%) every 100 ms while active."""

    def __init__(self, index: int = 0):
        self.index = index
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        cmd = [
            "nvidia-smi",
            f"--id={self.index}",
            "--query-gpu=utilization.gpu",
            "--format=csv,noheader,nounits",
        ]
        while not self._stop.is_set():
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=2).stdout
                self.samples.append(float(out.strip().splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                pass
            self._stop.wait(0.1)

    def __enter__(self) -> Utilisation:
        if shutil.which("nvidia-smi"):
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples)) if self.samples else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--batch-tokens", type=int, default=0, help="0: batch_size x max_seq_length")
    ap.add_argument("--precision", default="fp16", choices=["fp16", "bf16", "fp32"])
    ap.add_argument("--window", type=int, default=8192, help="sort window (rows)")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu: skipped: torch sees no CUDA GPU on this machine")
        return 0
    from hermes_spark.embedding.models import load_sentence_transformer
    from hermes_spark.embedding.settings import ModelSettings
    from hermes_spark.quantize.codebook import fit_codebook
    from udfs.annotate_udf import make_annotate_fn

    texts = pq.read_table(SHARED, columns=["text"])["text"].to_pylist() if SHARED.exists() else []
    if not texts:
        print(f"bench_gpu: skipped: {SHARED} is absent")
        return 0
    while len(texts) < args.n:
        texts = texts + texts
    texts = texts[: args.n]
    msl, bs = args.max_seq_length, args.batch_size
    print(
        f"GPU: {torch.cuda.get_device_name(0)}; {args.n} C4 docs at {msl} tokens; {args.precision}"
    )

    st = load_sentence_transformer("default", msl, "cuda:0", args.precision, cache=False)
    st.encode(texts[:512], batch_size=bs)  # warm-up
    torch.cuda.synchronize()
    with Utilisation() as util_a:
        t0 = time.perf_counter()
        ref = st.encode(texts, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True)
        torch.cuda.synchronize()
        bare = args.n / (time.perf_counter() - t0)
    del st
    torch.cuda.empty_cache()

    book = fit_codebook(
        ref[:5000].astype(np.float32),
        (64, 64, 32),
        seed=0,
        lst_dim=64,
        n_iter=5,
        model={"name": "default", "max_seq_length": msl},
    )
    settings = ModelSettings(
        "default",
        msl,
        bs,
        "cuda",
        sort_window=args.window,
        backend="torch",
        precision=args.precision,
        batch_tokens=args.batch_tokens,
    )
    fn = make_annotate_fn(book, settings, has_embedding=False, has_tokens=False, has_quality=False)
    ids = [f"d{i}" for i in range(args.n)]
    frames = [
        pd.DataFrame({"doc_id": ids[i : i + 2048], "text": texts[i : i + 2048]})
        for i in range(0, args.n, 2048)
    ]
    list(fn(iter(frames[:2])))  # warm-up: model load, first kernels
    torch.cuda.synchronize()
    with Utilisation() as util_b:
        t0 = time.perf_counter()
        out = pd.concat(list(fn(iter(frames))), ignore_index=True)
        torch.cuda.synchronize()
        ours = args.n / (time.perf_counter() - t0)
    codes_ref, _ = book.assign(ref.astype(np.float32))
    l1 = float(np.mean(out["c1"].to_numpy(dtype=np.int64) == codes_ref[:, 0]))
    print(f"(a) bare SentenceTransformer.encode: {bare:9.1f} docs/s, GPU busy {util_a.mean:5.1f}%")
    print(
        f"(b) annotate UDF path (+ tokens, quality, LST+RVQ): {ours:9.1f} docs/s, "
        f"GPU busy {util_b.mean:5.1f}%"
    )
    print(f"ratio (b)/(a): {ours / bare:.2f}; level-1 codes equal to encode's: {100 * l1:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
