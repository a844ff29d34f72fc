"""Mixture weights in the formats of common mixture tools (DoReMi, RegMix, Megatron-LM).

Keys are the written bucket keys (``"c1"``, ``"c1.c2"``, ...) or any domain names.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence

from hermes_spark.errors import BudgetError, InvalidInputError


def _checked(weights: Mapping[str, float]) -> dict[str, float]:
    if not weights:
        raise BudgetError("no weights to export")
    out = {}
    for key, value in weights.items():
        try:
            w = float(value)
        except (TypeError, ValueError):
            w = float("nan")
        if not (math.isfinite(w) and w >= 0):
            raise BudgetError(f"weight of {key!r} must be finite and >= 0, got {value!r}")
        out[str(key)] = w
    if sum(out.values()) <= 0:
        raise BudgetError("weights sum to 0")
    return out


def doremi_json(
    weights: Mapping[str, float], eval_weights: Mapping[str, float] | None = None
) -> str:
    """DoReMi config JSON: ``{"train_domain_weights": {...}, "eval_domain_weights": {...}}``.

    ``eval_weights`` defaults to ``weights``. The result is also accepted by ``--weights``.
    """
    train = _checked(weights)
    evals = train if eval_weights is None else _checked(eval_weights)
    return json.dumps({"train_domain_weights": train, "eval_domain_weights": evals}, indent=2)


def regmix_csv(mixtures: Mapping[str, float] | Sequence[Mapping[str, float]]) -> str:
    """RegMix mixture CSV: ``index,<domain>,...`` then one row per mixture.

    Takes one mixture or several (e.g. from
    :func:`hermes_spark.sampling.weights.dirichlet_mixtures`); a domain missing from a
    mixture is written as 0.
    """
    many = [mixtures] if isinstance(mixtures, Mapping) else list(mixtures)
    rows = [_checked(m) for m in many]
    if not rows:
        raise BudgetError("no mixtures to export")
    domains = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["index", *domains])
    for i, row in enumerate(rows):
        writer.writerow([i, *(repr(row.get(d, 0.0)) for d in domains)])
    return buf.getvalue()


def megatron_blend(weights: Mapping[str, float], paths: Mapping[str, str]) -> str:
    """Megatron-LM ``--data-path`` blend ``"w1 prefix1 w2 prefix2 ..."`` (one line).

    Zero-weight domains are left out; Megatron normalises the weights itself.

    Raises:
        InvalidInputError: a weighted domain has no path, or a path holds whitespace.
    """
    checked = _checked(weights)
    parts = []
    for key, w in checked.items():
        if w == 0:
            continue
        path = paths.get(key)
        if not path:
            raise InvalidInputError(f"no data path given for domain {key!r}")
        if any(ch.isspace() for ch in path):
            raise InvalidInputError(f"Megatron data path {path!r} contains whitespace")
        parts.append(f"{w!r} {path}")
    return " ".join(parts) + "\n"
