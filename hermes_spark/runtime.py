"""Spark-runtime helpers that work on classic Spark and on Spark Connect alike.

Driver side: default parallelism, job descriptions a person can follow in the Spark UI,
and one progress line per chunk or stage (docs/s, ETA) in the log.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from pyspark.sql import SparkSession

log = logging.getLogger("hermes.progress")


def is_connect(spark: SparkSession) -> bool:
    """True for a Spark Connect session (no SparkContext, RDDs or JVM gateway)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def default_parallelism(spark: SparkSession) -> int:
    """Task slots to aim for: SparkContext's view on classic Spark, else the conf."""
    if not is_connect(spark):
        with contextlib.suppress(Exception):
            return max(1, int(spark.sparkContext.defaultParallelism))
    for key in ("spark.default.parallelism", "spark.sql.shuffle.partitions"):
        with contextlib.suppress(Exception):
            value = spark.conf.get(key, None)
            if value:
                return max(1, int(value))
    return 2


@contextlib.contextmanager
def job_description(spark: SparkSession, text: str) -> Iterator[None]:
    """Label the Spark jobs run inside the block (``hermes annotate chunk 3/11``).

    Classic Spark: the job description shown in the UI. Spark Connect: a job tag
    (``spark.addTag``), which the UI and ``interruptTag`` see.
    """
    if is_connect(spark):
        tag = "hermes-" + "".join(c if c.isalnum() else "-" for c in text)[:100]
        try:
            spark.addTag(tag)
        except Exception:  # pragma: no cover - tags are best effort
            yield
            return
        try:
            yield
        finally:
            spark.removeTag(tag)
        return
    sc = spark.sparkContext
    previous = sc.getLocalProperty("spark.job.description")
    sc.setJobDescription(text)
    try:
        yield
    finally:
        sc.setJobDescription(previous)  # type: ignore[arg-type]


@dataclass
class Progress:
    """One log line per finished step: ``what i/n: docs, docs/s, ETA``."""

    what: str
    total_steps: int
    started: float = field(default_factory=time.perf_counter)
    steps: int = 0
    docs: int = 0

    def step(self, docs: int, note: str = "") -> None:
        """Record one finished step of ``docs`` documents and log the line."""
        self.steps += 1
        self.docs += docs
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.docs / elapsed
        left = self.total_steps - self.steps
        eta = elapsed / self.steps * left if self.steps else 0.0
        log.info(
            "%s %d/%d: %d docs, %.1f docs/s, ETA %s%s",
            self.what,
            self.steps,
            self.total_steps,
            docs,
            rate,
            _clock(eta),
            f" ({note})" if note else "",
        )


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
