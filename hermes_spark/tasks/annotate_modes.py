"""What an annotate mode decides, and the two modes (``annotate.mode``).

A mode says which chunks of the listed files are pending, what is looked up in the
tables for their ids, how a chunk's commit is settled, and writes the chunks through the
shared chunk writer (:mod:`hermes_spark.tasks.annotate_write`). ``incremental``
(:class:`~hermes_spark.tasks.annotate_incremental.IncrementalMode`) writes new files
exactly once; ``full`` (:class:`~hermes_spark.tasks.annotate_full.FullMode`) replaces
the version's rows. All of it runs on the driver; the jobs it starts run on executors.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from pyspark.sql import DataFrame

from hermes_spark.corpus import InputFiles
from hermes_spark.errors import InvalidConfigError
from hermes_spark.tasks import seen
from hermes_spark.tasks.annotate_full import FullMode
from hermes_spark.tasks.annotate_incremental import IncrementalMode
from hermes_spark.tasks.annotate_write import AnnotateReport, AnnotateRun, Chunk

__all__ = ["MODES", "AnnotateMode", "mode_for"]


class AnnotateMode(Protocol):
    """One way to bring a version's codes up to date with the corpus."""

    #: the ``annotate.mode`` value
    name: str
    #: whether the run replaces the version's rows (else it adds to them)
    replaces: bool

    def pending(self, run: AnnotateRun, files: InputFiles, report: AnnotateReport) -> list[Chunk]:
        """The chunks this run writes (may settle what an earlier run left first)."""
        ...

    def look_up(self, run: AnnotateRun, chunks: Sequence[Chunk]) -> seen.Seen | None:
        """What the tables already hold for the ids of ``chunks`` (None: nothing)."""
        ...

    def settle(
        self, run: AnnotateRun, view: seen.Seen, good: DataFrame, *, report: AnnotateReport
    ) -> None:
        """After a chunk's codes commit (``good``: its valid rows, persisted)."""
        ...

    def annotate(
        self, run: AnnotateRun, chunks: Sequence[Chunk], files: InputFiles, report: AnnotateReport
    ) -> Counter[str]:
        """Write ``chunks``; returns the reject counts by reason."""
        ...


MODES: dict[str, AnnotateMode] = {m.name: m for m in (IncrementalMode(), FullMode())}


def mode_for(name: str) -> AnnotateMode:
    """The mode named by ``annotate.mode``."""
    try:
        return MODES[name]
    except KeyError:
        raise InvalidConfigError(
            f"unknown annotate mode {name!r}; choose one of {', '.join(sorted(MODES))}",
            key="annotate.mode",
        ) from None
