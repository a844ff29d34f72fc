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
"""

from __future__ import annotations

import logging
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
    parent: Any, x: np.ndarray, z: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """Per stage ``(K_k, r)`` starting centroids in the new LST space (``z`` = the new
    LST of the sample ``x``; the old codebook codes ``x`` itself)."""
    old_codes, _ = parent.assign(x)
    residual = z.astype(np.float32).copy()
    books = []
    for k, size in enumerate(parent.levels):
        codes = old_codes[:, k]
        counts = np.bincount(codes, minlength=size)
        sums = np.zeros((size, z.shape[1]), dtype=np.float64)
        np.add.at(sums, codes, residual)
        start = residual[rng.choice(len(residual), size=size, replace=len(residual) < size)]
        present = counts > 0
        start[present] = (sums[present] / counts[present, None]).astype(np.float32)
        books.append(start.astype(np.float32))
        residual -= start[codes]
    return tuple(books)


def renumbered(model: RVQ, start: tuple[np.ndarray, ...]) -> tuple[RVQ, list[float]]:
    """``model`` with each stage's centroids renumbered to match ``start``; and per stage
    the share of codes whose number did not move."""
    books, kept = [], []
    for fitted, init in zip(model.codebooks, start, strict=True):
        order = match_codes(init, fitted)
        books.append(np.ascontiguousarray(fitted[order]))
        kept.append(float((order == np.arange(len(order))).mean()))
    return RVQ(tuple(books)), kept


def warm_start_record(parent: Any, kept: list[float], path: str | None) -> dict[str, Any]:
    """What the artifact records of its parent (``fit["parent"]``)."""
    return {
        "version": parent.version,
        "path": path,
        "levels": list(parent.levels),
        "codes_in_place": kept,
    }
