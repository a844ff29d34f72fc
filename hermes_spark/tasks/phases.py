"""Multi-phase schedules over tables: read the codes, plan the phases, write the manifest.

Driver orchestration around :func:`hermes_spark.sampling.schedule.plan_phases`: the codes
table's chosen version is read, every phase planned and selected (executors), and for
``hermes sample --phases`` the manifest (MANIFEST columns plus ``phase``) written with
the schedule JSON beside it as its report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from hermes_spark.config import SampleConfig
from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.delta.describe import describe_table
from hermes_spark.io import report_path_for, write_text
from hermes_spark.object_stores import storage_of
from hermes_spark.outputs import guard_output
from hermes_spark.sampling.phases import PHASE_COL, Phase
from hermes_spark.sampling.schedule import PhasedSchedule, plan_phases
from hermes_spark.sampling.select import MANIFEST_COLUMNS
from hermes_spark.schema import recorded_levels, select_version

log = logging.getLogger(__name__)

#: Manifest rows per output file (as a single-phase sample).
ROWS_PER_FILE = 2_000_000


@dataclass(frozen=True)
class PhasedSampleResult:
    """Where a phased manifest and its report went, and the schedule."""

    manifest: str
    report_path: str
    schedule: PhasedSchedule
    docs: int
    seconds: float

    @property
    def report(self) -> dict[str, Any]:
        """The schedule JSON (as written to ``report_path``)."""
        return self.schedule.to_dict()


def schedule_table(
    spark: SparkSession,
    table: str,
    phases: Sequence[Phase],
    settings: SampleConfig,
    *,
    version: str | None = None,
    levels: Sequence[int] | None = None,
    allow_shortfall: bool = False,
    store: DeltaStore | None = None,
) -> PhasedSchedule:
    """:func:`plan_phases` over the codes ``table`` (its ``version``, default the latest;
    level sizes from the annotate commit when not given). Driver; jobs on executors."""
    store = store or get_store(spark)
    codes, chosen = select_version(store, table, version)
    if levels is None:
        found = recorded_levels(store, table, chosen)
        levels = None if found is None else tuple(found)
    return plan_phases(
        codes, phases, settings, levels=levels, allow_shortfall=allow_shortfall, table=table
    )


def run_phased_sample(
    spark: SparkSession,
    table: str,
    out: str,
    phases: Sequence[Phase],
    settings: SampleConfig,
    *,
    version: str | None = None,
    levels: Sequence[int] | None = None,
    allow_shortfall: bool = False,
    report_path: str | None = None,
    store: DeltaStore | None = None,
) -> PhasedSampleResult:
    """Plan and select every phase, write the MANIFEST ``out`` (with ``phase``) and the
    schedule JSON as its report (default ``<out>_report.json``). Driver orchestration."""
    t0 = time.perf_counter()
    store = store or get_store(spark)
    guard_output(out, "sample {out}", store=store, columns=(*MANIFEST_COLUMNS, PHASE_COL))
    schedule = schedule_table(
        spark, table, phases, settings, version=version, levels=levels,
        allow_shortfall=allow_shortfall, store=store,
    )  # fmt: skip
    assert schedule.manifest is not None
    docs = sum(int(r.report["totals"]["docs"]) for r in schedule.phases)
    files = max(1, min(4096, -(-docs // ROWS_PER_FILE)))
    store.overwrite(schedule.manifest.repartition(files, "doc_id"), out)
    schedule.release()
    describe_table(
        store,
        out,
        "manifest",
        {
            "codebook_version": schedule.codebook_version,
            "levels": ",".join(map(str, schedule.levels)),
            "phases": ",".join(r.phase.name for r in schedule.phases),
        },
    )
    path = report_path or report_path_for(out)
    write_text(path, schedule.to_json(), storage=storage_of(spark))
    seconds = time.perf_counter() - t0
    log.info("phased manifest %s written (%d phases), report %s", out, len(phases), path)
    return PhasedSampleResult(out, path, schedule, docs, seconds)
