"""Deterministic per-document uniforms: the same value whatever the partitioning."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

_MASK = (1 << 53) - 1


def uniform(doc_id: Column | str, seed: int) -> Column:
    """``u = hash(doc_id, seed)`` in [0, 1): a pure function of the id and the seed.

    Uses Spark's xxhash64 (identical on every executor and Spark version), keeps 53 bits
    so the double is exact.
    """
    col = F.col(doc_id) if isinstance(doc_id, str) else doc_id
    h = F.xxhash64(col, F.lit(int(seed)).cast("long"))
    return (h.bitwiseAND(F.lit(_MASK))).cast("double") / float(1 << 53)
