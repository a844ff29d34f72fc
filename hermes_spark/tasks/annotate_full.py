"""Annotate's full mode: every document again, the version's rows replaced at once.

Driver orchestration. One chunk of all the listed files, coded once and committed as a
replacement of the version's partition of the codes table (and of the rejects table),
then the version's ledger is replaced by the listing. Nothing is looked up (every row is
rewritten) and nothing needs settling (a replacement leaves no doubled ids).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from hermes_spark.corpus import InputFiles, mark_repeated_ids
from hermes_spark.runtime import Progress, job_description
from hermes_spark.schema import REASON_COL
from hermes_spark.tasks import ledger, seen
from hermes_spark.tasks.annotate_write import (
    AnnotateReport,
    AnnotateRun,
    Chunk,
    prepared_chunk,
    raise_if_duplicates,
    write_chunk,
)

__all__ = ["FullMode"]


class FullMode:
    """``annotate.mode: full``: re-annotate everything, one replacing commit per table."""

    name = "full"
    replaces = True

    def pending(self, run: AnnotateRun, files: InputFiles, report: AnnotateReport) -> list[Chunk]:
        """One chunk of every listed file, without transaction id (it replaces)."""
        report.chunks_total = 1
        return [Chunk(0, tuple(files.entries), None)]

    def look_up(self, run: AnnotateRun, chunks: Sequence[Chunk]) -> seen.Seen | None:
        """Nothing: every row of the version is rewritten."""
        return None

    def settle(
        self, run: AnnotateRun, view: seen.Seen, good: DataFrame, *, report: AnnotateReport
    ) -> None:
        """Nothing: the replacement leaves one row per id."""

    def annotate(
        self, run: AnnotateRun, chunks: Sequence[Chunk], files: InputFiles, report: AnnotateReport
    ) -> Counter[str]:
        """Code every document, replace the version's rows; returns the reject counts."""
        (chunk,) = chunks
        prepared = prepared_chunk(run, files.paths, shuffled=True)
        if run.options.on_duplicate == "error":
            _refuse_duplicates(prepared)
        prepared = mark_repeated_ids(prepared)
        with job_description(run.spark, "hermes annotate --mode full"):
            written, bad_counts, _, _ = write_chunk(run, prepared, chunk, None)
        ledger.replace_version(run.spark, run.store, run.table, run.version, files.entries)
        Progress("annotate full", 1).step(written)
        return Counter(bad_counts)


def _refuse_duplicates(prepared: DataFrame) -> None:
    """``--on-duplicate error``: stop before writing when any valid id repeats."""
    dups = (
        prepared.where(F.col(REASON_COL).isNull())
        .groupBy("doc_id")
        .agg(F.count(F.lit(1)).alias("n"))
        .where(F.col("n") > 1)
    )
    raise_if_duplicates(dups)
