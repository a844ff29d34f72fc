"""Learned Semantic Transform (LST): PCA projection with whitening and L2 renormalisation.

The LST maps L2-normalised sentence embeddings into a space where every retained principal
direction carries unit variance, so the residual quantiser spends its codes evenly instead of
on the few dominant directions of the embedding model.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hermes_spark.errors import ArtifactError, InvalidConfigError, InvalidInputError

__all__ = ["LST", "as_float32_matrix"]

log = logging.getLogger(__name__)

_NORM_FLOOR = 1e-12


def as_float32_matrix(x: np.ndarray, name: str = "x", dim: int | None = None) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 ``(n, d)`` matrix, checking shape and finiteness.

    Raises :class:`InvalidInputError` when ``x`` is not 2-D, has the wrong width, or holds
    NaN/inf values.
    """
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise InvalidInputError(f"{name} must be a 2-D (n, d) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise InvalidInputError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if dim is not None and arr.shape[1] != dim:
        raise InvalidInputError(f"{name} has dimension {arr.shape[1]}, expected {dim}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.size and not np.isfinite(arr).all():
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    return arr


@dataclass(frozen=True, eq=False)
class LST:
    """Centre, project onto the top ``r`` principal directions, whiten, rotate, renormalise.

    Attributes:
        mean: ``(d,)`` float32 mean of the fitting sample.
        components: ``(d, r)`` float32 principal directions (columns), by decreasing variance.
        scale: ``(r,)`` float32 whitening factors ``(eigval + eps) ** (-power / 2)``.
        renormalize: L2-normalise the output rows when true.
        power: whitening strength: 1 = full PCA whitening (unit variance per direction),
            0 = plain PCA projection. The default 0.5 ("half whitening") evens out the
            dominant directions without blowing trailing, noisy ones up to unit variance:
            on AG News with all-MiniLM-L6-v2 (600 docs, 4 first-level codes, 64 dims) the
            first-level purity vs the 4 sections was 0.60-0.74 at 0.5 and 0.33-0.36 at 1.0.
        kind: ``pca_whiten`` (fitted) or ``none`` (identity: see :meth:`identity`).
        rotation: optional ``(r, r)`` orthogonal matrix applied after whitening (learned
            jointly with the codebooks, OPQ style); it preserves norms, so it commutes with
            the renormalisation.
    """

    mean: np.ndarray
    components: np.ndarray
    scale: np.ndarray
    renormalize: bool = True
    eps: float = 1e-6
    power: float = 0.5
    kind: str = "pca_whiten"
    rotation: np.ndarray | None = None

    def __post_init__(self) -> None:
        mean = np.ascontiguousarray(self.mean, dtype=np.float32)
        components = np.ascontiguousarray(self.components, dtype=np.float32)
        scale = np.ascontiguousarray(self.scale, dtype=np.float32)
        if mean.ndim != 1 or components.ndim != 2 or scale.ndim != 1:
            raise ArtifactError(
                "LST arrays have wrong ranks: mean must be 1-D, components 2-D, scale 1-D"
            )
        d, r = components.shape
        if mean.shape[0] != d or scale.shape[0] != r or r < 1 or r > d:
            raise ArtifactError(
                f"LST arrays disagree: mean {mean.shape}, components {components.shape}, "
                f"scale {scale.shape}"
            )
        for name, arr in (("mean", mean), ("components", components), ("scale", scale)):
            if not np.isfinite(arr).all():
                raise ArtifactError(f"LST {name} contains NaN or infinite values")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "components", components)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "renormalize", bool(self.renormalize))
        object.__setattr__(self, "eps", float(self.eps))
        object.__setattr__(self, "power", float(self.power))
        if self.kind not in ("pca_whiten", "none"):
            raise ArtifactError(f"LST kind {self.kind!r} is not pca_whiten or none")
        if self.rotation is not None:
            rot = np.ascontiguousarray(self.rotation, dtype=np.float32)
            if rot.shape != (r, r) or not np.isfinite(rot).all():
                raise ArtifactError(f"LST rotation must be a finite ({r}, {r}) matrix")
            if np.abs(rot.T.astype(np.float64) @ rot - np.eye(r)).max() > 1e-3:
                raise ArtifactError("LST rotation is not orthogonal")
            object.__setattr__(self, "rotation", rot)

    @classmethod
    def identity(cls, dim: int) -> LST:
        """The ``none`` variant: rows pass unchanged apart from L2 renormalisation."""
        return cls(
            mean=np.zeros(dim, np.float32),
            components=np.eye(dim, dtype=np.float32),
            scale=np.ones(dim, np.float32),
            renormalize=True,
            power=0.0,
            kind="none",
        )

    def with_rotation(self, rotation: np.ndarray | None) -> LST:
        """A copy of this transform followed by ``rotation`` (``None`` removes it)."""
        return dataclasses.replace(self, rotation=rotation)

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        out_dim: int | None = None,
        eps: float = 1e-6,
        renormalize: bool = True,
        power: float = 0.5,
    ) -> LST:
        """Fit the transform on a sample ``x`` of shape ``(n, d)``.

        ``out_dim`` defaults to ``d``; it must lie in ``[1, d]``. Eigen-decomposition runs in
        float64 and component signs are fixed (largest-magnitude entry positive) so the result
        is deterministic.
        """
        arr = as_float32_matrix(x, "LST training sample")
        n, d = arr.shape
        if n < 2:
            raise InvalidConfigError(f"LST needs at least 2 training rows, got {n}")
        r = d if out_dim is None else int(out_dim)
        if not 1 <= r <= d:
            raise InvalidConfigError(f"LST out_dim must be between 1 and {d}, got {out_dim}")
        if not (np.isfinite(eps) and eps > 0):
            raise InvalidConfigError(f"LST eps must be a positive number, got {eps}")
        if not (np.isfinite(power) and 0.0 <= power <= 1.0):
            raise InvalidConfigError(f"LST whitening power must be in [0, 1], got {power}")
        if r > n - 1:
            log.warning(
                "LST out_dim=%d exceeds the rank of %d training rows; trailing directions "
                "carry no variance and will be amplified by whitening",
                r,
                n,
            )

        x64 = arr.astype(np.float64)
        mean = x64.mean(axis=0)
        centred = x64 - mean
        cov = centred.T @ centred / (n - 1)
        eigval, eigvec = np.linalg.eigh(cov)
        order = np.argsort(eigval)[::-1][:r]
        eigval = np.clip(eigval[order], 0.0, None)
        eigvec = eigvec[:, order]
        pivots = np.argmax(np.abs(eigvec), axis=0)
        signs = np.sign(eigvec[pivots, np.arange(r)])
        signs[signs == 0] = 1.0
        eigvec = eigvec * signs

        total = float(np.trace(cov))
        kept = float(eigval.sum() / total) if total > 0 else 1.0
        log.info("fitted LST %d -> %d dims on %d rows, variance kept %.4f", d, r, n, kept)
        return cls(
            mean=mean.astype(np.float32),
            components=eigvec.astype(np.float32),
            scale=np.power(eigval + eps, -power / 2.0).astype(np.float32),
            renormalize=renormalize,
            eps=eps,
            power=power,
        )

    @property
    def in_dim(self) -> int:
        """Input (embedding) dimension ``d``."""
        return int(self.components.shape[0])

    @property
    def out_dim(self) -> int:
        """Output dimension ``r``."""
        return int(self.components.shape[1])

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Map ``(n, d)`` rows to float32 ``(n, r)``: centre, project, whiten, renormalise."""
        arr = as_float32_matrix(x, "embeddings", self.in_dim)
        out = (arr - self.mean) @ self.components
        out *= self.scale
        if self.rotation is not None:
            out = out @ self.rotation
        if self.renormalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            np.maximum(norms, _NORM_FLOOR, out=norms)
            out /= norms
        return np.ascontiguousarray(out, dtype=np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays to persist: ``mean``, ``components``, ``scale`` (and ``rotation``)."""
        arrays = {"mean": self.mean, "components": self.components, "scale": self.scale}
        if self.rotation is not None:
            arrays["rotation"] = self.rotation
        return arrays

    @classmethod
    def from_arrays(
        cls,
        arrays: Mapping[str, np.ndarray],
        renormalize: bool,
        eps: float = 1e-6,
        power: float = 0.5,
        kind: str = "pca_whiten",
    ) -> LST:
        """Rebuild from :meth:`to_arrays` output; :class:`ArtifactError` if any is missing."""
        missing = [k for k in ("mean", "components", "scale") if k not in arrays]
        if missing:
            raise ArtifactError(f"LST arrays missing: {', '.join(missing)}")
        return cls(
            mean=arrays["mean"],
            components=arrays["components"],
            scale=arrays["scale"],
            renormalize=renormalize,
            eps=eps,
            power=power,
            kind=kind,
            rotation=arrays.get("rotation"),
        )

    def params(self) -> dict[str, Any]:
        """JSON-able description for metadata."""
        params: dict[str, Any] = {
            "kind": self.kind,
            "in_dim": self.in_dim,
            "out_dim": self.out_dim,
            "eps": self.eps,
            "renormalize": self.renormalize,
            "whiten_power": self.power,
        }
        if self.rotation is not None:  # absent otherwise: older artifacts keep their hash
            params["rotation"] = "opq"
        return params
