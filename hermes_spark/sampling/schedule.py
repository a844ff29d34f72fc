"""Multi-phase schedules on Spark: one plan and one manifest part per phase.

:func:`plan_phases` plans the phases in order, each against what the earlier ones left:
documents whose repeats already reached :func:`~.phases.doc_cap` are out of the codes a
phase is planned and selected from, and each phase's repeats are cut to the rest of the
cap (``least(repeats, cap - used)``, executors), so a document's repeats over all phases
never exceed the cap, nor a bucket's tokens ``max_epochs ×`` its supply. Each phase has
its share of the total budget, its own Stage-1 weights (or weights frozen from an
earlier plan) and its Stage-2 rule; the result is a :class:`PhasedSchedule`: per phase
its :class:`SamplePlan`, target vs realized shares and mixture report, the overlap
between phases, and the manifest (the MANIFEST columns plus ``phase``).

The driver holds one row per bucket per phase; the documents stay on executors (each
phase's manifest part and the running per-document repeats are persisted there).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F

from hermes_spark import io
from hermes_spark.config import SampleConfig
from hermes_spark.errors import InvalidConfigError, InvalidInputError
from hermes_spark.io import jsonable
from hermes_spark.object_stores import storage_of
from hermes_spark.sampling.phases import (
    PHASE_COL,
    SCHEDULE_KIND,
    Phase,
    doc_cap,
    phase_budgets,
)
from hermes_spark.sampling.plan import PLAN_KIND, SamplePlan
from hermes_spark.sampling.planner import plan_mixture, resolve_budget
from hermes_spark.sampling.report import build_report
from hermes_spark.sampling.rules.registry import parse_rule
from hermes_spark.sampling.select import realized_by_child, sample
from hermes_spark.stats import clean_codes, codes_version, metadata_levels

log = logging.getLogger(__name__)

SCHEDULE_FORMAT = 1
_USED = "_used_repeats"


@dataclass(frozen=True)
class PhaseResult:
    """One planned and selected phase."""

    phase: Phase
    plan: SamplePlan
    target_tokens: float
    realized_tokens: float
    #: tokens the phase's selection lost to the per-document cap (earlier phases' repeats)
    capped_tokens: float
    target_shares: dict[str, float]
    realized_shares: dict[str, float]
    report: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """The phase's line of the schedule JSON (without its plan and report)."""
        return {
            "name": self.phase.name,
            "share": self.phase.share,
            "weights": self.phase.weights if self.phase.freeze is None else "frozen",
            "freeze": self.phase.freeze,
            "stage2": self.phase.stage2,
            "target_tokens": self.target_tokens,
            "realized_tokens": self.realized_tokens,
            "capped_tokens": self.capped_tokens,
            "target_shares": self.target_shares,
            "realized_shares": self.realized_shares,
        }


