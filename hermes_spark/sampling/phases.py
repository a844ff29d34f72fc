"""Multi-phase schedules (issue 20), first part: the phases file and the cross-phase cap.

A phases file lists phases, each with a share of the total budget, its own Stage-1
weights and Stage-2 rule::

    phases:
      - {name: broad, share: 0.8, weights: unimax, stage2: coverage}
      - {name: anneal, share: 0.2, weights: unimax, stage2: "quality-top:0.3"}

:func:`load_phases` validates it on the driver before Spark starts. :func:`phase_allocations`
is the repetition cap across phases: each phase is water-filled against what the earlier
phases left of every bucket's ``max_epochs × tokens``, so a bucket's tokens over all
phases never exceed ``max_epochs ×`` its supply. Driver-only, small arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hermes_spark.errors import BudgetError, InvalidConfigError
from hermes_spark.sampling.allocate import parse_stage2_rule, water_fill

#: shares may miss 1 by this much (decimal shares such as 0.1 + 0.2 + 0.7)
SHARE_TOLERANCE = 1e-9
_WEIGHT_RULES = ("proportional", "uniform", "unimax")


@dataclass(frozen=True)
class Phase:
    """One phase: its share of the budget, Stage-1 weights and Stage-2 rule."""

    name: str
    share: float
    weights: str = "unimax"
    stage2: str = "coverage"


def _fail(path: str, why: str) -> None:
    raise InvalidConfigError(f"phases file {path}: {why}")


def _check_weights(path: str, name: str, weights: str) -> None:
    """A known rule, ``temperature:τ``, ``target:PATH`` or an existing weights file."""
    if weights in _WEIGHT_RULES or weights.startswith("target:"):
        return
    if weights.startswith("temperature:"):
        raw = weights.partition(":")[2]
        try:
            tau = float(raw)
        except ValueError:
            tau = float("nan")
        if not (math.isfinite(tau) and tau > 0):
            _fail(path, f"phase {name!r}: temperature:τ needs a finite τ > 0, got {raw!r}")
        return
    if not Path(weights).is_file():
        _fail(
            path,
            f"phase {name!r}: weights {weights!r} is neither a rule (proportional, uniform, "
            "unimax, temperature:τ, target:PATH) nor an existing weights file",
        )


def _phase(path: str, i: int, entry: Any) -> Phase:
    if not isinstance(entry, dict):
        _fail(path, f"phase {i + 1} must be a mapping with share, weights and stage2")
    unknown = sorted(set(entry) - {"name", "share", "weights", "stage2"})
    if unknown:
        _fail(path, f"phase {i + 1} has unknown key(s) {', '.join(map(str, unknown))}")
    name = str(entry.get("name", f"phase{i + 1}"))
    share = entry.get("share")
    if isinstance(share, bool) or not isinstance(share, (int, float)):
        _fail(path, f"phase {name!r} needs a numeric share, got {share!r}")
    if not (math.isfinite(share) and 0 < share <= 1):
        _fail(path, f"phase {name!r}: share must be in (0, 1], got {share!r}")
    phase = Phase(
        name,
        float(share),
        str(entry.get("weights", "unimax")),
        str(entry.get("stage2", "coverage")),
    )
    _check_weights(path, name, phase.weights)
    try:
        parse_stage2_rule(phase.stage2)
    except InvalidConfigError as exc:
        _fail(path, f"phase {name!r}: {exc}")
    return phase


def parse_phases(data: Any, path: str = "<phases>") -> list[Phase]:
    """The phases of a parsed phases file; raises InvalidConfigError in one paragraph."""
    entries = data.get("phases") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        _fail(path, "needs a non-empty list under 'phases:'")
    phases = [_phase(path, i, e) for i, e in enumerate(entries)]
    names = [p.name for p in phases]
    if len(set(names)) != len(names):
        _fail(path, f"phase names repeat: {', '.join(names)}")
    total = math.fsum(p.share for p in phases)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        _fail(path, f"the shares sum to {total:g}, not 1 ({', '.join(names)})")
    return phases


def load_phases(path: str | Path) -> list[Phase]:
    """Read and validate a phases YAML file (driver, before any Spark work)."""
    p = Path(path)
    if not p.is_file():
        _fail(str(path), "does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        _fail(str(path), f"is not valid YAML ({exc})")
    return parse_phases(data, str(path))


def phase_budgets(total_tokens: float, phases: Sequence[Phase]) -> list[float]:
    """Each phase's budget: its share of ``total_tokens``."""
    return [p.share * float(total_tokens) for p in phases]


def phase_allocations(
    tokens: np.ndarray,
    weights: Sequence[np.ndarray],
    budgets: Sequence[float],
    max_epochs: float,
) -> tuple[list[np.ndarray], list[float]]:
    """Per phase, tokens allocated to each bucket, under one cap over all phases.

    Phase ``k`` is water-filled (in proportion to ``weights[k]``) against the remaining
    cap ``max_epochs × tokens − Σ_{j<k} alloc_j``; returns the allocations and each
    phase's shortfall. Driver, one small array per phase.

    Raises:
        BudgetError: mismatched lengths, negative tokens, a non-positive ``max_epochs``.
    """
    tokens = np.asarray(tokens, dtype=np.float64)
    if len(weights) != len(budgets):
        raise BudgetError(f"{len(weights)} weight vectors for {len(budgets)} phase budgets")
    if not (math.isfinite(max_epochs) and max_epochs > 0):
        raise BudgetError(f"max_epochs must be positive, got {max_epochs}")
    if not np.isfinite(tokens).all() or (tokens < 0).any():
        raise BudgetError("bucket tokens must be finite and >= 0")
    remaining = max_epochs * tokens
    allocs, shortfalls = [], []
    for w, budget in zip(weights, budgets, strict=True):
        alloc, short = water_fill(remaining, np.asarray(w, dtype=np.float64), float(budget))
        alloc = np.minimum(alloc, remaining)  # float noise never exceeds the cap
        remaining = np.maximum(remaining - alloc, 0.0)
        allocs.append(alloc)
        shortfalls.append(float(short))
    return allocs, shortfalls
