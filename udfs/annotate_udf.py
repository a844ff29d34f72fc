"""The fused executor-side pass: embed → LST → RVQ assign (+ tokens, quality) per batch.

Everything here runs on executors inside ``mapInPandas``. The factory copies the small
fitted state (codebook arrays, model settings) into the closure on the driver, so the
function never drags a SparkSession or driver object along; the model is loaded once
per Python worker (``spark.python.worker.reuse=true``) and cached.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import types as T

from hermes_spark.embedding.device import choose_device
from hermes_spark.embedding.encoder import Encoder, EncodeStats, Prepared, get_encoder
from hermes_spark.embedding.settings import ModelSettings
from hermes_spark.embedding.vectors import encode_f16, finite_rows, unit_normalize
from hermes_spark.quantize.codebook import Codebook
from udfs.quality import quality_scores

__all__ = ["ModelSettings", "annotate_schema", "embed_schema", "make_annotate_fn"]

log = logging.getLogger(__name__)


def regroup(batches: Iterator[pd.DataFrame], window: int) -> Iterator[pd.DataFrame]:
    """Concatenate consecutive Arrow batches into frames of at least ``window`` rows
    (the last may be smaller; ``0`` = one frame for the whole partition).

    Spark hands ``mapInPandas`` batches of ``maxRecordsPerBatch`` rows; sorting by length
    over a larger window than one batch leaves less padding in each model batch. Memory
    is bounded by ``window`` rows of text.
    """
    pending: list[pd.DataFrame] = []
    rows = 0
    for pdf in batches:
        pending.append(pdf)
        rows += len(pdf)
        if window and rows >= window:
            yield pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]
            pending, rows = [], 0
    if pending:
        yield pd.concat(pending, ignore_index=True) if len(pending) > 1 else pending[0]


def embed_schema() -> T.StructType:
    """Output of :func:`make_embed_fn`: ``doc_id, embedding``."""
    return T.StructType(
        [
            T.StructField("doc_id", T.StringType()),
            T.StructField("embedding", T.ArrayType(T.FloatType(), containsNull=False)),
        ]
    )


def make_embed_fn(
    model: ModelSettings,
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """``mapInPandas`` function turning ``doc_id, text`` into ``doc_id, embedding``
    (same tokenizer, backend and precision as the annotate pass)."""

    def embed_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        encoder = get_encoder(model)
        for pdf in regroup(batches, model.sort_window):
            prepared = encoder.prepare(pdf["text"].tolist(), vectors=True, counts=False)
            vectors = encoder.embed(prepared)
            yield pd.DataFrame({"doc_id": pdf["doc_id"], "embedding": list(vectors)})

    return embed_batches


#: Largest token count the ``n_tokens int`` column holds.
INT32_MAX = 2**31 - 1
#: Input and output column carrying why a row has no codes (null = annotated).
REASON = "reason"
#: Optional output column: little-endian float16 bytes of the unit-normalised vector.
EMBEDDING_F16 = "embedding_f16"
#: Reasons the executors add (the driver-side ones come from ``hermes_spark.corpus``).
EXECUTOR_REASONS = (
    "null_text",
    "empty_text",
    "null_embedding",
    "wrong_embedding_length",
    "non_finite_embedding",
    "bad_token_count",
)


def annotate_schema(
    levels: int, passthrough: Sequence[T.StructField], *, emit_embedding: bool = False
) -> T.StructType:
    """Output of :func:`make_annotate_fn`: ids, codes, residual errors, tokens, quality,
    reason, [embedding_f16], passthrough. Everything but ``doc_id`` is null on a row
    whose ``reason`` is set."""
    fields = [T.StructField("doc_id", T.StringType())]
    fields += [T.StructField(f"c{k + 1}", T.IntegerType(), nullable=True) for k in range(levels)]
    fields += [T.StructField(f"qerr{k + 1}", T.FloatType(), nullable=True) for k in range(levels)]
    fields += [
        T.StructField("n_tokens", T.IntegerType(), nullable=True),
        T.StructField("quality", T.DoubleType(), nullable=True),
        T.StructField(REASON, T.StringType(), nullable=True),
    ]
    if emit_embedding:
        fields.append(T.StructField(EMBEDDING_F16, T.BinaryType(), nullable=True))
    return T.StructType(fields + list(passthrough))


def token_counts(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Given token counts as int32 and the mask of unusable ones (null, negative,
    fractional or beyond int32), which become ``bad_token_count`` rejects."""
    num = pd.to_numeric(values, errors="coerce")
    arr = np.asarray(num.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(arr) | (arr < 0) | (arr > INT32_MAX) | (arr != np.floor(arr))
    return np.where(bad, 0, arr).astype(np.int32), bad


def given_vectors(values: pd.Series, dim: int) -> tuple[np.ndarray, list[str | None]]:
    """Stack an ``embedding`` column into float32 ``(n, dim)`` (unit-normalised) with a
    reject reason per row: ``null_embedding``, ``wrong_embedding_length`` or
    ``non_finite_embedding`` (NaN, ±inf or null elements); rejected rows are zero."""
    n = len(values)
    out = np.zeros((n, dim), dtype=np.float32)
    reasons: list[str | None] = [None] * n
    try:  # fast path: Arrow hands equal-length float arrays
        stacked = np.stack(values.to_numpy()).astype(np.float32, copy=False)
        if stacked.shape != (n, dim):
            raise ValueError(stacked.shape)
        out = stacked
    except (ValueError, TypeError):
        for i, value in enumerate(values):
            if value is None or (isinstance(value, float) and np.isnan(value)):
                reasons[i] = "null_embedding"
                continue
            try:
                row = np.asarray(value, dtype=np.float32)
            except (TypeError, ValueError):  # null elements
                reasons[i] = "non_finite_embedding"
                continue
            if row.shape != (dim,):
                reasons[i] = "wrong_embedding_length"
                continue
            out[i] = row
    finite = finite_rows(out)
    for i in np.flatnonzero(~finite).tolist():
        reasons[i] = reasons[i] or "non_finite_embedding"
    out[~finite] = 0.0
    return unit_normalize(out), reasons


def text_reasons(texts: pd.Series) -> list[str | None]:
    """``null_text`` / ``empty_text`` (only whitespace) per row, else ``None``."""
    return [
        "null_text" if not isinstance(t, str) else ("empty_text" if not t.strip() else None)
        for t in texts
    ]


@dataclass
class CheckedFrame:
    """A frame after the CPU stage: reasons, given values, and the tokenized model
    input of the rows still to embed (``todo``)."""

    pdf: pd.DataFrame
    reasons: list[str | None]
    vectors: np.ndarray
    counts: np.ndarray
    quality: np.ndarray
    todo: np.ndarray
    prepared: Prepared | None


class FramePass:
    """The two stages of annotating one frame (executor side).

    :meth:`check` is CPU work (row checks, tokenize once, quality); :meth:`finish` runs
    the model and the assignment. A row whose input ``reason`` is set, or that fails a
    check (see :data:`EXECUTOR_REASONS`), keeps its ``doc_id``, passthrough columns and
    reason with null codes, qerr, n_tokens, quality (and embedding_f16); it is never
    embedded. The encoder is created only when some row needs it.
    """

    def __init__(
        self,
        codebook: Codebook,
        model: ModelSettings,
        *,
        has_embedding: bool,
        has_tokens: bool,
        has_quality: bool,
        passthrough: Sequence[str] = (),
        emit_embedding: bool = False,
        encoder: Callable[[], Encoder] | None = None,
        device_assign: bool | None = None,
    ):
        self.cb = codebook
        self.model = model
        self.has_embedding, self.has_tokens, self.has_quality = (
            has_embedding,
            has_tokens,
            has_quality,
        )
        self.passthrough = tuple(passthrough)
        self.emit_embedding = emit_embedding
        self._encoder_factory = encoder or (lambda: get_encoder(model))
        self._encoder: Encoder | None = None
        self._assigner: Any = None
        #: assign in torch next to the model (None: when the torch model is on a GPU)
        self.device_assign = device_assign

    @property
    def encoder(self) -> Encoder:
        """The model's encoder (created on first use)."""
        if self._encoder is None:
            self._encoder = self._encoder_factory()
            self._encoder.stats = EncodeStats()  # totals of this task only
        return self._encoder

    @property
    def stats(self) -> EncodeStats | None:
        """The encoder's totals, when an encoder was used."""
        return self._encoder.stats if self._encoder is not None else None

    def check(self, pdf: pd.DataFrame) -> CheckedFrame:
        """CPU stage: reasons, given vectors/counts, quality, tokenized model input."""
        n = len(pdf)
        dim = int(self.cb.dim)
        given = pdf[REASON] if REASON in pdf.columns else pd.Series([None] * n, index=pdf.index)
        reasons: list[str | None] = [r if isinstance(r, str) else None for r in given]
        if "text" in pdf.columns:
            _merge(reasons, text_reasons(pdf["text"]))
        counts = np.zeros(n, dtype=np.int64)
        if self.has_tokens:
            counts, bad = token_counts(pdf["n_tokens"])
            _merge(reasons, _flagged(bad, "bad_token_count"))
        vectors = np.zeros((n, dim), dtype=np.float32)
        if self.has_embedding:
            vectors, emb_reasons = given_vectors(pdf["embedding"], dim)
            _merge(reasons, emb_reasons)
        todo = np.flatnonzero([r is None for r in reasons])
        prepared = None
        if todo.size and not (self.has_embedding and self.has_tokens):
            texts = pdf["text"].to_numpy()[todo].tolist()
            prepared = self.encoder.prepare(
                texts, vectors=not self.has_embedding, counts=not self.has_tokens
            )
            if prepared.counts is not None:
                counts[todo] = prepared.counts
                big = prepared.counts > INT32_MAX
                if big.any():
                    _merge(reasons, _flagged(big, "bad_token_count"), todo)
        quality = (
            pd.to_numeric(pdf["quality"], errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
            if self.has_quality
            else quality_scores(pdf["text"]).to_numpy()
        )
        return CheckedFrame(pdf, reasons, vectors, counts, quality, todo, prepared)

    def finish(self, frame: CheckedFrame) -> pd.DataFrame:
        """Device stage: embed the rows to do, assign codes, build the output frame."""
        pdf, reasons, vectors = frame.pdf, frame.reasons, frame.vectors
        n, levels = len(pdf), len(self.cb.levels)
        codes = np.zeros((n, levels), dtype=np.int32)
        qerr = np.zeros((n, levels), dtype=np.float32)
        assigned = False
        if frame.prepared is not None and frame.prepared.tokenized is not None:
            todo = frame.todo
            on_device = self._device_assigner()
            if on_device is not None and not self.emit_embedding:
                import torch

                tensor = self.encoder.embed_tensor(frame.prepared)
                finite = torch.isfinite(tensor).all(dim=1).cpu().numpy()
                keep = np.flatnonzero(finite)
                if keep.size:
                    rows = torch.from_numpy(keep).to(tensor.device)
                    codes[todo[keep]], qerr[todo[keep]] = on_device.assign(
                        tensor.index_select(0, rows)
                    )
                assigned = True
            else:
                model_vectors = self.encoder.embed(frame.prepared)
                vectors[todo] = model_vectors
                finite = finite_rows(model_vectors)
            _merge(reasons, _flagged(~finite, "non_finite_embedding"), todo)
        ok = np.array([r is None for r in reasons], dtype=bool)
        if ok.any() and not assigned:
            codes[ok], qerr[ok] = self.cb.assign(vectors[ok])
        out: dict[str, object] = {"doc_id": pdf["doc_id"].to_numpy()}
        for k in range(levels):
            out[f"c{k + 1}"] = _masked(codes[:, k], ok)
        for k in range(levels):
            out[f"qerr{k + 1}"] = np.where(ok, qerr[:, k], np.nan).astype(np.float32)
        out["n_tokens"] = _masked(frame.counts, ok)
        out["quality"] = np.where(ok, frame.quality, np.nan)
        out[REASON] = reasons
        if self.emit_embedding:
            blobs = encode_f16(vectors)
            out[EMBEDDING_F16] = [b if keep else None for b, keep in zip(blobs, ok, strict=True)]
        for col in self.passthrough:
            out[col] = pdf[col].to_numpy()
        return pd.DataFrame(out)

    def _device_assigner(self) -> Any:
        """A torch assigner on the model's GPU, or ``None`` (CPU: numpy assignment)."""
        if self._assigner is None:
            backend = self.encoder.backend
            device = getattr(backend, "device", "cpu")
            wanted = self.device_assign
            if wanted is None:
                wanted = str(device).startswith("cuda")
            if backend.name != "torch" or not wanted:
                self._assigner = False
            else:
                from hermes_spark.embedding.assign_torch import TorchAssigner

                self._assigner = TorchAssigner(self.cb, device)
        return self._assigner or None

    def __call__(self, pdf: pd.DataFrame) -> pd.DataFrame:
        """Both stages on one frame."""
        return self.finish(self.check(pdf))


def _flagged(mask: np.ndarray, reason: str) -> list[str | None]:
    """``reason`` where ``mask`` is set, ``None`` elsewhere (one entry per row)."""
    return [reason if flag else None for flag in np.asarray(mask, dtype=bool).tolist()]


def _merge(
    reasons: list[str | None], new: Sequence[str | None], where: np.ndarray | None = None
) -> None:
    """Set ``reasons[i]`` from ``new`` where it is still ``None`` (first reason wins)."""
    rows = range(len(reasons)) if where is None else where
    for j, i in enumerate(rows):
        if reasons[i] is None and new[j] is not None:
            reasons[i] = new[j]


def _masked(values: np.ndarray, ok: np.ndarray) -> pd.arrays.IntegerArray:
    """Nullable int32 column: ``values`` where ``ok``, null elsewhere."""
    return pd.arrays.IntegerArray(np.where(ok, values, 0).astype(np.int32), ~ok)


def prefetched(
    frames: Iterator[pd.DataFrame], check: Callable[[pd.DataFrame], CheckedFrame]
) -> Iterator[CheckedFrame]:
    """``check`` each frame one step ahead on a CPU thread (tokenizing frame i+1 while
    the device runs frame i); frames come out in order."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hermes-tokenize") as pool:
        pending = None
        for pdf in frames:
            future = pool.submit(check, pdf)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()


def make_annotate_fn(
    codebook: Codebook,
    model: ModelSettings,
    *,
    has_embedding: bool,
    has_tokens: bool,
    has_quality: bool,
    passthrough: Sequence[str] = (),
    emit_embedding: bool = False,
    prefetch: bool | None = None,
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """``mapInPandas`` function for the fused annotate pass (row-preserving).

    Input columns: ``doc_id, text, [reason], [embedding], [n_tokens], [quality],
    *passthrough``; output: :func:`annotate_schema`. Every input row comes out once, in
    order. The model is loaded lazily, only when some row must be embedded or counted.
    ``prefetch`` (default: when the model runs on a GPU) tokenizes the next sort window
    on a CPU thread while the device embeds the current one.
    """
    cb = codebook  # frozen dataclass of small numpy arrays: rides in the closure

    def annotate_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        step = FramePass(
            cb,
            model,
            has_embedding=has_embedding,
            has_tokens=has_tokens,
            has_quality=has_quality,
            passthrough=passthrough,
            emit_embedding=emit_embedding,
        )
        # the window only matters when the model embeds: given vectors stream batch by batch
        frames = regroup(batches, model.sort_window) if not has_embedding else batches
        ahead = prefetch
        if ahead is None:
            ahead = not has_embedding and choose_device(model.device).startswith("cuda")
        checked = prefetched(frames, step.check) if ahead else map(step.check, frames)
        for frame in checked:
            yield step.finish(frame)
        stats = step.stats
        if stats is not None and stats.docs:
            log.info(
                "task embedded %d docs in %d batches: padding %.3f, tokenizing %.1f%% of "
                "%.2fs (tokenize %.2fs, embed %.2fs)",
                stats.docs,
                stats.batches,
                stats.padding_ratio,
                100 * stats.tokenize_share,
                stats.tokenize_seconds + stats.embed_seconds,
                stats.tokenize_seconds,
                stats.embed_seconds,
            )

    return annotate_batches
