"""Texts → unit vectors and token counts in one tokenizer pass, batched by a token budget.

Executor side. :class:`Encoder` splits the work in two steps so a caller can overlap
them: :meth:`Encoder.prepare` (CPU: tokenize once, count) and :meth:`Encoder.embed`
(the backend's device). On a GPU the annotate function prepares the next window on a
CPU thread while the device runs the current one (the Rust tokenizer and CUDA kernels
both release the GIL).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hermes_spark.embedding.backends import check_backend, load_backend
from hermes_spark.embedding.batching import pad_batch, padding_ratio, token_batches
from hermes_spark.embedding.models import CHARS_PER_TOKEN_CAP, resolve_model_path
from hermes_spark.embedding.settings import ModelSettings
from hermes_spark.embedding.tokenize import TextTokenizer, Tokenized, count_with, load_tokenizer

log = logging.getLogger(__name__)


@dataclass
class EncodeStats:
    """Running totals of one encoder (one Spark task when the caller resets them)."""

    docs: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    batches: int = 0
    tokenize_seconds: float = 0.0
    embed_seconds: float = 0.0

    @property
    def padding_ratio(self) -> float:
        """Padding tokens over real tokens."""
        return (self.padded_tokens - self.real_tokens) / max(self.real_tokens, 1)

    @property
    def tokenize_share(self) -> float:
        """Share of tokenize + embed time spent tokenizing."""
        total = self.tokenize_seconds + self.embed_seconds
        return self.tokenize_seconds / total if total else 0.0


@dataclass(frozen=True)
class Prepared:
    """CPU output for a list of texts: model input (when vectors are wanted) and the
    whole-text token counts (when counts are wanted)."""

    tokenized: Tokenized | None
    counts: np.ndarray | None
    seconds: float = field(default=0.0, compare=False)


class Encoder:
    """Tokenizer, optional training tokenizer and (lazily loaded) backend of one model."""

    def __init__(self, settings: ModelSettings):
        check_backend(settings.backend, settings.precision)
        self.settings = settings
        path = resolve_model_path(settings.name)
        self.text_tokenizer = TextTokenizer(
            load_tokenizer(path),
            settings.max_seq_length,
            clip_chars=settings.max_seq_length * CHARS_PER_TOKEN_CAP,
        )
        self.count_tokenizer = load_tokenizer(settings.tokenizer) if settings.tokenizer else None
        self._backend: Any = None
        self.stats = EncodeStats()

    @property
    def backend(self) -> Any:
        """The inference backend, loaded on first use (token counting never loads it)."""
        if self._backend is None:
            s = self.settings
            self._backend = load_backend(s.name, s.max_seq_length, s.device, s.backend, s.precision)
        return self._backend

    def prepare(self, texts: list[str], *, vectors: bool = True, counts: bool = True) -> Prepared:
        """Tokenize ``texts`` once: model input ids (if ``vectors``) and whole-text
        ``n_tokens`` (if ``counts``) in the training tokenizer or the model's own."""
        t0 = time.perf_counter()
        own_count = counts and self.count_tokenizer is None
        tokenized = (
            self.text_tokenizer.encode(texts, count=own_count) if vectors or own_count else None
        )
        n_tokens = None
        if counts:
            n_tokens = (
                tokenized.counts
                if own_count and tokenized is not None
                else count_with(self.count_tokenizer, texts)
            )
        if not vectors:
            tokenized = None
        seconds = time.perf_counter() - t0
        self.stats.tokenize_seconds += seconds
        return Prepared(tokenized=tokenized, counts=n_tokens, seconds=seconds)

    def _batches(self, tokenized: Tokenized) -> tuple[np.ndarray, list[np.ndarray]]:
        lengths = tokenized.lengths
        batches = token_batches(lengths, self.settings.token_budget)
        self.stats.docs += len(lengths)
        self.stats.real_tokens += int(lengths.sum())
        self.stats.padded_tokens += sum(int(lengths[b].max()) * len(b) for b in batches)
        self.stats.batches += len(batches)
        log.debug(
            "%d docs in %d batches, padding %.3f",
            len(lengths),
            len(batches),
            padding_ratio(lengths, batches),
        )
        return lengths, batches

    def embed(self, prepared: Prepared) -> np.ndarray:
        """Unit float32 vectors ``(n, dim)`` in input order."""
        assert prepared.tokenized is not None, "prepare(vectors=True) first"
        t0 = time.perf_counter()
        tokenized = prepared.tokenized
        _, batches = self._batches(tokenized)
        out: np.ndarray | None = None
        for rows in batches:
            ids, mask = pad_batch([tokenized.ids[i] for i in rows])
            vecs = self.backend.run(ids, mask)
            if out is None:
                out = np.empty((len(tokenized.ids), vecs.shape[1]), dtype=np.float32)
            out[rows] = vecs
        self.stats.embed_seconds += time.perf_counter() - t0
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def embed_tensor(self, prepared: Prepared) -> Any:
        """Like :meth:`embed` but a torch tensor left on the torch backend's device."""
        import torch

        assert prepared.tokenized is not None, "prepare(vectors=True) first"
        t0 = time.perf_counter()
        tokenized = prepared.tokenized
        _, batches = self._batches(tokenized)
        parts, order = [], []
        for rows in batches:
            ids, mask = pad_batch([tokenized.ids[i] for i in rows])
            parts.append(self.backend.run_tensor(ids, mask))
            order.append(rows)
        stacked = torch.cat(parts)
        index = torch.from_numpy(np.argsort(np.concatenate(order))).to(stacked.device)
        out = stacked.index_select(0, index)
        self.stats.embed_seconds += time.perf_counter() - t0
        return out

    def encode(
        self, texts: list[str], *, vectors: bool = True, counts: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(unit vectors or None, n_tokens int64 or None)`` for ``texts``."""
        prepared = self.prepare(texts, vectors=vectors, counts=counts)
        return (self.embed(prepared) if vectors else None), prepared.counts


_ENCODERS: dict[ModelSettings, Encoder] = {}


def get_encoder(settings: ModelSettings) -> Encoder:
    """One :class:`Encoder` per settings per Python worker."""
    enc = _ENCODERS.get(settings)
    if enc is None:
        enc = _ENCODERS[settings] = Encoder(settings)
    return enc
