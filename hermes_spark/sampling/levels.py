"""Level sizes and packed bucket ids (``bucket_k = bucket_{k-1}·K_k + c_k``); pure pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hermes_spark.errors import InvalidConfigError, InvalidInputError


def check_levels(weights_level: int, stage2_level: int | None, n_levels: int) -> tuple[int, int]:
    """Validate ``1 <= w < s <= n_levels`` (``s`` defaults to ``w + 1``)."""
    w = int(weights_level)
    s = w + 1 if stage2_level is None else int(stage2_level)
    if not 1 <= w < n_levels:
        raise InvalidConfigError(
            f"must be in 1..{n_levels - 1} (the table has {n_levels} code levels and Stage 2 "
            f"needs a finer one), got {w}",
            key="sample.weights_level",
        )
    if not w < s <= n_levels:
        raise InvalidConfigError(
            f"must be in {w + 1}..{n_levels}, got {s}", key="sample.stage2_level"
        )
    return w, s


def pack_codes(frame: pd.DataFrame, level: int, sizes: tuple[int, ...]) -> np.ndarray:
    """Packed bucket ids of ``c1..c_level`` columns (``bucket_k = bucket_{k-1}·K_k + c_k``)."""
    packed: np.ndarray = frame["c1"].to_numpy(dtype=np.int64).copy()

    for k in range(2, level + 1):
        packed = packed * sizes[k - 1] + frame[f"c{k}"].to_numpy(dtype=np.int64)
    return packed


def infer_sizes(
    by_level: dict[int, pd.DataFrame], given: tuple[int, ...] | None = None
) -> tuple[int, ...]:
    """Level sizes ``K_k`` consistent with bucket rows (``bucket``, ``c1..ck`` per level).

    ``K_k = (bucket_k - c_k) / bucket_{k-1}`` wherever ``bucket_{k-1} > 0``; where that is
    never the case the packing does not depend on ``K_k`` and ``max(c_k) + 1`` is used (so
    is it for ``K_1``). Given sizes (from the codebook artifact) are checked instead.

    Raises:
        InvalidInputError: the rows are not packed consistently with any / the given sizes.
    """
    sizes: list[int] = []
    for k in sorted(by_level):
        frame = by_level[k]
        codes = frame[f"c{k}"].to_numpy(dtype=np.int64)
        if given is not None:
            if len(given) < k:
                raise InvalidInputError(f"the codebook has {len(given)} levels, the data {k}+")
            size = int(given[k - 1])
        elif k == 1 or frame.empty:
            size = int(codes.max(initial=0)) + 1
        else:
            prev = pack_codes(frame, k - 1, tuple(sizes))
            pos = prev > 0
            ratios = (
                np.unique((frame["bucket"].to_numpy(dtype=np.int64)[pos] - codes[pos]) // prev[pos])
                if pos.any()
                else np.array([], dtype=np.int64)
            )
            size = int(ratios[0]) if len(ratios) == 1 else int(codes.max(initial=0)) + 1
        sizes.append(size)
        if (codes < 0).any() or (codes >= size).any():
            raise InvalidInputError(f"codes c{k} lie outside 0..{size - 1}")
        if (pack_codes(frame, k, tuple(sizes)) != frame["bucket"].to_numpy(dtype=np.int64)).any():
            raise InvalidInputError(
                f"level-{k} bucket ids are not packed as bucket{k} = bucket{k - 1}·K{k} + c{k} "
                f"with level sizes {sizes}" + (" (from the codebook)" if given else "")
            )
    return tuple(sizes)
