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


def annotate_schema(levels: int, passthrough: Sequence[T.StructField]) -> T.StructType:
    """Output of :func:`make_annotate_fn`: ids, codes, residual errors, tokens, quality."""
    fields = [T.StructField("doc_id", T.StringType())]
    fields += [T.StructField(f"c{k + 1}", T.IntegerType()) for k in range(levels)]
    fields += [T.StructField(f"qerr{k + 1}", T.FloatType()) for k in range(levels)]
    fields += [
        T.StructField("n_tokens", T.IntegerType()),
        T.StructField("quality", T.DoubleType(), nullable=True),
    ]
    return T.StructType(fields + list(passthrough))


def make_annotate_fn(
    codebook: Codebook,
    model: ModelSettings,
    *,
    has_embedding: bool,
    has_tokens: bool,
    has_quality: bool,
    passthrough: Sequence[str] = (),
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """``mapInPandas`` function for the fused annotate pass.

    Input columns: ``doc_id, text, [embedding], [n_tokens], [quality], *passthrough``.
    The model is loaded only when vectors or token counts must be computed.
    """
    cb = codebook  # frozen dataclass of small numpy arrays: rides in the closure
    levels = len(codebook.levels)
    need_model = not (has_embedding and has_tokens)

    def annotate_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        st = load_model(model.name, model.max_seq_length, model.device) if need_model else None
        # the window only matters when the model embeds: given vectors stream batch by batch
        for pdf in regroup(batches, model.sort_window) if not has_embedding else batches:
            texts = pdf["text"].tolist()
            if has_embedding:
                vectors = np.asarray(np.stack(pdf["embedding"].to_numpy()), dtype=np.float32)
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                vectors = vectors / np.maximum(norms, 1e-12)
            else:
                vectors = embed_texts(st, texts, model.batch_size)
            codes, qerr = cb.assign(vectors)
            out = {"doc_id": pdf["doc_id"]}
            for k in range(levels):
                out[f"c{k + 1}"] = codes[:, k].astype(np.int32)
            for k in range(levels):
                out[f"qerr{k + 1}"] = qerr[:, k].astype(np.float32)
            out["n_tokens"] = (
                pdf["n_tokens"].to_numpy(dtype=np.int32) if has_tokens else count_tokens(st, texts)
            )
            out["quality"] = (
                pdf["quality"].astype("float64") if has_quality else quality_scores(pdf["text"])
            )
            for col in passthrough:
                out[col] = pdf[col]
            yield pd.DataFrame(out)
            _maybe_fail()  # after output was produced, so a failed attempt leaves partial work

    return annotate_batches
