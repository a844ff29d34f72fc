"""Tokenize once: model input ids (truncated) and whole-text token counts from one pass.

Executor side. Uses the Rust ``tokenizers`` library directly (``tokenizer.json``), which
is what sentence-transformers' fast tokenizer runs underneath, so the ids are the same.
A second, *training* tokenizer (``--tokenizer``) may count ``n_tokens`` in the tokens an
LM will be trained on; it is loaded offline from a ``tokenizer.json`` file or a folder.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hermes_spark.errors import InvalidConfigError

log = logging.getLogger(__name__)

_TOKENIZERS: dict[str, Any] = {}
_LAST_SPACE = re.compile(r"\s+\S*\Z")


def load_tokenizer(name_or_path: str) -> Any:
    """A cached ``tokenizers.Tokenizer`` from a ``tokenizer.json`` file or a folder holding
    one, or (offline) a hub name already in the local Hugging Face cache."""
    tok = _TOKENIZERS.get(name_or_path)
    if tok is not None:
        return tok
    from tokenizers import Tokenizer

    path = Path(name_or_path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        cached = _hub_cache_file(name_or_path)
        if cached is None:
            raise InvalidConfigError(
                f"tokenizer {name_or_path!r} is neither a tokenizer.json file, nor a folder "
                "holding one, nor a model in the local Hugging Face cache (nothing is downloaded)"
            )
        path = Path(cached)
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise InvalidConfigError(f"tokenizer {path} cannot be loaded: {exc}") from None
    tok.no_truncation()
    tok.no_padding()
    _TOKENIZERS[name_or_path] = tok
    log.info("loaded tokenizer %s", path)
    return tok


def _hub_cache_file(name: str) -> str | None:
    if os.path.isabs(name) or name.startswith("."):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "tokenizer.json")
    except Exception:  # not a valid repo id
        return None
    return found if isinstance(found, str) else None


@dataclass(frozen=True)
class Tokenized:
    """Model input of a list of texts: one int64 id array per text (special tokens
    included, at most ``max_seq_length``), and whole-text counts when asked for."""

    ids: list[np.ndarray]
    counts: np.ndarray | None

    @property
    def lengths(self) -> np.ndarray:
        """Model input length of each text."""
        return np.fromiter((len(i) for i in self.ids), dtype=np.int64, count=len(self.ids))


class TextTokenizer:
    """The embedding model's tokenizer, truncating to ``max_seq_length`` like
    sentence-transformers does (content tokens cut, then special tokens added)."""

    def __init__(self, tokenizer: Any, max_seq_length: int, clip_chars: int = 0):
        self.tok = tokenizer
        self.max_seq_length = int(max_seq_length)
        self.content_limit = self.max_seq_length - tokenizer.num_special_tokens_to_add(False)
        if self.content_limit < 1:
            raise InvalidConfigError(f"max_seq_length {max_seq_length} leaves no content tokens")
        #: when counts are not needed, texts longer than this are tokenized clipped first
        #: (and again whole if the clip could have changed the truncated input)
        self.clip_chars = int(clip_chars)

    def encode(self, texts: list[str], *, count: bool) -> Tokenized:
        """Tokenize ``texts`` once; ``count`` adds each whole text's token count
        (special tokens excluded), which forbids clipping."""
        clip = 0 if count else self.clip_chars
        inputs = [t[:clip] for t in texts] if clip else texts
        encs = self.tok.encode_batch(inputs, add_special_tokens=False)
        counts = (
            np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
            if count
            else None
        )
        if clip:
            redo = [
                i
                for i, (t, e) in enumerate(zip(texts, encs, strict=True))
                if len(t) > clip and not self._clip_was_harmless(inputs[i], e)
            ]
            if redo:
                for i, e in zip(
                    redo,
                    self.tok.encode_batch([texts[i] for i in redo], add_special_tokens=False),
                    strict=True,
                ):
                    encs[i] = e
        ids = []
        for e in encs:
            if len(e.ids) > self.content_limit:
                e.truncate(self.content_limit)
            ids.append(np.asarray(self.tok.post_process(e).ids, dtype=np.int64))
        return Tokenized(ids=ids, counts=counts)

    def _clip_was_harmless(self, clipped: str, enc: Any) -> bool:
        """True when the first ``content_limit`` tokens of the clipped text end before its
        last whitespace: pre-tokenizers split there, so the whole text starts the same."""
        if len(enc.ids) <= self.content_limit:
            return False
        match = _LAST_SPACE.search(clipped)
        boundary = match.start() if match else 0
        return bool(enc.offsets[self.content_limit - 1][1] <= boundary)


def count_with(tokenizer: Any, texts: list[str]) -> np.ndarray:
    """Whole-text token counts (no special tokens) in ``tokenizer``."""
    encs = tokenizer.encode_batch(texts, add_special_tokens=False)
    return np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
