"""Quantizer options of ``hermes fit``: LST variant, rotation, refinement, balance, k-means.

Plain values, validated on construction (driver and executors alike); recorded in the
artifact's ``quantizer`` entry, which is part of the content hash, so two fits with
different options never share a ``codebook_version``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from hermes_spark.errors import InvalidConfigError
from hermes_spark.quantize.tree import STAGE_BOOKS

__all__ = ["KMEANS_KINDS", "LST_KINDS", "ROTATIONS", "STAGE_BOOKS", "QuantizerOptions"]

LST_KINDS = ("pca", "none")
ROTATIONS = ("none", "opq")
KMEANS_KINDS = ("euclidean", "spherical")


def _bad(key: str, why: str) -> None:
    raise InvalidConfigError(why, key=f"fit.{key}")


#: ``stage_books`` of a fit that sets none: per-parent books with the row floor won the
#: level-2 goal at 16·8 and tied shared books at 64·64 on real text (docs/quality.md).
DEFAULT_STAGE_BOOKS = "per_parent"


@dataclass(frozen=True)
class QuantizerOptions:
    """How the LST and the RVQ are fitted.

    Attributes:
        lst: ``pca`` (centre, project on ``lst_dim`` principal directions, whiten with
            ``whiten_power``, renormalise) or ``none`` (the unit-normalised embeddings as
            they are; ``lst_dim`` and ``whiten_power`` are then ignored).
        whiten_power: 0 = plain PCA projection (dimension reduction only), 0.5 = half
            whitening, 1 = full whitening (unit variance per kept direction).
        rotation: ``opq`` learns an orthogonal rotation of the LST output alternately with
            the codebooks (Procrustes step on the decoded vectors), ``none`` skips it.
        opq_iters: rotation/codebook alternations when ``rotation`` is ``opq``.
        refine_iters: rounds of joint least-squares re-estimation of all stages' centroids
            with the codes fixed (as faiss ``ResidualQuantizer`` refinement) after the greedy
            pass; encoding stays greedy, so a prefix is still a true coarse label.
        balance: strength in [0, 1] of the Sinkhorn balance used while training the
            stage-1 k-means (0 = plain Lloyd, 1 = equal cells during training): the
            assignment of each iteration is an entropic transport plan whose cell shares
            are ``(1 - balance) * natural + balance / K``, which pulls centroids into giant
            cells and out of tiny ones. Encoding stays plain nearest-centroid.
        kmeans: ``euclidean`` or ``spherical`` (stage-1 centroids are kept on the unit
            sphere, i.e. cosine k-means; residual stages stay Euclidean).
        stage_books: ``shared`` (one residual codebook per stage), ``per_parent`` (stages
            2.. get one codebook per parent cell, fitted fresh on that cell's rows: the
            hierarchical k-means) or ``refined`` (the shared codebook refined per parent).
            Encoding stays greedy, so prefixes are still true coarse labels; not combined
            with ``rotation=opq`` or ``refine_iters``. ``auto`` (the default): ``per_parent``, the
            measured default (docs/quality.md), or ``shared`` with ``rotation=opq`` or
            ``refine_iters``, which re-fit shared books. Recorded only when not
            ``shared`` (so shared fits keep the versions they had before the option).
        parent_min_rows: training rows per codeword a parent cell needs for a codebook
            of its own under ``per_parent`` / ``refined``; parents with fewer keep the
            shared codebook (0: any parent with a row gets one). Default 4: on real text
            at 64·64 per-parent books fitted on 2.6 rows per codeword over-fit
            (docs/quality.md). Recorded when non-zero with non-shared ``stage_books``
            only (shared fits ignore it).
    """

    lst: str = "pca"
    whiten_power: float = 0.5
    rotation: str = "none"
    opq_iters: int = 4
    refine_iters: int = 0
    balance: float = 0.0
    kmeans: str = "euclidean"
    stage_books: str = "auto"
    parent_min_rows: float = 4.0

    def __post_init__(self) -> None:
        if self.lst not in LST_KINDS:
            _bad("lst", f"{self.lst!r} is not one of {', '.join(LST_KINDS)}")
        if self.rotation not in ROTATIONS:
            _bad("rotation", f"{self.rotation!r} is not one of {', '.join(ROTATIONS)}")
        if self.kmeans not in KMEANS_KINDS:
            _bad("kmeans", f"{self.kmeans!r} is not one of {', '.join(KMEANS_KINDS)}")
        for key in ("whiten_power", "balance", "parent_min_rows"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                _bad(key, f"must be a number, got {value!r}")
            if not math.isfinite(value):
                _bad(key, f"must be finite, got {value!r}")
            object.__setattr__(self, key, float(value))
        if not 0.0 <= self.whiten_power <= 1.0:
            _bad("whiten_power", f"must lie in [0, 1], got {self.whiten_power}")
        if not 0.0 <= self.balance <= 1.0:
            _bad("balance", f"must lie in [0, 1], got {self.balance}")
        if self.parent_min_rows < 0.0:
            _bad("parent_min_rows", f"must be >= 0, got {self.parent_min_rows}")
        for key in ("opq_iters", "refine_iters"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                _bad(key, f"must be a non-negative integer, got {value!r}")
        if self.stage_books not in (*STAGE_BOOKS, "auto"):
            choices = ", ".join((*STAGE_BOOKS, "auto"))
            _bad("stage_books", f"{self.stage_books!r} is not one of {choices}")
        if self.books != "shared" and (self.rotation != "none" or self.refine_iters):
            _bad(
                "stage_books",
                f"{self.stage_books} codebooks cannot be combined with rotation=opq or "
                "refine_iters > 0 (both re-fit shared codebooks)",
            )

    @property
    def books(self) -> str:
        """The stage codebooks this fit uses: ``stage_books``, with ``auto`` resolved
        (:data:`DEFAULT_STAGE_BOOKS`, or ``shared`` with a rotation or refinement)."""
        if self.stage_books != "auto":
            return self.stage_books
        return "shared" if self.rotation != "none" or self.refine_iters else DEFAULT_STAGE_BOOKS

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> QuantizerOptions:
        """The options an artifact recorded (:meth:`params`): a missing ``stage_books`` is
        ``shared`` and a missing ``parent_min_rows`` is 0, as they were written."""
        known = {f.name for f in fields(QuantizerOptions)}
        recorded = {k: v for k, v in params.items() if k in known}
        recorded.setdefault("stage_books", "shared")
        recorded.setdefault("parent_min_rows", 0.0)
        return cls(**recorded)

    def params(self) -> dict[str, Any]:
        """JSON-able form recorded in the artifact (part of its content hash); the default
        ``stage_books`` is left out so that default fits hash as before it existed, and
        ``parent_min_rows`` when shared books ignore it or it is 0 (its behaviour before
        it existed)."""
        out = {f.name: getattr(self, f.name) for f in fields(QuantizerOptions)}  # not a subclass's
        out["stage_books"] = self.books
        if out["stage_books"] == "shared" or not out["parent_min_rows"]:
            del out["parent_min_rows"]
        if out["stage_books"] == "shared":
            del out["stage_books"]
        return out
