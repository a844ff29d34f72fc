"""Vector helpers shared by the driver and executors: normalising, finiteness, float16 bytes.

Plain numpy, no Spark, no torch: safe to import on executors and in unit tests.
``embedding_f16`` values (the optional ``<CODES>_embeddings`` table) are little-endian
IEEE float16 bytes of the unit-normalised model-space vector, ``dim * 2`` bytes a row.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from hermes_spark.errors import InvalidInputError

#: Norms below this are treated as zero when normalising (the vector stays zero).
NORM_FLOOR = 1e-12
#: dtype of the bytes in ``embedding_f16``: little-endian float16 on every platform.
F16 = np.dtype("<f2")


def unit_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm as float32 (zero rows stay zero)."""
    arr = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    unit: np.ndarray = arr / np.maximum(norms, NORM_FLOOR)
    return unit


def finite_rows(x: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``x`` without NaN or ±inf."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise InvalidInputError(f"expected a 2-D (n, d) array, got shape {arr.shape}")
    mask: np.ndarray = np.isfinite(arr).all(axis=1)
    return mask


def encode_f16(vectors: np.ndarray) -> list[bytes]:
    """One ``bytes`` per row: the row as little-endian float16 (``dim * 2`` bytes).

    Values beyond the float16 range (±65504) become ±inf, so pass normalised vectors.
    """
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise InvalidInputError(f"encode_f16 needs a 2-D (n, d) array, got shape {arr.shape}")
    half = np.ascontiguousarray(arr, dtype=F16)
    return [row.tobytes() for row in half]


def decode_f16(values: bytes | Iterable[bytes] | pd.Series, dim: int) -> np.ndarray:
    """float32 ``(n, dim)`` from ``embedding_f16`` values (one ``bytes`` gives ``(1, dim)``).

    Raises:
        InvalidInputError: a value is null or not ``dim * 2`` bytes long.
    """
    if isinstance(values, bytes | bytearray | memoryview):
        values = [bytes(values)]
    items = list(values)
    out = np.empty((len(items), dim), dtype=np.float32)
    width = dim * F16.itemsize
    for i, item in enumerate(items):
        if item is None or (isinstance(item, float) and np.isnan(item)):
            raise InvalidInputError(f"embedding_f16 row {i} is null")
        if len(item) != width:
            raise InvalidInputError(
                f"embedding_f16 row {i} has {len(item)} bytes, expected {width} (dim {dim})"
            )
        out[i] = np.frombuffer(item, dtype=F16)
    return out
