"""``fit --init-from ARTIFACT``: warm-start a re-fit from an earlier codebook and keep
its code numbers, so ``c1 = 12`` means the same region across snapshots (driver, numpy).

The old centroids live in the old LST's space, which a re-fit replaces. They are carried
into the new space through the fitting sample: the old codebook codes each sample row,
and a new stage-``k`` starting centroid ``j`` is the mean, in the new LST space, of the
residuals (after the earlier starting centroids) of the rows the old codebook gave
``c_k = j`` (a code with no row keeps the k-means++ draw of the new fit). After the
usual Lloyd iterations each stage is renumbered by a Hungarian assignment between its
starting and its fitted centroids (:func:`match_codes`), so a code keeps its number
wherever its centroid still matches.

With one codebook per parent cell (``fit.stage_books`` ``per_parent`` / ``refined``) the
starting centroid of code ``j`` under cell ``p`` is the mean residual of the rows the old
codebook gave prefix ``p`` and code ``j``, and each cell's book is renumbered on its own,
under the renumbered prefix (a shared parent artifact warm-starts a per-parent fit and
the other way round).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from hermes_spark.errors import InvalidConfigError
from hermes_spark.quantize.crosswalk_math import match_codes
from hermes_spark.quantize.rvq import RVQ

log = logging.getLogger(__name__)

__all__ = ["check_parent", "renumbered", "starting_codebooks", "warm_start_record"]


def check_parent(parent: Any, model: dict[str, Any], levels: tuple[int, ...]) -> None:
    """:class:`InvalidConfigError` unless ``parent`` (a Codebook) is of the same model,
    dimension and level sizes as the fit about to run."""
    if parent.model.get("name") != model.get("name") or parent.dim != model.get("dim"):
        raise InvalidConfigError(
            f"{parent.version} was fitted for model {parent.model.get('name')!r} "
            f"(dim {parent.dim}), this fit embeds with {model.get('name')!r} (dim "
            f"{model.get('dim')}): warm starts need the same model",
            key="fit.init_from",
        )
    if tuple(parent.levels) != tuple(levels):
        raise InvalidConfigError(
            f"{parent.version} has levels {list(parent.levels)}, this fit "
            f"{list(levels)}: give {{fit.levels}} {','.join(map(str, parent.levels))}",
            key="fit.init_from",
        )


def starting_codebooks(
    parent: Any,
    x: np.ndarray,
    z: np.ndarray,
    rng: np.random.Generator,
    depths: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, ...]:
    """Per stage the starting centroids in the new LST space (``z`` = the new LST of the
    sample ``x``; the old codebook codes ``x`` itself): ``(K_k, r)`` for a shared stage,
    ``(P_k * K_k, r)`` for a stage with one book per parent cell (``depths[k]`` > 0, the
    prefix of that many earlier stages), whatever the old codebook's own structure.

    A start for (parent cell, code) with no sample row there is the code's mean over all
    rows, else a k-means++-like draw of a row."""
    old_codes, _ = parent.assign(x)
    sizes = tuple(int(k) for k in parent.levels)
    depths = depths or (0,) * len(sizes)
    residual = z.astype(np.float32).copy()
    books = []
    for k, size in enumerate(sizes):
        codes = old_codes[:, k].astype(np.int64)
        cells = _prefix(old_codes, sizes, depths[k]) * size + codes
        n_cells = math.prod(sizes[: depths[k]]) * size
        start = np.tile(_means(residual, codes, size, rng), (n_cells // size, 1))
        if depths[k]:
            counts = np.bincount(cells, minlength=n_cells)
            sums = np.zeros((n_cells, z.shape[1]), dtype=np.float64)
            np.add.at(sums, cells, residual)
            present = counts > 0
            start[present] = (sums[present] / counts[present, None]).astype(np.float32)
        books.append(start)
        residual -= start[cells]
    return tuple(books)


def _prefix(codes: np.ndarray, sizes: tuple[int, ...], depth: int) -> np.ndarray:
    """Packed prefix of the first ``depth`` code columns (0 for depth 0)."""
    out = np.zeros(codes.shape[0], dtype=np.int64)
    for j in range(depth):
        out = out * sizes[j] + codes[:, j]
    return out


def _means(
    residual: np.ndarray, codes: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """``(size, r)``: each code's mean residual, a random row for a code without rows."""
    counts = np.bincount(codes, minlength=size)
    sums = np.zeros((size, residual.shape[1]), dtype=np.float64)
    np.add.at(sums, codes, residual)
    start = residual[rng.choice(len(residual), size=size, replace=len(residual) < size)]
    present = counts > 0
    start[present] = (sums[present] / counts[present, None]).astype(np.float32)
    return start.astype(np.float32)


def renumbered(model: RVQ, start: tuple[np.ndarray, ...]) -> tuple[RVQ, list[float]]:
    """``model`` with each stage's centroids renumbered to match ``start``; and per stage
    the share of codes whose number did not move.

    A stage with one book per parent cell is renumbered block by block; the blocks of
    later stages follow the renumbered prefixes they are keyed by, so every book stays
    under the prefix its rows are coded with."""
    sizes, depths = model.levels, model.parent_depths
    books, kept = [], []
    # fitted prefix of each renumbered prefix, per number of stages
    prefix_of = [np.zeros(1, dtype=np.int64)]
    for k, (fitted, init) in enumerate(zip(model.codebooks, start, strict=True)):
        size = sizes[k]
        blocks = prefix_of[depths[k]] if depths[k] else np.zeros(1, dtype=np.int64)
        out = np.empty_like(fitted)
        orders = []
        for new_p, old_p in enumerate(blocks):
            fit_block = fitted[old_p * size : (old_p + 1) * size]
            order = match_codes(init[new_p * size : (new_p + 1) * size], fit_block)
            out[new_p * size : (new_p + 1) * size] = fit_block[order]
            orders.append(order)
        books.append(np.ascontiguousarray(out))
        moved = np.stack(orders)  # (blocks, K): fitted code of each kept number
        kept.append(float((moved == np.arange(size)).mean()))
        # the next depth's prefixes: renumbered prefix P'·K + j' -> fitted P·K + order[j']
        per_parent = moved if depths[k] else np.tile(moved, (len(prefix_of[k]), 1))
        prefix_of.append((prefix_of[k][:, None] * size + per_parent).reshape(-1))
    return RVQ(tuple(books), depths), kept


def warm_start_record(parent: Any, kept: list[float], path: str | None) -> dict[str, Any]:
    """What the artifact records of its parent (``fit["parent"]``)."""
    return {
        "version": parent.version,
        "path": path,
        "levels": list(parent.levels),
        "codes_in_place": kept,
    }
