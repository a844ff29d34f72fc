"""Score a codebook and its baselines on held-out vectors (numpy; what ``evaluate`` runs).

Driver side, no Spark: :func:`score_codebook` takes the fitting-side and held-out vectors
(model space, unit-normalised), encodes the held-out rows with the codebook, fits the
baselines on the fitting-side rows in the codebook's LST space and scores every method
per level with the functions of :mod:`hermes_spark.quantize.metrics`.

Spaces: every partition metric (within-cell MSE, silhouette, Davies-Bouldin,
Calinski-Harabasz) is computed twice, on the embedding model's vectors (``spaces.model``,
the space users, target rules and dedup work in; the goals are judged there) and in the
codebook's LST space (``spaces.lst``). ``relative_mse`` is the quantiser's own
reconstruction error and lives in the LST space only (that is where the codewords are).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hermes_spark.errors import InvalidInputError
from hermes_spark.quantize import baselines as bl
from hermes_spark.quantize import metrics as m
from hermes_spark.quantize.codebook import Codebook
from hermes_spark.quantize.lst import as_float32_matrix

__all__ = ["BASELINES", "SPACES", "method_row", "partition_metrics", "score_codebook"]

log = logging.getLogger(__name__)

#: Baselines ``score_codebook`` can fit (all by default).
BASELINES = ("kmeans", "bisecting_kmeans", "faiss_rq")
_GEOMETRY = ("silhouette_cosine", "davies_bouldin", "calinski_harabasz")
#: The spaces partition metrics are reported in; goals are judged in the first.
SPACES = ("model", "lst")


def partition_metrics(x: np.ndarray, cells: np.ndarray, geometry: bool = True) -> dict[str, Any]:
    """Within-cell MSE and (with ``geometry``) the three cluster-validity scores of ``cells``
    on the rows ``x``, all in the space of ``x``."""
    out: dict[str, Any] = {"cell_mse": m.cell_mse(x, cells)}
    if geometry:
        out["silhouette_cosine"] = m.silhouette_cosine(x, cells)
        out["davies_bouldin"] = m.davies_bouldin(x, cells)
        out["calinski_harabasz"] = m.calinski_harabasz(x, cells)
    return out


def method_row(
    name: str,
    level: int,
    k: int,
    cells: np.ndarray,
    z: np.ndarray,
    reconstruction: np.ndarray,
    x: np.ndarray,
    labels: Mapping[str, np.ndarray],
    *,
    fit_seconds: float | None = None,
    dead_codes: int | None = None,
    geometry: bool = True,
) -> dict[str, Any]:
    """Every metric of one method at one level on the held-out rows.

    ``z`` are the rows in the LST space, ``x`` the same rows in the model's space;
    ``spaces`` holds :func:`partition_metrics` for both, and the top-level geometric
    scores repeat the model-space ones.
    """
    usage = m.code_usage(cells, k)
    row: dict[str, Any] = {
        "method": name,
        "level": level,
        "k": int(k),
        "relative_mse": m.relative_mse(z, reconstruction),
        **usage,
        "dead_codes": usage["dead"] if dead_codes is None else int(dead_codes),
        "collision_rate": m.collision_rate(cells),
        "fit_seconds": fit_seconds,
    }
    spaces = {
        "model": partition_metrics(x, cells, geometry),
        "lst": partition_metrics(z, cells, geometry),
    }
    row["spaces"] = spaces
    row["cell_mse_model"] = spaces["model"]["cell_mse"]
    if geometry:
        row.update({key: spaces["model"][key] for key in _GEOMETRY})
    row["labels"] = {col: m.label_scores(truth, cells) for col, truth in labels.items()}
    return row


def _baseline_rows(
    fit: bl.BaselineFit,
    z: np.ndarray,
    x: np.ndarray,
    labels: Mapping[str, np.ndarray],
    sizes: Sequence[int],
    geometry: bool = True,
) -> list[dict[str, Any]]:
    rows = []
    for i, level in enumerate(fit.levels):
        dead = None
        if fit.name == "faiss_rq":
            dead = int(sizes[i]) - len(np.unique(fit.cells[i] % int(sizes[i])))
        rows.append(
            method_row(
                fit.name if fit.name == "faiss_rq" else fit.name.rsplit("_", 1)[0],
                level,
                fit.k[i],
                fit.cells[i],
                z,
                fit.reconstruction[i],
                x,
                labels,
                fit_seconds=fit.fit_seconds,
                dead_codes=dead,
                geometry=geometry,
            )
        )
    return rows


def score_codebook(
    codebook: Codebook,
    fit_x: np.ndarray | None,
    eval_x: np.ndarray,
    labels: Mapping[str, np.ndarray] | None = None,
    *,
    seed: int = 0,
    baselines: Sequence[str] = BASELINES,
    max_baseline_k: int | None = None,
    geometry: bool = True,
) -> dict[str, Any]:
    """Per-level metrics of ``codebook`` and of the baselines on ``eval_x``.

    ``fit_x`` (fitting-side sample, model space) trains the baselines; without it only the
    codebook is scored. Flat and bisecting k-means run at ``K1`` and ``K1*K2`` cells
    (capped at ``max_baseline_k``, default ``len(fit_x) // 2``; the cap is reported as
    ``k``); faiss's ``ResidualQuantizer`` uses the codebook's level sizes. ``geometry``
    False skips the O(n^2) silhouette and the other validity scores. Returns
    ``{"methods": [row, ...], "baseline_fit_rows": n}`` with one row per (method, level).
    """
    labels = dict(labels or {})
    x = as_float32_matrix(eval_x, "evaluation vectors", codebook.dim)
    if x.shape[0] < 2:
        raise InvalidInputError(f"evaluation needs at least 2 vectors, got {x.shape[0]}")
    for col, truth in labels.items():
        if len(truth) != x.shape[0]:
            raise InvalidInputError(f"label column {col!r} has {len(truth)} values for {len(x)}")
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise InvalidInputError(
            f"unknown baseline(s) {', '.join(unknown)}; known: {', '.join(BASELINES)}"
        )
    z = codebook.lst.transform(x)
    codes, _ = codebook.rvq.encode(z)
    sizes = codebook.levels
    rows: list[dict[str, Any]] = []
    for level in range(1, len(sizes) + 1):
        cells = m.prefix_cells(codes, sizes, level)
        recon = codebook.rvq.decode(codes, n_levels=level)
        dead = int(sizes[level - 1]) - len(np.unique(codes[:, level - 1]))
        rows.append(
            method_row(
                "hermes",
                level,
                math.prod(sizes[:level]),
                cells,
                z,
                recon,
                x,
                labels,
                fit_seconds=codebook.fit.get("fit_seconds"),
                dead_codes=dead,
                geometry=geometry,
            )
        )
    n_fit = 0
    if fit_x is not None and baselines:
        fz = codebook.lst.transform(as_float32_matrix(fit_x, "fitting vectors", codebook.dim))
        n_fit = fz.shape[0]
        cap = max_baseline_k or max(n_fit // 2, 1)
        targets = [math.prod(sizes[:1])] + ([math.prod(sizes[:2])] if len(sizes) > 1 else [])
        for level, k in enumerate(targets, start=1):
            if "kmeans" in baselines:
                fitted = bl.flat_kmeans(fz, z, min(k, cap), level, seed)
                rows += _baseline_rows(fitted, z, x, labels, sizes, geometry)
            if "bisecting_kmeans" in baselines:
                fitted = bl.bisecting_kmeans(fz, z, min(k, cap), level, seed)
                rows += _baseline_rows(fitted, z, x, labels, sizes, geometry)
        if "faiss_rq" in baselines and n_fit >= max(sizes):
            rq_fit = bl.faiss_residual(fz, z, sizes, seed)
            if rq_fit is not None:
                rows += _baseline_rows(rq_fit, z, x, labels, sizes, geometry)

    return {"methods": rows, "baseline_fit_rows": n_fit, "eval_rows": int(x.shape[0])}
