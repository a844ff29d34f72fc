"""The fused executor-side pass: embed → LST → RVQ assign (+ tokens, quality) per batch.

Everything here runs on executors inside ``mapInPandas``. The factory copies the small
fitted state (codebook arrays, model settings) into the closure on the driver, so the
function never drags a SparkSession or driver object along; the model is loaded once
per Python worker (``spark.python.worker.reuse=true``) and cached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import types as T

from hermes_spark.embedding import count_tokens, embed_texts, load_model
from hermes_spark.embedding.vectors import encode_f16, finite_rows, unit_normalize
from hermes_spark.quantize.codebook import Codebook
from udfs.quality import quality_scores


@dataclass(frozen=True)
class ModelSettings:
    """How the executors run the embedding model (copied from the codebook artifact)."""

    name: str
    max_seq_length: int
    batch_size: int
    device: str = "auto"
    sort_window: int = 32_768


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
    """``mapInPandas`` function turning ``doc_id, text`` into ``doc_id, embedding``."""

    def embed_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        st = load_model(model.name, model.max_seq_length, model.device)
        for pdf in regroup(batches, model.sort_window):
            vectors = embed_texts(st, pdf["text"].tolist(), model.batch_size)
            yield pd.DataFrame({"doc_id": pdf["doc_id"], "embedding": list(vectors)})

    return embed_batches


#: Job-scoped Spark local property for failure drills: when set to ``first-attempt`` every
#: annotate task raises on its first attempt (Spark retries it; output must not duplicate).
FAIL_PROPERTY = "hermes.inject_failure"


class InjectedFailure(RuntimeError):
    """Raised on purpose by a failure drill (see :data:`FAIL_PROPERTY`)."""


def _maybe_fail() -> None:
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if (
        ctx is not None
        and ctx.getLocalProperty(FAIL_PROPERTY) == "first-attempt"
        and ctx.attemptNumber() == 0
    ):
        raise InjectedFailure(
            f"injected failure in partition {ctx.partitionId()} attempt {ctx.attemptNumber()}"
        )


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

#: ``texts -> (unit vectors (n, dim) float32, whole-text token counts (n,) int32)``
Encode = Callable[[list[str]], tuple[np.ndarray, np.ndarray]]


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
    for i in np.flatnonzero(~finite):
        reasons[i] = reasons[i] or "non_finite_embedding"
    out[~finite] = 0.0
    return unit_normalize(out), reasons


def text_reasons(texts: pd.Series) -> list[str | None]:
    """``null_text`` / ``empty_text`` (only whitespace) per row, else ``None``."""
    return [
        "null_text" if not isinstance(t, str) else ("empty_text" if not t.strip() else None)
        for t in texts
    ]


def annotate_frame(
    pdf: pd.DataFrame,
    codebook: Codebook,
    encode: Callable[[], Encode],
    *,
    has_embedding: bool,
    has_tokens: bool,
    has_quality: bool,
    passthrough: Sequence[str] = (),
    emit_embedding: bool = False,
) -> pd.DataFrame:
    """Annotate one pandas frame, keeping every row in place (executor side).

    A row whose input ``reason`` is set, or that fails a check here (see
    :data:`EXECUTOR_REASONS`), keeps its ``doc_id``, passthrough columns and reason, with
    null codes, qerr, n_tokens, quality (and embedding_f16); it is never embedded.
    ``encode()`` returns the model's encode function and is only called when a row
    needs it (so a frame of rejects never loads the model).
    """
    n = len(pdf)
    levels = len(codebook.levels)
    dim = int(codebook.dim)
    given = pdf[REASON] if REASON in pdf.columns else pd.Series([None] * n, index=pdf.index)
    reasons: list[str | None] = [r if isinstance(r, str) else None for r in given]

    def merge(new: Sequence[str | None], where: np.ndarray | None = None) -> None:
        rows = range(n) if where is None else where
        for j, i in enumerate(rows):
            if reasons[i] is None and new[j] is not None:
                reasons[i] = new[j]

    if "text" in pdf.columns:
        merge(text_reasons(pdf["text"]))
    counts = np.zeros(n, dtype=np.int32)
    if has_tokens:
        counts, bad = token_counts(pdf["n_tokens"])
        merge(np.where(bad, "bad_token_count", None).tolist())
    vectors = np.zeros((n, dim), dtype=np.float32)
    if has_embedding:
        vectors, emb_reasons = given_vectors(pdf["embedding"], dim)
        merge(emb_reasons)
    todo = np.flatnonzero([r is None for r in reasons])
    if todo.size and not (has_embedding and has_tokens):
        texts = pdf["text"].to_numpy()[todo].tolist()
        model_vectors, model_counts = encode()(texts)
        if not has_embedding:
            vectors[todo] = model_vectors
            finite = finite_rows(model_vectors)
            merge(np.where(finite, None, "non_finite_embedding").tolist(), todo)
        if not has_tokens:
            counts[todo] = model_counts
    ok = np.array([r is None for r in reasons], dtype=bool)
    codes = np.zeros((n, levels), dtype=np.int32)
    qerr = np.zeros((n, levels), dtype=np.float32)
    if ok.any():
        codes[ok], qerr[ok] = codebook.assign(vectors[ok])
    out: dict[str, object] = {"doc_id": pdf["doc_id"].to_numpy()}
    for k in range(levels):
        out[f"c{k + 1}"] = _masked(codes[:, k], ok)
    for k in range(levels):
        out[f"qerr{k + 1}"] = np.where(ok, qerr[:, k], np.nan).astype(np.float32)
    out["n_tokens"] = _masked(counts, ok)
    quality = (
        pd.to_numeric(pdf["quality"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if has_quality
        else quality_scores(pdf["text"]).to_numpy()
    )
    out["quality"] = np.where(ok, quality, np.nan)
    out[REASON] = reasons
    if emit_embedding:
        blobs = encode_f16(vectors)
        out[EMBEDDING_F16] = [b if keep else None for b, keep in zip(blobs, ok, strict=True)]
    for col in passthrough:
        out[col] = pdf[col].to_numpy()
    return pd.DataFrame(out)


def _masked(values: np.ndarray, ok: np.ndarray) -> pd.arrays.IntegerArray:
    """Nullable int32 column: ``values`` where ``ok``, null elsewhere."""
    return pd.arrays.IntegerArray(values.astype(np.int32), ~ok)


def make_annotate_fn(
    codebook: Codebook,
    model: ModelSettings,
    *,
    has_embedding: bool,
    has_tokens: bool,
    has_quality: bool,
    passthrough: Sequence[str] = (),
    emit_embedding: bool = False,
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """``mapInPandas`` function for the fused annotate pass (row-preserving).

    Input columns: ``doc_id, text, [reason], [embedding], [n_tokens], [quality],
    *passthrough``; output: :func:`annotate_schema`. Every input row comes out once, in
    order. The model is loaded lazily, only when some row must be embedded or counted.
    """
    cb = codebook  # frozen dataclass of small numpy arrays: rides in the closure
    loaded: list[Encode] = []

    def encoder() -> Encode:
        if not loaded:
            st = load_model(model.name, model.max_seq_length, model.device)

            def encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
                vectors = None if has_embedding else embed_texts(st, texts, model.batch_size)
                counts = None if has_tokens else count_tokens(st, texts)
                return vectors, counts  # type: ignore[return-value]  # only what is used

            loaded.append(encode)
        return loaded[0]

    def annotate_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        # the window only matters when the model embeds: given vectors stream batch by batch
        for pdf in regroup(batches, model.sort_window) if not has_embedding else batches:
            yield annotate_frame(
                pdf,
                cb,
                encoder,
                has_embedding=has_embedding,
                has_tokens=has_tokens,
                has_quality=has_quality,
                passthrough=passthrough,
                emit_embedding=emit_embedding,
            )
            _maybe_fail()  # after output was produced, so a failed attempt leaves partial work

    return annotate_batches
