"""Multi-phase schedules: the phases file and the repetition cap across phases.

A phases file lists phases, each with a share of the total budget, its own Stage-1
weights and Stage-2 rule, or weights frozen from an earlier plan (``freeze: PLAN.json``,
also spelled ``from_plan``)::

    phases:
      - {name: broad, share: 0.8, weights: unimax, stage2: coverage}
      - {name: anneal, share: 0.2, weights: unimax, stage2: "quality-top:0.3"}

:func:`load_phases` validates it on the driver before Spark starts. The cap holds per
document: a document's repeats summed over all phases never exceed :func:`doc_cap`
(:func:`capped_repeats` is the rule; :mod:`.schedule` applies it on executors), which
implies the per-bucket cap. :func:`phase_allocations` is the same cap at the bucket level
(each phase water-filled against what the earlier phases left of every bucket's
``max_epochs × tokens``). Driver-only, small arrays.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import yaml

from hermes_spark.errors import BudgetError, InvalidConfigError
from hermes_spark.sampling.allocate import water_fill
from hermes_spark.sampling.rules.registry import parse_rule

#: shares may miss 1 by this much (decimal shares such as 0.1 + 0.2 + 0.7)
SHARE_TOLERANCE = 1e-9
_WEIGHT_RULES = ("proportional", "uniform", "unimax")
_KEYS = {"name", "share", "weights", "stage2", "freeze", "from_plan"}
#: A phase name is a folder name of the export (``OUT/phase=NAME/``).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: The manifest column naming each row's phase.
PHASE_COL = "phase"
#: The ``kind`` of a schedule JSON (``hermes plan --phases --out``, the phased report).
SCHEDULE_KIND = "hermes-phase-plan"


@dataclass(frozen=True)
class Phase:
    """One phase: its share of the budget, Stage-1 weights and Stage-2 rule."""

    name: str
    share: float
    weights: str = "unimax"
    stage2: str = "coverage"
    #: an earlier plan (``hermes plan [--phases] --out``) whose shares become the weights
    freeze: str | None = None


def _fail(path: str, why: str) -> NoReturn:
    raise InvalidConfigError(f"phases file {path}: {why}")


def _check_weights(path: str, name: str, weights: str) -> None:
    """A known rule, ``temperature:τ`` or an existing weights file."""
    if weights in _WEIGHT_RULES:
        return
    if weights.startswith("target:"):
        _fail(path, f"phase {name!r}: target:PATH weights are not supported in a phases file")
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
            "unimax, temperature:τ) nor an existing weights file",
        )


def _phase(path: str, i: int, entry: Any) -> Phase:
    if not isinstance(entry, dict):
        _fail(path, f"phase {i + 1} must be a mapping with share, weights and stage2")
    unknown = sorted(set(map(str, entry)) - _KEYS)
    if unknown:
        _fail(path, f"phase {i + 1} has unknown key(s) {', '.join(unknown)}")
    name = str(entry.get("name", f"phase{i + 1}"))
    if not _NAME.match(name):
        _fail(path, f"phase name {name!r} must be letters, digits, '_', '.' or '-'")
    share = entry.get("share")
    if isinstance(share, bool) or not isinstance(share, (int, float)):
        _fail(path, f"phase {name!r} needs a numeric share, got {share!r}")
    if not (math.isfinite(share) and 0 < share <= 1):
        _fail(path, f"phase {name!r}: share must be in (0, 1], got {share!r}")
    freeze = entry.get("freeze", entry.get("from_plan"))
    if "freeze" in entry and "from_plan" in entry:
        _fail(path, f"phase {name!r}: give freeze or from_plan, not both")
    if freeze is not None and "weights" in entry:
        _fail(path, f"phase {name!r}: a frozen phase takes its weights from {freeze!r}")
    phase = Phase(
        name,
        float(share),
        str(entry.get("weights", "unimax")),
        str(entry.get("stage2", "coverage")),
        None if freeze is None else str(freeze),
    )
    if phase.freeze is None:
        _check_weights(path, name, phase.weights)
    elif not Path(phase.freeze).is_file():
        _fail(path, f"phase {name!r}: the plan to freeze, {phase.freeze!r}, does not exist")
    try:
        rule = parse_rule(phase.stage2)
    except InvalidConfigError as exc:
        _fail(path, f"phase {name!r}: {exc}")
    if rule.needs_target:
        _fail(path, f"phase {name!r}: {rule.name} is not supported in a phases file")
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


def doc_cap(max_epochs: float) -> int:
    """A document's repeats over all phases: at most ``max(1, ⌊max_epochs⌋)``."""
    return max(1, math.floor(float(max_epochs) + 1e-9))


def capped_repeats(repeats: np.ndarray, used: np.ndarray, max_epochs: float) -> np.ndarray:
    """A phase's repeats per document, cut to what the earlier phases left of
    :func:`doc_cap` (``used``: their repeats summed). The executors' column expression in
    :mod:`.schedule` is this rule."""
    room = doc_cap(max_epochs) - np.asarray(used, dtype=np.int64)
    return np.clip(np.minimum(np.asarray(repeats, dtype=np.int64), room), 0, None)
