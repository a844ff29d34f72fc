"""``hermes report``: read the statistics tables and the JSON reports, build the page.

Reads only small things: the STATS rows of one codebook version (one small job, at most
K1 + K1·K2 + K1·K2·K3 rows to the driver), ``STATS_levels``, and JSON files through
:mod:`hermes_spark.io` (any URI). Never a scan of the corpus or the codes.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from hermes_spark import io
from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.errors import ArtifactError, InvalidInputError
from hermes_spark.object_stores import storage_of
from hermes_spark.outputs import REPORT_MARKER, guard_output
from hermes_spark.report import Report, build_page
from hermes_spark.report.explorer import Cards

log = logging.getLogger(__name__)

FIT_REPORT = "fit_report.json"
#: the columns of an empty STATS frame (a page of the JSON reports only)
_NO_STATS = ("level", "bucket", "docs", "share_docs", "share_tokens")
EVALUATION_JSON = "evaluation.json"


def _json(path: str, what: str, storage: io.Storage | None) -> dict[str, Any]:
    if not io.exists(path, storage=storage):
        raise InvalidInputError(f"the {what} {path!r} does not exist")
    doc: dict[str, Any] = io.read_json(path, storage=storage)
    return doc


def _pandas(frame: DataFrame | pd.DataFrame) -> pd.DataFrame:
    return frame if isinstance(frame, pd.DataFrame) else frame.toPandas()


def build_report(
    stats: DataFrame | pd.DataFrame | None,
    levels: DataFrame | pd.DataFrame | None = None,
    *,
    mixture: dict[str, Any] | str | None = None,
    evaluation: dict[str, Any] | str | None = None,
    fit: dict[str, Any] | str | None = None,
    codebook_version: str | None = None,
    cards: Cards | None = None,
    explorer: str | None = None,
    storage: io.Storage | None = None,
) -> Report:
    """The report page of a STATS frame (Spark or pandas) and optional JSON reports (dicts
    or paths: a mixture report JSON, an evaluation directory or ``evaluation.json``, a
    codebook artifact directory or its ``fit_report.json``: an artifact directory also
    gives the centroid map), the bucket cards (labels of the map) and a link to the
    explorer. Driver; small reads only, reached with ``storage``."""
    rows = _pandas(stats) if stats is not None else pd.DataFrame(columns=_NO_STATS)
    if "level" not in rows.columns or "share_docs" not in rows.columns:
        raise InvalidInputError("the statistics given are not a STATS table (no level/share_docs)")
    lv = _pandas(levels) if levels is not None else None
    if "codebook_version" in rows.columns:
        versions = sorted(rows["codebook_version"].dropna().unique())
        if codebook_version is None and len(versions) > 1:
            raise InvalidInputError(
                f"the statistics hold codebook versions {versions}; pick one (codebook_version)"
            )
        codebook_version = codebook_version or (versions[0] if versions else None)
        rows = rows[rows["codebook_version"] == codebook_version]
        if lv is not None and "codebook_version" in lv.columns:
            lv = lv[lv["codebook_version"] == codebook_version]
    if isinstance(mixture, str):
        mixture = _json(mixture, "mixture report", storage)
    if isinstance(evaluation, str):
        path = evaluation if evaluation.endswith(".json") else io.join(evaluation, EVALUATION_JSON)
        evaluation = _json(path, "evaluation report", storage)
    centroids = None
    if isinstance(fit, str):
        if not fit.endswith(".json"):
            centroids = _centroids(fit, codebook_version, storage)
        path = fit if fit.endswith(".json") else io.join(fit, FIT_REPORT)
        fit = _json(path, "fit report", storage)
    title = f"hermes report — codebook {codebook_version}" if codebook_version else "hermes report"
    return build_page(
        rows if stats is not None else None,
        lv,
        mixture=mixture,
        evaluation=evaluation,
        fit=fit,
        centroids=centroids,
        terms=cards.terms(1) if cards is not None else None,
        explorer=explorer,
        title=title,
    )


def _centroids(
    artifact: str, version: str | None, storage: io.Storage | None
) -> list[np.ndarray] | None:
    """The codebook's per-level centroid arrays (small), None when the artifact is not
    the version the statistics describe (the map would mislabel every bucket)."""
    from hermes_spark.api import load_codebook

    try:
        book = load_codebook(artifact, storage=storage)
    except ArtifactError as exc:  # a folder holding only fit_report.json: no map
        log.warning("no centroid map: %s", exc)
        return None
    if version is not None and book.version != version:
        log.warning("codebook %s is not version %s: no centroid map", book.version, version)
        return None
    books = list(book.rvq.codebooks)
    if len(books) > 1 and not book.rvq.parent_depths[1]:  # one row per level-2 bucket
        books[1] = np.tile(books[1], (len(books[0]), 1))
    return books


def report_from_tables(
    spark: SparkSession,
    stats_table: str | None,
    out: str,
    *,
    mixture: str | dict[str, Any] | None = None,
    evaluation: str | dict[str, Any] | None = None,
    codebook: str | None = None,
    codebook_version: str | None = None,
    cards: str | None = None,
    explorer: str | None = None,
    store: DeltaStore | None = None,
) -> str:
    """Read ``STATS`` (and ``STATS_levels`` when present, and the ``cards`` table of
    ``hermes explore`` when given), build the page, write it to ``out`` (any URI); return
    ``out``. ``store`` defaults to the session's store."""
    from hermes_spark.tasks.explore import read_cards

    store = store or get_store(spark)
    storage = storage_of(spark)
    guard_output(out, "report {out}", marker=REPORT_MARKER, storage=storage)
    stats = levels = None
    if stats_table is not None:
        if not store.exists(stats_table):
            raise InvalidInputError(f"the STATS table {stats_table!r} does not exist")
        stats = store.read(stats_table)
        levels_name = f"{stats_table}_levels"
        levels = store.read(levels_name) if store.exists(levels_name) else None
        if levels is None:
            log.warning("no %s table: the page shows no per-level summary", levels_name)
    report = build_report(
        stats,
        levels,
        mixture=mixture,
        evaluation=evaluation,
        fit=codebook,
        codebook_version=codebook_version,
        cards=read_cards(spark, cards, codebook_version, store=store) if cards else None,
        explorer=explorer,
        storage=storage,
    )
    return report.save(out, storage=storage)
