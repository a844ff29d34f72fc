"""``hermes stats``: the table side of :mod:`hermes_spark.stats`.

Driver orchestration: reads one codebook version of the codes table, writes ``STATS``
(the one scan of the codes, on executors) and ``STATS_levels`` (from the written STATS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.delta.describe import describe_table
from hermes_spark.outputs import LEVELS_COLUMNS, STATS_COLUMNS, guard_output
from hermes_spark.sampling.levels import infer_sizes
from hermes_spark.sampling.sources import stats_rows
from hermes_spark.schema import recorded_levels, select_version
from hermes_spark.stats import bucket_stats, cells_total, code_levels, level_stats


@dataclass(frozen=True)
class StatsResult:
    """Where the two statistics tables went and the per-level summary rows."""

    stats_table: str
    levels_table: str
    codebook_version: str
    levels: list[dict[str, Any]]


def compute_stats(
    spark: SparkSession,
    table: str,
    out: str,
    version: str | None = None,
    sizes: list[int] | None = None,
    *,
    store: DeltaStore | None = None,
) -> StatsResult:
    """Write ``out`` (bucket stats) and ``out + '_levels'`` for one codebook version.

    Driver orchestration of :func:`bucket_stats`: the codes are scanned once (the STATS
    write); ``STATS_levels`` is computed from the written STATS table. ``store``: the
    Delta backend to use (default: the session's).
    """
    store = store or get_store(spark)
    guard_output(out, "stats {out}", store=store, columns=STATS_COLUMNS)
    guard_output(f"{out}_levels", "stats {out}", store=store, columns=LEVELS_COLUMNS)
    codes, chosen = select_version(store, table, version)
    if sizes is None:
        sizes = recorded_levels(store, table, chosen)
    if sizes is not None and len(sizes) != code_levels(codes):
        sizes = None
    stats, _ = bucket_stats(codes, sizes)
    store.overwrite(stats, out)
    written = store.read(out)
    n = code_levels(codes)
    if sizes is None:
        by_level, _ = stats_rows(written, chosen, n, name=out)
        sizes = list(infer_sizes(by_level))
    levels_df = level_stats(written, cells_total(written, n, sizes), chosen)
    levels_table = f"{out}_levels"
    store.overwrite(levels_df, levels_table)
    props = {"codebook_version": chosen, "levels": ",".join(map(str, sizes or ()))}
    describe_table(store, out, "stats", props)
    describe_table(store, levels_table, "levels", props)
    rows = [r.asDict() for r in store.read(levels_table).orderBy("level").collect()]
    return StatsResult(out, levels_table, chosen, rows)
