"""``hermes sample``: the table side of :func:`hermes_spark.sampling.select.sample`.

Driver orchestration: reads the plan's codebook version of the codes table, scores the
codes for a ``target-top`` plan from the vector source the plan names (the embeddings
table, or the corpus: its vectors or its text re-embedded with the artifact's model), hands
the frames to :func:`~hermes_spark.sampling.select.select_manifest`, then writes MANIFEST
and its report. The store is built once per call and passed down.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.sql import DataFrame, SparkSession

from hermes_spark.config import CorpusConfig
from hermes_spark.corpus import list_input_files, read_corpus
from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.delta.describe import describe_table
from hermes_spark.errors import InvalidInputError, VersionMismatchError
from hermes_spark.io import report_path_for, write_text
from hermes_spark.object_stores import storage_of
from hermes_spark.outputs import guard_output
from hermes_spark.quantize.codebook import Codebook
from hermes_spark.sampling.plan import SamplePlan
from hermes_spark.sampling.quadmix import plan_rated, quality_histograms
from hermes_spark.sampling.report import build_report
from hermes_spark.sampling.rules.base import Pools
from hermes_spark.sampling.select import (
    MANIFEST_COLUMNS,
    ROWS_PER_FILE,
    realized_by_child,
    select_manifest,
)
from hermes_spark.sampling.similarity import (
    MAX_EMBED_DOCS,
    SIM_COL,
    TargetCentroids,
    VectorSource,
    with_target_similarity,
)
from hermes_spark.schema import select_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleResult:
    """Where the manifest and its report went, and the report itself."""

    manifest: str
    report_path: str
    report: dict[str, Any]
    seconds: float


def manifest_files(plan: SamplePlan) -> int:
    """Output files of ``plan``'s manifest: its expected documents per ``ROWS_PER_FILE``."""
    kids = plan.children
    pooled = kids["pool_tokens"] > 0
    frac = np.where(pooled, np.minimum(1.0, kids["alloc"] / kids["pool_tokens"].clip(lower=1)), 0.0)
    est = float((kids["pool_docs"] * frac).sum())
    return int(min(4096, max(1, math.ceil(est / ROWS_PER_FILE))))


def run_sample(
    spark: SparkSession,
    table: str,
    out: str,
    plan: SamplePlan,
    *,
    report_path: str | None = None,
    codes: DataFrame | None = None,
    store: DeltaStore | None = None,
) -> SampleResult:
    """Execute ``plan`` on the codes ``table``: write MANIFEST ``out`` and its report JSON.

    Driver orchestration: a histogram job, then one job writing the manifest (overwrite),
    then two small aggregations of the manifest for the report. ``codes`` may be given to
    use an already-read frame of the plan's codebook version.

    Raises:
        VersionMismatchError: the table has no rows of the plan's codebook version.
        InvalidInputError: stale plan (see :func:`select_manifest`).
    """
    t0 = time.perf_counter()
    store = store or get_store(spark)
    guard_output(out, "sample {out}", store=store, columns=MANIFEST_COLUMNS)
    if codes is None:
        try:
            codes, _ = select_version(store, table, plan.codebook_version)
        except VersionMismatchError as exc:
            raise VersionMismatchError(
                f"{exc}; the plan was made for codebook version {plan.codebook_version}"
            ) from exc
    codes = target_scored(codes, plan, store)
    manifest, windows = select_manifest(codes, plan)
    store.overwrite(manifest.repartition(manifest_files(plan), "doc_id"), out)
    describe_table(
        store,
        out,
        "manifest",
        {"codebook_version": plan.codebook_version, "levels": ",".join(map(str, plan.levels))},
    )
    per_child, reps = realized_by_child(store.read(out))
    report = build_report(plan, per_child, reps, windows, manifest=out, table=table)
    if plan.stage2_rule.pools is Pools.EXPECTED_REPEATS:
        rated = plan_rated(codes, plan)
        report["quality_histogram"] = quality_histograms(rated, store.read(out))
    path = report_path or report_path_for(out)
    write_text(path, json.dumps(report, indent=1, allow_nan=False), storage=storage_of(spark))
    seconds = time.perf_counter() - t0
    report["seconds"] = seconds
    log.info("manifest %s written (%d docs), report %s", out, report["totals"]["docs"], path)
    return SampleResult(out, path, report, seconds)


def target_scored(codes: DataFrame, plan: SamplePlan, store: DeltaStore | None = None) -> DataFrame:
    """``codes`` with ``target_similarity`` for a ``target-top`` plan: as given when the
    column is there, else scored from the plan's ``target_top`` settings (CLI plans)."""
    if not plan.stage2_rule.needs_target or SIM_COL in codes.columns:
        return codes
    return scored_codes_from_settings(
        codes.sparkSession, codes, plan.settings.get("target_top") or {}, store=store
    )


def scored_codes_from_settings(
    spark: SparkSession,
    codes_df: DataFrame,
    doc: Mapping[str, Any],
    *,
    codebook: Codebook | None = None,
    store: DeltaStore | None = None,
) -> DataFrame:
    """:func:`with_target_similarity` from a plan's ``target_top`` settings (centroids,
    the artifact path, the vector source), as ``hermes sample --plan`` needs it.

    Raises:
        InvalidInputError: the settings name no artifact or vector source (a plan made
            through the API: pass the scored codes instead), or the source is gone.
    """
    vec = doc.get("vectors") or {}
    if codebook is None:
        if not doc.get("codebook") or not vec:
            raise InvalidInputError(
                f"this target-top plan does not say where its document vectors are (it was "
                f"made through the API): pass codes with their {SIM_COL} column "
                "(with_target_similarity) to sample"
            )
        from hermes_spark.artifacts import load_codebook

        codebook = load_codebook(str(doc["codebook"]))
    target = TargetCentroids.from_dict(doc)
    if vec.get("kind") == "embeddings_table":
        store = store or get_store(spark)
        table = str(vec["table"])
        if not store.exists(table):
            raise InvalidInputError(
                f"embeddings table {table} named by the plan does not exist any more "
                "(annotate again with {store_embeddings}, then plan again)"
            )
        source = VectorSource(embeddings=store.read(table), description=f"table {table}")
    elif vec.get("kind") == "corpus":
        cfg = CorpusConfig(**vec["corpus"])
        raw = read_corpus(spark, cfg, list_input_files(cfg, spark, store=store).paths, store=store)
        source = VectorSource(
            corpus=raw,
            corpus_config=cfg,
            max_embed_docs=int(vec.get("max_embed_docs", MAX_EMBED_DOCS)),
            description=f"corpus {cfg.input or cfg.table}",
        )
    else:
        raise InvalidInputError(f"the plan's target-top vector source {vec!r} is not known")
    return with_target_similarity(codes_df, target, codebook, source)
