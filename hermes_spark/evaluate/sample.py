"""The evaluation samples: held-out documents disjoint from ``fit``'s, and a fitting side.

Spark, driver orchestration; every DataFrame here stays bounded by the sample sizes.
``fit`` trains on the documents with the smallest ``u_fit = hash(doc_id, fit_seed)``
(``fit.sample_size`` of them). Evaluation recovers that set's ``u_fit`` threshold
``t`` (from the artifact when it records one, else the ``fit.sample_size``-th smallest
``u_fit`` among the table's rows of the version) and draws

- the **held-out** sample: rows with ``u_fit > t``, the ``n`` smallest by
  ``u_eval = hash(doc_id, seed ^ EVAL_SALT)`` — a different salt, so it is not a prefix
  of the fit's order;
- the **fitting-side** sample (baselines train on it): rows with ``u_fit <= t``, the
  ``n_fit`` smallest by ``u_eval``.

With ``in_sample`` the held-out sample is drawn from the fitting side instead (the report
says so). Ties and re-runs are deterministic: the order is ``(u, doc_id)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from hermes_spark.hashing import uniform

__all__ = ["EVAL_SALT", "SampleSplit", "fit_threshold", "smallest_by", "split_samples"]

log = logging.getLogger(__name__)

#: XOR-ed into the evaluation seed so ``u_eval`` never equals ``fit``'s ``u(seed)``.
EVAL_SALT = 0x5EED_E7A1


@dataclass(frozen=True)
class SampleSplit:
    """Held-out and fitting-side document ids (lazy, bounded) and how they were drawn."""

    held_out: DataFrame
    fitting: DataFrame
    info: dict[str, Any]


def smallest_by(df: DataFrame, u: str, n: int, total: int | None = None) -> DataFrame:
    """The ``n`` rows of ``df`` with the smallest ``u`` (ties by ``doc_id``).

    When ``total`` (rows of ``df``) is known the rows are first cut to ``u <= 1.5 n /
    total`` so the final sort only sees about ``1.5 n`` rows, never the whole table; the
    cut is only safe because ``u`` is uniform and is checked by the caller's counts.
    """
    if total:
        fraction = min(1.0, 1.5 * n / total + 1e-9)
        df = df.where(F.col(u) <= fraction)
    return df.orderBy(u, "doc_id").limit(n)


def fit_threshold(ids: DataFrame, fit_seed: int, fit_size: int, total: int) -> float:
    """``u_fit`` of the ``fit_size``-th smallest document (1.0 when fit used them all)."""
    if fit_size >= total:
        return 1.0
    u = ids.select("doc_id", uniform("doc_id", fit_seed).alias("_u_fit"))
    cut = smallest_by(u, "_u_fit", fit_size, total)
    row = cut.agg(F.count("*").alias("n"), F.max("_u_fit").alias("t")).collect()[0]
    if row["n"] < fit_size:  # the uniform cut was too tight: sort without it (rare)
        row = smallest_by(u, "_u_fit", fit_size).agg(F.max("_u_fit").alias("t")).collect()[0]
    return float(row["t"])


def split_samples(
    codes: DataFrame,
    *,
    fit_seed: int,
    fit_size: int,
    seed: int,
    n: int,
    n_fit: int,
    recorded_threshold: float | None = None,
    in_sample: bool = False,
) -> SampleSplit:
    """Draw the held-out and fitting-side id samples from one version's codes rows."""
    ids = codes.select("doc_id").distinct()
    total = ids.count()
    if recorded_threshold is not None:
        threshold, source = float(recorded_threshold), "artifact"
    else:
        threshold = fit_threshold(ids, fit_seed, fit_size, total)
        source = "recomputed: fit.sample_size-th smallest u_fit among the table's rows"
    tagged = ids.select(
        "doc_id",
        uniform("doc_id", fit_seed).alias("_u_fit"),
        uniform("doc_id", int(seed) ^ EVAL_SALT).alias("_u_eval"),
    )
    fitting_pool = tagged.where(F.col("_u_fit") <= threshold)
    held_pool = tagged.where(F.col("_u_fit") > threshold)
    fit_rows = min(fit_size, total) if threshold < 1.0 else total
    held_rows = total - fit_rows
    disjoint = not in_sample and held_rows > 0
    if not disjoint and not in_sample:
        log.warning(
            "fit used every document of the table (%d): the evaluation sample overlaps it", total
        )
    source_pool, source_rows = (
        (held_pool, held_rows) if disjoint else (fitting_pool, fit_rows or total)
    )
    held = smallest_by(source_pool, "_u_eval", n, source_rows).select("doc_id")
    fitting = smallest_by(fitting_pool, "_u_eval", n_fit, fit_rows or total).select("doc_id")
    info = {
        "table_docs": int(total),
        "fit_seed": int(fit_seed),
        "fit_sample_size": int(fit_size),
        "fit_threshold_u": threshold,
        "fit_threshold_source": source,
        "eval_hash": f"xxhash64(doc_id, seed ^ {EVAL_SALT:#x}), seed {int(seed)}",
        "disjoint_from_fit": disjoint,
        "in_sample": bool(in_sample),
        "held_out_pool": int(held_rows),
    }
    return SampleSplit(held_out=held, fitting=fitting, info=info)


def dedupe_joined(docs: DataFrame, ids: DataFrame) -> DataFrame:
    """Corpus rows of the sampled ids, one per id: joined first, de-duplicated after.

    The sample (small) is broadcast into the corpus scan, so only the sampled documents
    are shuffled; among copies of one id the row with the smallest hash of its text wins
    (deterministic whatever the partitioning).
    """
    joined = docs.join(F.broadcast(ids), "doc_id")
    order = Window.partitionBy("doc_id").orderBy(F.xxhash64("text"), F.col("text"))
    return (
        joined.withColumn("_rank", F.row_number().over(order))
        .where(F.col("_rank") == 1)
        .drop("_rank")
    )
