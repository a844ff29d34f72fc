"""The C4 sample the CPU embedding benchmarks time (shared corpus next to the checkout)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "c4_en_1k.parquet"


def load_texts(n: int) -> list[str]:
    """``n`` texts of C4 (repeated if needed)."""
    texts = pq.read_table(SHARED, columns=["text"])["text"].to_pylist()
    while len(texts) < n:
        texts = texts + texts
    return texts[:n]
