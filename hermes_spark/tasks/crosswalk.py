"""``hermes crosswalk``: write the crosswalk table of two versions and its JSON summary.

Driver orchestration of :mod:`hermes_spark.sampling.crosswalk`: reads the codes table,
writes ``out`` (Delta) and ``out_summary.json`` beside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from hermes_spark import io
from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.errors import InvalidInputError
from hermes_spark.object_stores import storage_of
from hermes_spark.outputs import CROSSWALK_COLUMNS, guard_output
from hermes_spark.sampling.crosswalk import (
    crosswalk,
    crosswalk_summary,
    shared_levels,
    version_docs,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CrosswalkResult:
    """Where the crosswalk went and its summary."""

    table: str
    summary_path: str
    summary: dict[str, Any]


def write_crosswalk(
    spark: SparkSession,
    table: str,
    from_version: str,
    to_version: str,
    out: str,
    level: int | None = None,
    *,
    store: DeltaStore | None = None,
) -> CrosswalkResult:
    """Crosswalk ``from_version`` → ``to_version`` of ``table`` into ``out`` (+ summary).
    ``store`` defaults to the session's store."""
    store = store or get_store(spark)
    guard_output(out, "crosswalk {out}", store=store, columns=CROSSWALK_COLUMNS)
    if not store.exists(table):
        raise InvalidInputError(f"codes table {table} does not exist (run hermes annotate)")
    codes = store.read(table)
    levels = shared_levels(codes, level)
    version_docs(codes, from_version, to_version)  # refuse an unknown version before writing
    cells = crosswalk(codes, from_version, to_version, levels)
    store.overwrite(cells, out)
    summary = crosswalk_summary(codes, store.read(out), from_version, to_version)
    summary["table"], summary["crosswalk"] = table, out
    path = io.report_path_for(out, "_summary.json")
    io.write_json(path, io.jsonable(summary), storage=storage_of(spark))
    log.info("crosswalk written to %s (summary %s)", out, path)
    return CrosswalkResult(out, path, summary)
