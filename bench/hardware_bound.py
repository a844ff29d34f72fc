"""The hardware bound on CPU embedding throughput: model FLOPs over the measured GEMM rate.

No project imports (``bench_annotate`` passes the model directory), so the arithmetic
is testable on its own. Two parts:

* :func:`encoder_flops` counts one BERT-style encoder forward pass over ``T`` tokens as
  multiply-adds, 2 FLOPs per multiply-add. Per layer, with hidden size ``h`` and FFN size
  ``i``:

  - Q, K, V and output projections: ``4 · T · h²`` multiply-adds,
  - the two FFN matrices (``h → i → h``): ``2 · T · h · i``,
  - attention scores ``Q Kᵀ`` and the weighted sum ``softmax · V`` over all heads:
    ``2 · T² · h`` (heads split ``h``, so the head count drops out),

  so ``FLOPs = 2 · layers · (4·T·h² + 2·T·h·i + 2·T²·h)``. Embeddings, layer norms,
  softmax, GELU, biases and pooling are left out: they are O(T·h) and a few percent at
  most, and a GEMM-rate bound is about the GEMMs.
* :func:`int8_gemm_rate` measures what this machine does on the model's int8 GEMM: one
  ``MatMulInteger`` node (uint8 activations × int8 constant weights → int32, as the
  dynamic-int8 export runs them) in ONNX Runtime with ``intra_op_num_threads`` threads,
  shaped like the FFN matrix on a batch of 8 documents of 256 tokens. :func:`fp32_gemm_rate`
  is the same with ``MatMul`` in float32, for comparison.

``bound_docs_per_s`` is then ``rate / FLOPs per document``: no int8 encoder on this CPU
does more documents per second, since attention, layer norms and quantizing activations
only add to the GEMMs.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any


def encoder_flops(layers: int, hidden: int, intermediate: int, tokens: int) -> float:
    """FLOPs (2 per multiply-add) of one encoder forward pass over ``tokens`` tokens: per
    layer ``4·T·h²`` (Q, K, V, O) + ``2·T·h·i`` (FFN) + ``2·T²·h`` (scores and weighted
    sum), times 2; embeddings, layer norms, softmax and biases ignored."""
    t, h, i = tokens, hidden, intermediate
    macs = 4 * t * h * h + 2 * t * h * i + 2 * t * t * h
    return float(2 * layers * macs)


def model_flops_per_doc(model_dir_or_config: str | Path, tokens: int = 256) -> float:
    """:func:`encoder_flops` of the model whose ``config.json`` is given (or whose
    directory holds one) for a document of ``tokens`` tokens."""
    path = Path(model_dir_or_config)
    if path.is_dir():
        path = path / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    return encoder_flops(
        config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"], tokens
    )


def gemm_graph(k: int, n: int, dtype: str, weights: Any) -> bytes:
    """A one-node ONNX model ``Y = A @ W``: ``A`` an input of shape ``(m, k)``, ``W`` the
    constant ``weights`` ``(k, n)``; ``MatMulInteger`` (uint8 × int8 → int32) for
    ``dtype="int8"``, ``MatMul`` in float32 for ``"fp32"``."""
    from onnx import TensorProto, helper, numpy_helper

    in_type, out_type, op = {
        "int8": (TensorProto.UINT8, TensorProto.INT32, "MatMulInteger"),
        "fp32": (TensorProto.FLOAT, TensorProto.FLOAT, "MatMul"),
    }[dtype]
    node = helper.make_node(op, ["A", "W"], ["Y"])
    graph = helper.make_graph(
        [node],
        f"gemm_{dtype}",
        [helper.make_tensor_value_info("A", in_type, ["m", k])],
        [helper.make_tensor_value_info("Y", out_type, ["m", n])],
        initializer=[numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def gemm_session(kn: tuple[int, int], dtype: str, weights: Any, threads: int) -> Any:
    """An ONNX Runtime CPU session on :func:`gemm_graph` (``kn`` the weights' shape) with
    ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    k, n = kn
    return ort.InferenceSession(
        gemm_graph(k, n, dtype, weights), sess_options=opts, providers=["CPUExecutionProvider"]
    )


def run_gemm_once(a: Any, w: Any, threads: int = 1) -> Any:
    """``a @ w`` computed once by the graph: int32 for uint8 ``a`` × int8 ``w``, float32
    for float32 inputs (what the rate functions time)."""
    dtype = "int8" if a.dtype.kind == "u" else "fp32"
    session = gemm_session(w.shape, dtype, w, threads)
    return session.run(None, {"A": a})[0]


def _inputs(m: int, k: int, n: int, dtype: str) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    if dtype == "int8":
        a = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
        w = rng.integers(-128, 128, size=(k, n), dtype=np.int8)
    else:
        a = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((k, n), dtype=np.float32)
    return a, w


def gemm_rate(threads: int, dtype: str, m: int, k: int, n: int, seconds: float) -> float:
    """Operations per second (2 per multiply-add) of ``(m, k) @ (k, n)`` in ``dtype``:
    warm-up runs, then as many runs as fit in ``seconds`` (at least 3)."""
    a, w = _inputs(m, k, n, dtype)
    session = gemm_session((k, n), dtype, w, threads)
    feeds = {"A": a}
    for _ in range(3):  # warm-up: thread pool, packed weights, caches
        session.run(None, feeds)
    runs, t0 = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - t0 < seconds:
        session.run(None, feeds)
        runs += 1
    elapsed = time.perf_counter() - t0
    return 2.0 * m * k * n * runs / max(elapsed, 1e-12)


def int8_gemm_rate(
    threads: int, m: int = 256 * 8, k: int = 384, n: int = 1536, seconds: float = 2.0
) -> float:
    """Measured int8 ``MatMulInteger`` ops/s; default shape: the FFN GEMM of 8 documents
    of 256 tokens (``2048 × 384 @ 384 × 1536``)."""
    return gemm_rate(threads, "int8", m, k, n, seconds)


def fp32_gemm_rate(
    threads: int, m: int = 256 * 8, k: int = 384, n: int = 1536, seconds: float = 2.0
) -> float:
    """Measured float32 ``MatMul`` FLOPs/s on the same shape, for comparison."""
    return gemm_rate(threads, "fp32", m, k, n, seconds)


def bound_docs_per_s(flops_per_doc: float, gemm_rate: float) -> float:
    """Documents per second if every FLOP ran at ``gemm_rate``: the hardware bound."""
    if flops_per_doc <= 0 or not math.isfinite(gemm_rate):
        raise ValueError(f"need positive FLOPs and a finite rate: {flops_per_doc}, {gemm_rate}")
    return gemm_rate / flops_per_doc
