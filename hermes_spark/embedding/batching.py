"""Batches formed by a token budget over length-sorted documents (plain numpy).

Executor side. Documents of one sort window are ordered by model-input length (longest
first) and cut into batches whose padded size ``rows × longest`` stays within the token
budget, so short documents travel in large batches and padding stays small.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def token_batches(
    lengths: np.ndarray, token_budget: int, max_padding: float = 0.1, min_rows: int = 8
) -> list[np.ndarray]:
    """Index arrays of batches covering every document once, longest documents first.

    A batch grows while ``rows × longest <= token_budget`` (at least one row) and, once
    it holds ``min_rows`` documents, while its padding stays within ``max_padding`` of
    its real tokens; so batches are as large as the budget allows where lengths are
    dense (a sort window of web text) and padding stays bounded where they are not.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")
    sorted_len = lengths[order]
    batches: list[np.ndarray] = []
    start, n = 0, len(order)
    while start < n:
        longest = max(int(sorted_len[start]), 1)
        stop = min(n, start + max(1, token_budget // longest))
        if stop - start > min_rows:
            # padding after taking rows start..j: longest*(j-start+1) - cumsum
            real = np.cumsum(sorted_len[start:stop])
            rows = np.arange(1, stop - start + 1)
            pad = longest * rows - real
            fits = (pad <= max_padding * real) | (rows <= min_rows)
            stop = start + int(np.argmin(fits)) if not fits.all() else stop
        batches.append(order[start:stop])
        start = stop
    return batches


def padding_ratio(lengths: np.ndarray, batches: Sequence[np.ndarray]) -> float:
    """Padding tokens over real tokens when each batch pads to its longest document."""
    lengths = np.asarray(lengths, dtype=np.int64)
    real = int(lengths.sum())
    padded = sum(int(lengths[b].max()) * len(b) for b in batches if len(b))
    return (padded - real) / real if real else 0.0


def pad_batch(ids: Sequence[np.ndarray], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)`` int64 ``(rows, longest)`` right-padded with ``pad_id``."""
    width = max(len(i) for i in ids)
    out = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for r, row in enumerate(ids):
        out[r, : len(row)] = row
        mask[r, : len(row)] = 1
    return out, mask
