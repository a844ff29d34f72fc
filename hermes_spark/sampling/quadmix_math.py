"""QuaDMix-style sampling function (Stage-2 rule ``quadmix``): pure numpy, no Spark.

A document of merged quality percentile ``q`` (in ``[0, 1)`` within its Stage-2 child)
in Stage-1 bucket ``b`` gets ``r = min(E, λ_b · σ(k_b · (q - t_b)))`` expected repeats:
``t_b`` (threshold) and ``k_b`` (steepness) come from a parameter file, the scale ``λ_b``
is solved so that the bucket's expected tokens equal its Stage-1 target. The realized
repeats are ``floor(r) + [u < r - floor(r)]`` with ``u = hash(doc_id, seed)``: a pure
function of the document, the parameters and the seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hermes_spark import io
from hermes_spark.errors import InvalidInputError

DEFAULT_THRESHOLD = 0.5
DEFAULT_STEEPNESS = 10.0
PARAMS_KIND = "hermes-quadmix-params"


@dataclass(frozen=True)
class QuadmixParams:
    """Threshold and steepness per Stage-1 bucket key, with a default for the rest."""

    default: tuple[float, float] = (DEFAULT_THRESHOLD, DEFAULT_STEEPNESS)
    buckets: tuple[tuple[str, float, float], ...] = ()

    def of(self, key: str) -> tuple[float, float]:
        """``(threshold, steepness)`` of a bucket key."""
        for k, t, s in self.buckets:
            if k == key:
                return t, s
        return self.default

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the parameter file)."""
        t, s = self.default
        return {
            "kind": PARAMS_KIND,
            "default": {"threshold": t, "steepness": s},
            "buckets": {k: {"threshold": t, "steepness": s} for k, t, s in self.buckets},
        }


def _pair(obj: Any, where: str) -> tuple[float, float]:
    if not isinstance(obj, Mapping):
        raise InvalidInputError(f"{where} must be an object with threshold and steepness")
    try:
        t = float(obj.get("threshold", DEFAULT_THRESHOLD))
        s = float(obj.get("steepness", DEFAULT_STEEPNESS))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{where}: threshold and steepness must be numbers") from exc
    if not (math.isfinite(t) and math.isfinite(s) and s >= 0):
        raise InvalidInputError(f"{where}: need a finite threshold and a steepness >= 0")
    return t, s


def params_from_dict(doc: Mapping[str, Any], where: str = "quadmix parameters") -> QuadmixParams:
    """Parse the parameter file's JSON object (see :meth:`QuadmixParams.to_dict`)."""
    if not isinstance(doc, Mapping):
        raise InvalidInputError(f"{where} must be a JSON object")
    default = _pair(doc.get("default", {}), f"{where} default")
    buckets = doc.get("buckets", {})
    if not isinstance(buckets, Mapping):
        raise InvalidInputError(f"{where}: 'buckets' must map bucket keys to parameters")
    rows = tuple((str(k), *_pair(v, f"{where} bucket {k!r}")) for k, v in sorted(buckets.items()))
    return QuadmixParams(default, rows)


def load_params(path: str | None, *, storage: io.Storage | None = None) -> QuadmixParams:
    """The parameters of ``quadmix:PATH`` (defaults for plain ``quadmix``; driver)."""
    if not path:
        return QuadmixParams()
    try:
        doc = json.loads(io.read_text(path, storage=storage))
    except (OSError, InvalidInputError) as exc:
        raise InvalidInputError(f"cannot read quadmix parameters {path!r}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"quadmix parameters {path!r} are not JSON: {exc}") from exc
    return params_from_dict(doc, f"quadmix parameters {path!r}")


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    z = np.asarray(z, dtype=np.float64)
    out: np.ndarray = np.where(
        z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z)))
    )
    return out


def expected_repeats(
    q: np.ndarray, *, threshold: float, steepness: float, scale: float, max_epochs: float
) -> np.ndarray:
    """``min(E, λ·σ(k·(q - t)))`` (``scale = inf``: every document ``E`` times)."""
    if math.isinf(scale):
        return np.full(np.shape(q), float(max_epochs))
    return np.minimum(max_epochs, scale * sigmoid(steepness * (np.asarray(q) - threshold)))


def realized_repeats(r: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``floor(r) + [u < frac(r)]``: integer repeats with expectation ``r`` over ``u``."""
    r = np.asarray(r, dtype=np.float64)
    base = np.floor(r)
    repeats: np.ndarray = (base + (np.asarray(u) < r - base)).astype(np.int64)
    return repeats


def solve_scale(
    q: np.ndarray,
    tokens: np.ndarray,
    *,
    threshold: float,
    steepness: float,
    max_epochs: float,
    target: float,
    rel_tol: float = 1e-12,
) -> float:
    """The scale ``λ`` whose expected tokens ``Σ t·min(E, λσ(k(q-t)))`` equal ``target``.

    ``q``/``tokens`` may be a histogram (bin qualities and token sums). Bisection on a
    continuous, nondecreasing function of ``λ``; ``inf`` when ``target`` is ``E ×`` the
    supply or more (every document ``E`` times), 0 for a target of 0.

    Raises:
        InvalidInputError: negative tokens or target, or ``E <= 0``.
    """
    t = np.asarray(tokens, dtype=np.float64)
    if (t < 0).any() or target < 0 or not max_epochs > 0:
        raise InvalidInputError("solve_scale needs tokens >= 0, target >= 0 and E > 0")
    supply = float(t.sum())
    if target <= 0 or supply <= 0:
        return 0.0
    if target >= max_epochs * supply * (1 - rel_tol):
        return math.inf
    sig = sigmoid(steepness * (np.asarray(q, dtype=np.float64) - threshold))

    def f(lam: float) -> float:
        return float((t * np.minimum(max_epochs, lam * sig)).sum())

    lo, hi = 0.0, max(1.0, target / max(float((t * sig).sum()), 1e-300))
    while f(hi) < target:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= rel_tol * hi:
            break
    return hi


def candidate_params(
    keys: Sequence[str], n: int, *, seed: int = 0, steepness_max: float = 40.0
) -> list[dict[str, Any]]:
    """``n`` random parameter sets (threshold ~ U(0, 1), steepness ~ U(0, max) per bucket)
    for a RegMix-style search; each is a parameter file's JSON object."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(n)):
        t = rng.uniform(0.0, 1.0, size=len(keys))
        s = rng.uniform(0.0, steepness_max, size=len(keys))
        out.append(
            QuadmixParams(
                (DEFAULT_THRESHOLD, DEFAULT_STEEPNESS),
                tuple((k, float(a), float(b)) for k, a, b in zip(keys, t, s, strict=True)),
            ).to_dict()
        )
    return out
