"""Stage-1 weight sources: bucket keys, weight files, weighting rules, candidate mixtures.

Runs on the driver over the small per-bucket statistics table; no Spark here.

A bucket at level ``l`` is identified by its packed id (``bucket1 = c1``,
``bucket2 = c1*K2 + c2``, ``bucket3 = bucket2*K3 + c3``) and written as a key
``"c1"``, ``"c1.c2"`` or ``"c1.c2.c3"`` in weight files and reports.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from io import StringIO
from typing import Any

import numpy as np
import pandas as pd

from hermes_spark import io
from hermes_spark.errors import BudgetError, InvalidConfigError, InvalidInputError

logger = logging.getLogger(__name__)

RULES: tuple[str, ...] = ("proportional", "uniform", "temperature:<tau>", "unimax")
_MAX_NAMED = 20


def _check_levels(level: int, levels: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(int(k) for k in levels)
    if not sizes or any(k < 1 for k in sizes):
        raise InvalidConfigError(f"level sizes must be positive integers, got {list(levels)}")
    if not 1 <= level <= len(sizes):
        raise InvalidConfigError(f"level must be in 1..{len(sizes)}, got {level}")
    return sizes


def _named(items: Sequence[Any]) -> str:
    shown = ", ".join(repr(x) for x in items[:_MAX_NAMED])
    more = len(items) - _MAX_NAMED
    return shown + (f" and {more} more" if more > 0 else "")


def parse_bucket_key(key: str, level: int, levels: Sequence[int]) -> int:
    """Return the packed id of a written bucket key such as ``"12.3.7"``.

    Raises:
        BudgetError: the key is malformed, has the wrong depth for ``level`` or a code out
            of range.
    """
    sizes = _check_levels(level, levels)
    parts = str(key).strip().split(".")
    if len(parts) != level:
        raise BudgetError(
            f"bucket key {key!r} has {len(parts)} code(s), level {level} keys need {level} "
            f"(written {'.'.join(f'c{i + 1}' for i in range(level))})"
        )
    packed = 0
    for i, part in enumerate(parts):
        if not part.isascii() or not part.isdigit():
            raise BudgetError(f"bucket key {key!r}: code {part!r} is not a non-negative integer")
        code = int(part)
        if code >= sizes[i]:
            raise BudgetError(
                f"bucket key {key!r}: c{i + 1}={code} is out of range 0..{sizes[i] - 1}"
            )
        packed = packed * sizes[i] + code
    return packed


def format_bucket_key(bucket: int, level: int, levels: Sequence[int]) -> str:
    """Return the written key (``"c1"``, ``"c1.c2"``, ``"c1.c2.c3"``) of a packed bucket id."""
    sizes = _check_levels(level, levels)
    bucket = int(bucket)
    if not 0 <= bucket < math.prod(sizes[:level]):
        raise InvalidInputError(
            f"bucket id {bucket} is out of range for level {level} with sizes {list(sizes)}"
        )
    codes = []
    for k in reversed(sizes[:level]):
        bucket, code = divmod(bucket, k)
        codes.append(code)
    return ".".join(str(c) for c in reversed(codes))


def _checked_stats(stats: pd.DataFrame, level: int, levels: Sequence[int]) -> pd.Series:
    """Validate a ``bucket, tokens`` table; return tokens indexed by bucket, sorted."""
    sizes = _check_levels(level, levels)
    missing = {"bucket", "tokens"} - set(stats.columns)
    if missing:
        raise InvalidInputError(f"bucket statistics lack column(s) {sorted(missing)}")
    if stats.empty:
        raise BudgetError(f"there are no non-empty level-{level} buckets to weight")
    if not pd.api.types.is_integer_dtype(stats["bucket"].dtype) or stats["bucket"].isna().any():
        raise InvalidInputError("bucket statistics: column 'bucket' must hold integer ids")
    buckets = stats["bucket"].to_numpy(dtype=np.int64)
    try:
        tokens = stats["tokens"].to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError("bucket statistics: 'tokens' must be numeric") from exc
    if (buckets < 0).any() or (buckets >= math.prod(sizes[:level])).any():
        raise InvalidInputError(f"bucket statistics hold ids out of range for level {level}")
    if pd.Index(buckets).has_duplicates:
        raise InvalidInputError("bucket statistics list a bucket more than once")
    if not np.isfinite(tokens).all() or (tokens < 0).any():
        raise InvalidInputError("bucket statistics: 'tokens' must be finite and non-negative")
    out = pd.Series(tokens, index=pd.Index(buckets, name="bucket"))
    return out.sort_index()


def _rule_weights(rule: str, tokens: pd.Series) -> np.ndarray:
    """Unnormalised weights of a rule; raises InvalidConfigError for an unknown rule."""
    t: np.ndarray = tokens.to_numpy()

    if rule in ("uniform", "unimax"):
        return np.ones_like(t)
    if rule == "proportional":
        return t.copy()
    if rule == "temperature" or rule.startswith("temperature:"):
        raw = rule.partition(":")[2]
        try:
            tau = float(raw)
        except ValueError:
            tau = float("nan")
        if not (math.isfinite(tau) and tau > 0):
            raise InvalidConfigError(f"temperature:τ needs a finite τ > 0, got {raw!r}")
        return _powered(t, tau)
    raise InvalidConfigError(
        f"unknown weights rule {rule!r}; valid rules: {', '.join(RULES)}, "
        "or a path to a JSON or CSV weights file"
    )


def _powered(tokens: np.ndarray, tau: float) -> np.ndarray:
    """``tokens**tau`` scaled by a constant so that large powers cannot overflow."""
    out = np.zeros_like(tokens, dtype=np.float64)
    pos = tokens > 0
    if pos.any():
        logs = tau * np.log(tokens[pos])
        out[pos] = np.exp(logs - logs.max())
    return out


class _Pairs(list[tuple[str, Any]]):
    """A JSON object kept as its ordered ``(key, value)`` pairs, duplicates included."""


def _read_weights_file(path: str, storage: io.Storage | None) -> list[tuple[str, Any]]:
    """Read ``(key, weight)`` pairs from a JSON object or a CSV with key/bucket,weight
    (any URI of :mod:`hermes_spark.io`)."""
    try:
        text = io.read_text(path, storage=storage)
    except (OSError, UnicodeDecodeError, InvalidInputError) as exc:
        raise InvalidInputError(f"cannot read weights file {str(path)!r}: {exc}") from exc
    if path.lower().endswith(".json"):
        try:
            obj = json.loads(text, object_pairs_hook=_Pairs)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"weights file {str(path)!r} is not valid JSON: {exc}") from exc
        # DoReMi configs wrap the mapping as {"train_domain_weights": {...}, ...}.
        if isinstance(obj, _Pairs):
            wrapped = dict(obj).get("train_domain_weights")
            if isinstance(wrapped, _Pairs):
                obj = wrapped
        if not isinstance(obj, _Pairs) or any(isinstance(v, _Pairs | list) for _, v in obj):
            raise InvalidInputError(
                f'weights file {str(path)!r} must be a JSON object {{"<bucket key>": weight}}'
            )
        return [(str(k), v) for k, v in obj]
    rows = list(csv.DictReader(StringIO(text)))
    fields = {f.strip().lower(): f for f in (rows[0].keys() if rows else [])}
    key_col = fields.get("key", fields.get("bucket"))
    if key_col is None or "weight" not in fields:
        raise InvalidInputError(
            f"weights file {str(path)!r} must be a CSV with columns key (or bucket) and weight"
        )
    return [(str(r[key_col]).strip(), r[fields["weight"]]) for r in rows]


def _as_weight(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _file_weights(
    path: str, tokens: pd.Series, level: int, levels: Sequence[int], storage: io.Storage | None
) -> tuple[np.ndarray, list[str]]:
    """Weights from a file aligned on ``tokens.index``, plus the keys of unlisted buckets."""
    return _pair_weights(_read_weights_file(path, storage), path, tokens, level, levels)


def _pair_weights(
    pairs: list[tuple[str, Any]],
    path: str,
    tokens: pd.Series,
    level: int,
    levels: Sequence[int],
) -> tuple[np.ndarray, list[str]]:
    """``(key, weight)`` pairs aligned on ``tokens.index``, plus the unlisted keys."""
    if not pairs:
        raise BudgetError(f"weights file {str(path)!r} lists no bucket")
    malformed, unknown, bad, seen = [], [], [], {}
    for key, value in pairs:
        try:
            bucket = parse_bucket_key(key, level, levels)
        except BudgetError:
            malformed.append(key)
            continue
        if bucket not in tokens.index:
            unknown.append(key)
            continue
        w = _as_weight(value)
        if not (math.isfinite(w) and w >= 0):
            bad.append(f"{key}={value!r}")
        if bucket in seen:
            raise BudgetError(f"weights file {str(path)!r} lists bucket {key!r} twice")
        seen[bucket] = w
    if malformed:
        raise BudgetError(
            f"weights file {str(path)!r}: key(s) {_named(malformed)} are not level-{level} "
            f"bucket codes (written {'.'.join(f'c{i + 1}' for i in range(level))})"
        )
    if unknown:
        raise BudgetError(
            f"weights file {str(path)!r}: unknown key(s) {_named(unknown)}: not a non-empty "
            f"level-{level} bucket"
        )
    if bad:
        raise BudgetError(
            f"weights file {str(path)!r}: weights must be finite and >= 0, got {_named(bad)}"
        )
    weights = np.array([seen.get(b, 0.0) for b in tokens.index], dtype=np.float64)
    unlisted = [format_bucket_key(b, level, levels) for b in tokens.index if b not in seen]
    return weights, unlisted


def precheck_weights(
    spec: str,
    level: int,
    levels: Sequence[int] | None = None,
    *,
    storage: io.Storage | None = None,
) -> None:
    """What of ``--weights`` can be checked without statistics, before Spark starts
    (driver): a rule's name and τ; a file's readability, key syntax (and code ranges
    when ``levels`` are known), duplicate keys and weight values. Buckets the statistics
    do not hold are refused later, by :func:`resolve_stage1_weights`.

    Raises:
        InvalidConfigError: an unknown rule or a bad τ.
        InvalidInputError: an unreadable weights file.
        BudgetError: malformed, repeated or out-of-range keys, or a bad weight.
    """
    text = str(spec).strip()
    rule = text.lower()
    if rule.partition(":")[0] in ("target", "quadmix") or not text:
        return  # resolved from the target corpus / parameter file later
    path = os.path.expanduser(text) if io.scheme(text) == "" else text
    if rule.partition(":")[0] in ("proportional", "uniform", "temperature", "unimax"):
        _rule_weights(rule, pd.Series([1.0], index=[0]))
        return
    if not (path.lower().endswith((".json", ".csv")) or io.is_file(path, storage=storage)):
        _rule_weights(rule, pd.Series([1.0], index=[0]))  # an unknown rule: raises
    pairs = _read_weights_file(path, storage)
    if not pairs:
        raise BudgetError(f"weights file {str(path)!r} lists no bucket")
    sizes = tuple(levels) if levels else (2**31 - 1,) * level
    seen: set[str] = set()
    for key, value in pairs:
        parse_bucket_key(key, level, sizes)
        w = _as_weight(value)
        if not (math.isfinite(w) and w >= 0):
            raise BudgetError(
                f"weights file {str(path)!r}: weights must be finite and >= 0, got {key}={value!r}"
            )
        if key.strip() in seen:
            raise BudgetError(f"weights file {str(path)!r} lists bucket {key!r} twice")
        seen.add(key.strip())


def resolve_stage1_weights(
    spec: str | Mapping[str, float],
    stats: pd.DataFrame,
    level: int,
    levels: Sequence[int],
    max_epochs: float,
    *,
    storage: io.Storage | None = None,
) -> tuple[pd.Series, dict[str, Any]]:
    """Resolve ``--weights`` into Stage-1 weights ``W_b`` (sum 1) over non-empty buckets.

    Args:
        spec: a JSON/CSV weights file path, or a rule: ``proportional``, ``uniform``,
            ``temperature:τ`` or ``unimax`` (uniform; the ``E``-epoch cap is applied by
            :func:`hermes_spark.sampling.allocate.stage1_targets`).
        stats: one row per non-empty level-``level`` bucket with ``bucket`` (packed id)
            and ``tokens``.
        level: the Stage-1 level.
        levels: the level sizes ``(K1, K2, K3)``.
        max_epochs: ``E``, recorded in the info for ``unimax``.

    Returns:
        The weights indexed by bucket (named ``weight``) and an info dict with ``source``,
        ``rule`` (``None`` for a file) and ``unlisted_buckets`` (keys a file did not list;
        they get weight 0).

    Raises:
        BudgetError: unknown or malformed keys, negative/NaN/inf weights, zero total.
        InvalidConfigError: unknown rule or bad τ / ``max_epochs``.
        InvalidInputError: unreadable weights file or bad statistics table.
    """
    if not (max_epochs > 0):
        raise InvalidConfigError(f"max_epochs must be > 0, got {max_epochs!r}")
    tokens = _checked_stats(stats, level, levels)
    unlisted: list[str] = []
    if isinstance(spec, Mapping):
        pairs = [(str(k), v) for k, v in spec.items()]
        raw, unlisted = _pair_weights(pairs, "the given weights", tokens, level, levels)
        return _normalised(raw, {"source": "mapping", "rule": None}, unlisted, tokens, level)
    text = str(spec).strip()
    rule = text.lower()
    path = os.path.expanduser(text) if io.scheme(text) == "" else text
    is_rule = rule.partition(":")[0] in ("proportional", "uniform", "temperature", "unimax")
    named = path.lower().endswith((".json", ".csv"))
    if not is_rule and (named or io.is_file(path, storage=storage)):
        raw, unlisted = _file_weights(path, tokens, level, levels, storage)
        info: dict[str, Any] = {"source": str(path), "rule": None}
    else:
        raw = _rule_weights(rule, tokens)
        info = {"source": rule, "rule": rule.split(":", 1)[0]}
        if rule == "unimax":
            info["max_epochs"] = float(max_epochs)
    return _normalised(raw, info, unlisted, tokens, level)


def _normalised(
    raw: np.ndarray, info: dict[str, Any], unlisted: list[str], tokens: pd.Series, level: int
) -> tuple[pd.Series, dict[str, Any]]:
    total = float(raw.sum())
    if not (math.isfinite(total) and total > 0):
        raise BudgetError(f"weights from {info['source']!r} sum to {total}; nothing to sample")
    info["unlisted_buckets"] = unlisted
    if unlisted:
        logger.warning(
            "%d level-%d bucket(s) not listed in %s get weight 0: %s",
            len(unlisted),
            level,
            info["source"],
            _named(unlisted),
        )
    weights = pd.Series(raw / total, index=tokens.index, name="weight")
    logger.info("resolved Stage-1 weights from %s over %d buckets", info["source"], len(weights))
    return weights, info


def dirichlet_mixtures(
    stats: pd.DataFrame,
    level: int,
    levels: Sequence[int],
    n: int,
    *,
    temperature: float = 1.0,
    concentration: float = 1.0,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Draw ``n`` candidate Stage-1 mixtures for RegMix/CLIMB-style mixture search.

    Each mixture is drawn from ``Dirichlet(concentration * m * prior)`` where ``m`` is the
    number of buckets and ``prior ∝ tokens**temperature``: the mean is the prior, and
    ``concentration`` is the mean Dirichlet parameter per bucket (1 with a uniform prior
    is the flat Dirichlet; larger values stay closer to the prior). Buckets with zero
    prior get 0. Deterministic for a ``seed``; every dict (keyed by written bucket key,
    all non-empty buckets listed) is usable as a JSON weights file.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise InvalidConfigError(f"number of mixtures must be an integer >= 1, got {n!r}")
    for name, value in (("temperature", temperature), ("concentration", concentration)):
        if not (math.isfinite(value) and value > 0):
            raise InvalidConfigError(f"{name} must be finite and > 0, got {value!r}")
    tokens = _checked_stats(stats, level, levels)
    prior = _powered(tokens.to_numpy(), temperature)
    if prior.sum() <= 0:
        raise BudgetError("all buckets have zero tokens; no prior to draw mixtures around")
    prior /= prior.sum()
    keys = [format_bucket_key(b, level, levels) for b in tokens.index]
    pos = prior > 0
    alpha = concentration * len(prior) * prior[pos]
    draws = np.random.default_rng(seed).dirichlet(alpha, size=int(n))
    mixtures = []
    for row in draws:
        full = np.zeros_like(prior)
        full[pos] = row / row.sum()
        mixtures.append({k: float(w) for k, w in zip(keys, full, strict=True)})
    return mixtures


def read_weight_pairs(path: str, *, storage: io.Storage | None = None) -> list[tuple[str, Any]]:
    """The ``(key, weight)`` pairs of a JSON or CSV weights file as written (driver;
    DoReMi's ``train_domain_weights`` wrapper unwrapped), not yet checked against buckets."""
    return _read_weights_file(path, storage)
