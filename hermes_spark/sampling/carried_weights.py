"""``--weights FILE --weights-version V1``: a weights file keyed by another codebook
version's codes, carried to the version being planned.

A DoReMi / RegMix / CLIMB file keyed by V1 codes (``"12"``, ``"12.3"``: the key depth is
the V1 level) is read as it is on the driver; one Spark job over the codes table builds
the pair cells ``(V1 key, V2 key, docs, tokens)`` of the documents coded under both
versions (ids, tokens and code columns only: at most one row per pair of cells reaches
the driver), and :func:`hermes_spark.sampling.carry.carry_table` solves for the V2 weights
at ``--weights-level`` whose sample best realizes the V1 mixture in V1 cells.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from hermes_spark.errors import BudgetError, InvalidInputError
from hermes_spark.io import Storage
from hermes_spark.object_stores import storage_of
from hermes_spark.sampling.carry import CarriedWeights, carry_table
from hermes_spark.sampling.crosswalk import version_docs
from hermes_spark.sampling.weights import read_weight_pairs
from hermes_spark.schema import VERSION_COL

log = logging.getLogger(__name__)

__all__ = ["carried_line", "carry_weights_file", "key_cells", "keyed_weights"]

#: Below this coverage the plan logs a warning: much of the V1 weight had no documents.
LOW_COVERAGE = 0.9


def _key_col(level: int) -> Column:
    """The written bucket key ``"c1.c2..."`` of a row at ``level`` (null when a code is)."""
    return F.concat_ws(".", *[F.col(f"c{i}").cast("string") for i in range(1, level + 1)])


def _side(codes: DataFrame, version: str, level: int, name: str) -> DataFrame:
    missing = [f"c{i}" for i in range(1, level + 1) if f"c{i}" not in codes.columns]
    if missing:
        raise InvalidInputError(f"the codes table has no level {level} (no {missing[0]} column)")
    present = [F.col(f"c{i}").isNotNull() for i in range(1, level + 1)]
    rows = codes.where((F.col(VERSION_COL) == version) & present[0])
    for cond in present[1:]:
        rows = rows.where(cond)
    return rows.select("doc_id", "n_tokens", _key_col(level).alias(name))


def key_cells(
    codes: DataFrame, from_version: str, to_version: str, from_level: int, to_level: int
) -> DataFrame:
    """``(from_bucket, to_bucket, docs, tokens)`` keyed by written keys (lazy, executors).

    Only documents coded under both versions count; ``tokens`` are the from-version rows'.
    """
    a = _side(codes, from_version, from_level, "from_bucket")
    b = _side(codes, to_version, to_level, "to_bucket").drop("n_tokens")
    return (
        a.join(b, "doc_id")
        .groupBy("from_bucket", "to_bucket")
        .agg(F.count("*").alias("docs"), F.sum("n_tokens").cast("long").alias("tokens"))
    )


def keyed_weights(path: str, *, storage: Storage | None = None) -> tuple[dict[str, float], int]:
    """The file's weights by written key, and their level (the key depth); driver.

    Raises:
        InvalidInputError: unreadable file.
        BudgetError: malformed keys, keys of different depths, a key twice, weights that
            are not finite and ``>= 0``, or a zero total.
    """
    pairs = read_weight_pairs(path, storage=storage)
    if not pairs:
        raise BudgetError(f"weights file {path!r} lists no bucket")
    weights: dict[str, float] = {}
    depths = set()
    for key, value in pairs:
        parts = key.strip().split(".")
        if not all(p.isascii() and p.isdigit() for p in parts):
            raise BudgetError(f"weights file {path!r}: key {key!r} is not a bucket code like 12.3")
        norm = ".".join(str(int(p)) for p in parts)
        try:
            w = float(value)
        except (TypeError, ValueError):
            w = float("nan")
        if isinstance(value, bool) or not (math.isfinite(w) and w >= 0):
            raise BudgetError(f"weights file {path!r}: weight {key}={value!r} must be >= 0")
        if norm in weights:
            raise BudgetError(f"weights file {path!r} lists bucket {key!r} twice")
        weights[norm] = w
        depths.add(len(parts))
    if len(depths) != 1:
        raise BudgetError(
            f"weights file {path!r} mixes keys of levels {sorted(depths)}: one level per file"
        )
    if sum(weights.values()) <= 0:
        raise BudgetError(f"weights file {path!r}: the weights sum to 0; nothing to sample")
    return weights, depths.pop()


def carry_weights_file(
    codes: DataFrame, path: str, from_version: str, to_version: str, to_level: int
) -> tuple[CarriedWeights, dict[str, Any]]:
    """``path``'s V1 weights carried to ``to_version`` at ``to_level`` (keys ``"c1.c2"``),
    and the record the plan and the report keep (one Spark job for the pair cells).

    Raises:
        InvalidInputError: the same version twice, levels the table lacks, no weighted V1
            cell with documents under both versions.
        VersionMismatchError: a version the table does not hold.
        BudgetError: a bad weights file (see :func:`keyed_weights`).
    """
    if from_version == to_version:
        raise InvalidInputError(
            f"{from_version} is the version being planned: drop it", key="sample.weights_version"
        )
    weights, from_level = keyed_weights(path, storage=storage_of(codes.sparkSession))
    counts = version_docs(codes, from_version, to_version)
    keyed = key_cells(codes, from_version, to_version, from_level, to_level)
    cells: pd.DataFrame = keyed.toPandas()

    if cells.empty:
        raise InvalidInputError(
            f"no document is coded under both {from_version} and {to_version}: annotate the "
            "same documents with both codebooks to carry weights between them"
        )
    solved, residual, tv, plain_tv, coverage = carry_table(cells, weights)
    carried = CarriedWeights(
        solved, residual, tv, plain_tv, coverage, from_version, from_level, to_level
    )
    record = {
        "source": path,
        "from_version": from_version,
        "from_level": from_level,
        "to_version": to_version,
        "to_level": to_level,
        "coverage": coverage,
        "residual": residual,
        "tv": tv,
        "plain_tv": plain_tv,
        "docs_both": int(cells["docs"].sum()),
        "docs_from": counts[from_version],
        "from_keys_unmatched": sorted(set(weights) - set(cells["from_bucket"])),
    }
    log.log(
        logging.WARNING if coverage < LOW_COVERAGE else logging.INFO,
        "carried %s (%s level %d) to %s level %d: coverage %.3f, TV %.4f (plain mapping %.4f)",
        path, from_version, from_level, to_version, to_level, coverage, tv, plain_tv,
    )  # fmt: skip
    return carried, record


def carried_line(weights_info: dict[str, Any] | None) -> str:
    """The report's one line on carried weights ('' when the weights were not carried)."""
    c = (weights_info or {}).get("carried")
    if not c:
        return ""
    return (
        f"  weights carried from {c['from_version']} level {c['from_level']} to level "
        f"{c['to_level']}: coverage {c['coverage']:.1%}, TV {c['tv']:.4f} in "
        f"{c['from_version']} cells (plain token-mass mapping {c['plain_tv']:.4f}), "
        f"{c['docs_both']:,} documents under both"
    )