@dataclass(frozen=True)
class PhasedSchedule:
    """Plans, reports and the manifest of a multi-phase schedule (driver-side record)."""

    codebook_version: str
    levels: tuple[int, ...]
    settings: dict[str, Any]
    phases: list[PhaseResult]
    overlap: list[dict[str, Any]]
    manifest: DataFrame | None = field(default=None, repr=False, compare=False)
    parts: list[DataFrame] = field(default_factory=list, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The schedule JSON: settings, per phase its summary, plan and report, overlap.

        Top-level ``settings`` and ``levels`` name the buckets as a mixture report does."""
        return {
            "kind": SCHEDULE_KIND,
            "format": SCHEDULE_FORMAT,
            "codebook_version": self.codebook_version,
            "levels": list(self.levels),
            "settings": self.settings,
            "phases": [
                {**r.summary(), "plan": json.loads(r.plan.to_json()), "report": r.report}
                for r in self.phases
            ],
            "overlap": self.overlap,
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON."""
        return json.dumps(jsonable(self.to_dict()), indent=1, allow_nan=False)

    def save(self, path: str, *, storage: io.Storage | None = None) -> None:
        """Write the schedule JSON to any URI (driver)."""
        io.write_text(str(path), self.to_json(), storage=storage)

    def release(self) -> None:
        """Unpersist the phases' manifest parts (after the manifest is written)."""
        for part in self.parts:
            part.unpersist()


def frozen_weights(
    path: str, phase: str, weights_level: int, *, storage: io.Storage | None = None
) -> dict[str, float]:
    """The weights of a frozen phase: the realized shares of the phase of that name in a
    schedule JSON (``hermes plan --phases --out``), else the target shares of a plan JSON
    (``hermes plan --out``). Driver.

    Raises:
        InvalidInputError: unreadable file, no such phase, or another Stage-1 level.
    """
    try:
        doc = json.loads(io.read_text(str(path), storage=storage))
    except (OSError, ValueError, InvalidInputError) as exc:
        raise InvalidInputError(f"cannot read the plan to freeze {path!r}: {exc}") from exc
    if isinstance(doc, dict) and doc.get("kind") == SCHEDULE_KIND:
        found = [p for p in doc.get("phases", []) if p.get("name") == phase]
        if not found:
            names = ", ".join(str(p.get("name")) for p in doc.get("phases", []))
            raise InvalidInputError(f"{path} has no phase {phase!r} to freeze (it has {names})")
        level = int(doc["settings"]["weights_level"])
        shares = dict(found[0]["realized_shares"])
    elif isinstance(doc, dict) and doc.get("kind") == PLAN_KIND:
        plan = SamplePlan.from_json(json.dumps(doc), source=f"plan {path!r}")
        level, shares = plan.weights_level, plan.target_shares()
    else:
        raise InvalidInputError(f"{path} is neither a hermes plan nor a phase schedule")
    if level != int(weights_level):
        raise InvalidInputError(
            f"{path} is keyed by level-{level} buckets; this schedule plans level "
            f"{weights_level} (sample.weights_level)"
        )
    return {k: float(v) for k, v in shares.items() if float(v) > 0}


def _tokens_by_parent(manifest: DataFrame, plan: SamplePlan) -> dict[str, float]:
    per_child, _ = realized_by_child(manifest)
    if per_child.empty:
        return {}
    tok = per_child.groupby("stage1_bucket")["tokens"].sum()
    return {plan.key(int(b), plan.weights_level): float(t) for b, t in tok.items()}


def _shares(tokens: Mapping[str, float]) -> dict[str, float]:
    total = float(sum(tokens.values()))
    return {k: (v / total if total > 0 else 0.0) for k, v in sorted(tokens.items())}


def _capped(manifest: DataFrame, used: DataFrame | None, cap: int) -> tuple[DataFrame, float]:
    """The phase's manifest with repeats cut to the rest of the per-document cap, and the
    tokens that cut (one aggregation, executors)."""
    if used is None:
        room = F.lit(cap)
        joined = manifest
    else:
        joined = manifest.join(used, "doc_id", "left")
        room = F.lit(cap) - F.coalesce(F.col(_USED), F.lit(0))
    cut = joined.withColumn("_asked", F.col("repeats")).withColumn(
        "repeats", F.least(F.col("repeats"), room).cast("int")
    )
    lost = _one_row(
        cut.agg(F.sum((F.col("_asked") - F.col("repeats")) * F.col("tokens").cast("long")))
    )[0]
    out = cut.where(F.col("repeats") >= 1).drop("_asked", *([_USED] if used is not None else []))
    return out, float(lost or 0)


def _overlap(parts: Sequence[DataFrame], names: Sequence[str]) -> list[dict[str, Any]]:
    """Documents and tokens (each document's ``n_tokens`` once) in both of two phases."""
    out = []
    for i in range(len(parts)):
        for j in range(i + 1, len(parts)):
            both = parts[i].select("doc_id", "tokens").join(parts[j].select("doc_id"), "doc_id")
            row = _one_row(both.agg(F.count(F.lit(1)), F.sum(F.col("tokens").cast("long"))))
            out.append(
                {"phases": [names[i], names[j]], "docs": int(row[0]), "tokens": int(row[1] or 0)}
            )
    return out


def _phase_weights(phase: Phase, weights_level: int, storage: io.Storage) -> str | dict[str, float]:
    if phase.freeze is None:
        return phase.weights
    return frozen_weights(phase.freeze, phase.name, weights_level, storage=storage)


def _one_phase(
    avail: DataFrame,
    phase: Phase,
    budget: float,
    used: DataFrame | None,
    opts: dict[str, Any],
    table: str,
) -> tuple[PhaseResult, DataFrame]:
    """Plan and select one phase over ``avail`` (documents with room left)."""
    rated = parse_rule(phase.stage2, check_files=False).needs_quality
    storage = storage_of(avail.sparkSession)
    plan = plan_mixture(
        None,
        codes_df=avail,
        budget_tokens=budget,
        weights=_phase_weights(phase, opts["weights_level"], storage),
        stage2=phase.stage2,
        storage=storage,
        **{**opts, "quality_cols": opts["quality_cols"] if rated else None},
    )
    selected, capped = _capped(sample(avail, plan), used, doc_cap(opts["max_epochs"]))
    part = selected.withColumn(PHASE_COL, F.lit(phase.name)).persist(StorageLevel.MEMORY_AND_DISK)
    per_child, reps = realized_by_child(part)
    report = build_report(plan, per_child, reps, None, manifest=f"phase {phase.name}", table=table)
    realized = _tokens_by_parent(part, plan)
    result = PhaseResult(
        phase=phase,
        plan=plan,
        target_tokens=budget,
        realized_tokens=float(sum(realized.values())),
        capped_tokens=capped,
        target_shares=plan.target_shares(),
        realized_shares=_shares(realized),
        report=report,
    )
    log.info(
        "phase %s: %.6g of %.6g tokens (%.6g cut by the per-document cap)",
        phase.name, result.realized_tokens, budget, capped,
    )  # fmt: skip
    return result, part


def plan_phases(
    codes_df: DataFrame,
    phases: Sequence[Phase],
    settings: SampleConfig,
    *,
    levels: Sequence[int] | None = None,
    allow_shortfall: bool = False,
    table: str = "the codes",
) -> PhasedSchedule:
    """Plan and select every phase of ``phases`` over ``codes_df`` (one codebook version).

    ``settings`` gives the total budget (``budget_tokens`` or ``budget_share``),
    ``max_epochs`` (the cap over all phases), the levels, seed and ``quality_cols``; its
    ``weights`` and ``stage2`` are the phases'. Runs each phase's planning and selection
    jobs now (executors; the driver gets one row per bucket); the returned schedule's
    ``manifest`` is lazy over the persisted parts (call ``release`` once it is written).

    Raises:
        InvalidConfigError: no phases, or a bad rule or budget (see ``plan_mixture``).
        BudgetError: a phase's budget above what is left without ``allow_shortfall``.
        InvalidInputError: a frozen plan that cannot be used.
    """
    if not phases:
        raise InvalidConfigError("a schedule needs at least one phase", key="sample.phases")
    codes = clean_codes(codes_df)
    version = codes_version(codes)
    total = _one_row(codes.agg(F.sum(F.coalesce(F.col("n_tokens"), F.lit(0)).cast("long"))))[0]
    budgets = phase_budgets(resolve_budget(settings, float(total or 0)), phases)
    opts: dict[str, Any] = {
        "weights_level": settings.weights_level,
        "stage2_level": settings.stage2_level,
        "max_epochs": settings.max_epochs,
        "seed": settings.seed,
        "levels": None if levels is None else tuple(levels),
        "codebook_version": version,
        "allow_shortfall": allow_shortfall,
        "quality_cols": settings.quality_cols,
    }
    if opts["levels"] is None:
        opts["levels"] = metadata_levels(codes)
    cap = doc_cap(settings.max_epochs)
    results: list[PhaseResult] = []
    parts: list[DataFrame] = []
    used: DataFrame | None = None
    for phase, budget in zip(phases, budgets, strict=True):
        spent = None if used is None else used.where(F.col(_USED) >= cap)
        avail = codes if spent is None else codes.join(spent, "doc_id", "left_anti")
        result, part = _one_phase(avail, phase, budget, used, opts, table)
        opts["levels"] = result.plan.levels  # every phase keys buckets by the same sizes
        results.append(result)
        parts.append(part)
        used = _used(parts)
    manifest = parts[0]
    for part in parts[1:]:
        manifest = manifest.unionByName(part)
    first = results[0].plan
    resolved = {
        "budget_tokens": float(sum(budgets)),
        "budget_share": settings.budget_share,
        "weights_level": first.weights_level,
        "stage2_level": first.stage2_level,
        "max_epochs": settings.max_epochs,
        "doc_cap": cap,
        "seed": settings.seed,
    }
    overlap = _overlap(parts, [p.name for p in phases])
    return PhasedSchedule(version, first.levels, resolved, results, overlap, manifest, parts)


def _used(parts: Sequence[DataFrame]) -> DataFrame:
    """Each document's repeats over the phases so far (persisted on executors)."""
    reps = parts[0].select("doc_id", "repeats")
    for part in parts[1:]:
        reps = reps.unionByName(part.select("doc_id", "repeats"))
    summed = reps.groupBy("doc_id").agg(F.sum("repeats").cast("int").alias(_USED))
    return summed.persist(StorageLevel.MEMORY_AND_DISK)


def phase_report(report: Mapping[str, Any] | None, phase: str) -> dict[str, Any] | None:
    """The mixture report of ``phase`` inside a schedule JSON (None without one)."""
    if report is None or report.get("kind") != SCHEDULE_KIND:
        return None
    for entry in report.get("phases", []):
        if entry.get("name") == phase:
            return dict(entry["report"])
    raise InvalidInputError(f"the schedule report has no phase {phase!r}")


def phase_rows(manifest: DataFrame, phase: str) -> DataFrame:
    """The rows of one phase of a phased manifest (lazy)."""
    if PHASE_COL not in manifest.columns:
        raise InvalidInputError(f"the manifest has no {PHASE_COL} column (not a phased manifest)")
    return manifest.where(F.col(PHASE_COL) == phase).drop(PHASE_COL)


def phase_names(report: Mapping[str, Any] | None) -> list[str] | None:
    """The phases of a schedule JSON in order (None when it is not one)."""
    if report is None or report.get("kind") != SCHEDULE_KIND:
        return None
    return [str(p["name"]) for p in report.get("phases", [])]


def realized_table(schedule: PhasedSchedule) -> pd.DataFrame:
    """Per phase and Stage-1 bucket: target and realized share (for printing)."""
    rows = []
    for r in schedule.phases:
        for key in sorted(set(r.target_shares) | set(r.realized_shares)):
            rows.append(
                {
                    "phase": r.phase.name,
                    "bucket": key,
                    "target": r.target_shares.get(key, 0.0),
                    "realized": r.realized_shares.get(key, 0.0),
                }
            )
    return pd.DataFrame(rows)


def _one_row(agg: DataFrame) -> Row:
    """The single row of a global aggregation (driver)."""
    row = agg.first()
    assert row is not None, "a global aggregation has one row"
    return row
