"""``hermes annotate``: the resumable, exactly-once codes-table writer over ``transform``.

Driver orchestration. The coding itself is :func:`hermes_spark.coding.code_rows` (the
same stage :meth:`HermesModel.transform` builds). Cost follows the new files, not the
table: the input files are listed once; files the version's ledger ``<CODES>_files``
(:mod:`hermes_spark.tasks.ledger`) records as finished are skipped unread; the rest are
processed in chunks (``annotate.files_per_chunk``), each one Delta commit to the codes
table (and at most one to ``<CODES>_rejects``) tagged with an application transaction
id derived from the codebook version and the chunk's files (name, size, mtime), then its
ledger rows under the same id. The ids of all pending files are checked against the
table once per run (:mod:`hermes_spark.tasks.seen`); each chunk joins only those few
hits. Re-running after a failure skips committed chunks and never writes a document
twice; a writer that raced another one keeps the earliest row of each doubled id.
``--mode full`` instead re-annotates everything and replaces the version's rows (and
rejects, and ledger) in one commit each. Each mode is one strategy object
(:mod:`hermes_spark.tasks.annotate_modes`); the chunk writer both share is
:mod:`hermes_spark.tasks.annotate_write`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from hermes_spark import io
from hermes_spark.api import HermesModel, load_codebook
from hermes_spark.coding import model_settings, stage_profile
from hermes_spark.config import AnnotateConfig, CorpusConfig, HermesConfig
from hermes_spark.corpus import (
    check_columns,
    embedding_col_dim,
    list_input_files,
    read_corpus,
    require_rows,
)
from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.errors import ArtifactError, InvalidInputError
from hermes_spark.object_stores import storage_of
from hermes_spark.runtime import default_parallelism
from hermes_spark.schema import REASON_COL, SOURCE_ROW_COL, own_columns, rejects_table_name
from hermes_spark.tasks import corpus_log, ledger
from hermes_spark.tasks.annotate_incremental import skip_or_reject_annotated
from hermes_spark.tasks.annotate_modes import mode_for
from hermes_spark.tasks.annotate_write import (
    CODES_CLUSTER_BY,
    AnnotateReport,
    AnnotateRun,
    chunk_app_id,
    clustered_files,
    version_rows,
)

__all__ = [
    "CODES_CLUSTER_BY",
    "AnnotateReport",
    "annotate",
    "annotate_table",
    "chunk_app_id",
    "clustered_files",
    "embedding_device",
    "model_for",
    "skip_or_reject_annotated",
]

log = logging.getLogger(__name__)


def _check_keep_cols(keep_cols: tuple[str, ...], levels: int) -> None:
    """``--keep-cols`` may not shadow a column of the codes table."""
    clash = sorted(set(keep_cols) & (own_columns(levels) - {REASON_COL}))
    if clash:
        raise InvalidInputError(
            f"{{corpus.keep_cols}} {', '.join(clash)}: the codes table has its own column(s) "
            "of that name; rename them in the corpus or leave them out"
        )


def model_for(
    cfg: HermesConfig, codebook_path: str, *, storage: io.Storage | None = None
) -> HermesModel:
    """The artifact at ``codebook_path`` with this run's column roles and run options."""
    return HermesModel(load_codebook(codebook_path, storage=storage)).with_config(cfg)


def annotate(
    spark: SparkSession,
    cfg: HermesConfig,
    codebook_path: str,
    table: str,
    *,
    store_embeddings: bool = False,
    store: DeltaStore | None = None,
) -> AnnotateReport:
    """Annotate ``cfg.corpus`` with the codebook at ``codebook_path`` into ``table``,
    writing with ``cfg.delta`` (engine, rows per file, sort columns, ...). ``store``
    defaults to the session's store with ``cfg.delta``."""
    store = store or get_store(spark, settings=cfg.delta)
    model = model_for(cfg, codebook_path, storage=storage_of(spark))
    return annotate_table(
        spark,
        model,
        cfg.corpus,
        table,
        cfg.annotate,
        store_embeddings=store_embeddings,
        codebook_path=codebook_path,
        store=store,
    )


def annotate_table(
    spark: SparkSession,
    model: HermesModel,
    corpus: CorpusConfig,
    table: str,
    options: AnnotateConfig,
    *,
    store_embeddings: bool = False,
    codebook_path: str = "the codebook",
    store: DeltaStore | None = None,
) -> AnnotateReport:
    """Write ``model``'s codes for the corpus files of ``corpus`` into ``table`` (driver),
    through ``store`` (default: the session's, :func:`~hermes_spark.delta.get_store`).

    Checks columns, dimensions and table writability before any heavy job.
    """
    t0 = time.perf_counter()
    store = store or get_store(spark)
    listed_at = _delta_corpus_version(corpus)
    files = list_input_files(corpus, spark, store=store)  # listed once per run
    if listed_at is not None and _delta_corpus_version(corpus) != listed_at:
        listed_at = None  # a commit landed while listing: no version to record
    run = AnnotateRun(spark, model, corpus, options, store, table, rejects_table_name(table))
    run = dataclasses.replace(
        run, corpus_version=listed_at, source_rows=_records_source_rows(store, table)
    )
    for name in (table, run.rejects, ledger.ledger_table_name(table)):
        store.check_writable(name)
    report = AnnotateReport(model.version, table, run.rejects, mode=options.mode)
    report.files_total = len(files.paths)
    mode = mode_for(options.mode)
    todo = mode.pending(run, files, report)
    rows_before = 0 if mode.replaces else version_rows(store, table, model.version)
    probe_paths = [p for c in todo for p in c.paths]
    if probe_paths:  # only the files this run reads: finished files are never opened
        probe = read_corpus(spark, corpus, probe_paths, store=store)
        check_columns(probe.schema, corpus, embedding_dim=model.codebook.dim)
        if mode.replaces or report.files_finished_before == 0:
            require_rows(probe, corpus)  # (an empty new file of a known corpus is fine)
        _check_dim(probe, corpus, model, codebook_path)
        _check_keep_cols(corpus.keep_cols, len(model.levels))
        report.device = embedding_device(spark, model, corpus)
        run = dataclasses.replace(run, store_embeddings=store_embeddings, device=report.device)
    reasons = mode.annotate(run, todo, files, report)
    if listed_at is not None and ledger.corpus_version(store, table, model.version) != listed_at:
        ledger.record_corpus_version(spark, store, table, model.version, listed_at)
    report.reject_reasons = dict(reasons)
    report.rejects_written = sum(reasons.values())
    report.table_rows = version_rows(store, table, model.version)
    report.rows_written = report.table_rows - rows_before
    _describe(store, table, run.rejects, model.version, model.levels)
    report.seconds = time.perf_counter() - t0
    return report


def _describe(store: DeltaStore, table: str, rejects: str, version: str, levels: Any) -> None:
    """Comments and properties on the codes and rejects tables (metadata commits only
    where they changed)."""
    from hermes_spark.delta.describe import describe_table

    props = {"codebook_version": version, "levels": ",".join(map(str, levels))}
    describe_table(store, table, "codes", props)
    if store.exists(rejects):
        describe_table(store, rejects, "rejects", props)


def embedding_device(spark: SparkSession, model: HermesModel, corpus: CorpusConfig) -> str:
    """Device, backend and precision the executors embed with (``cpu:fp32``,
    ``cuda:fp16``, ``cpu:onnx-int8``; :func:`hermes_spark.embedding.device.device_label`).

    ``given`` when the corpus brings its vectors (no model runs). Otherwise one tiny job,
    under the embedding stage's resource profile, asks the executors' tasks which device
    their resources give the artifact's backend; several answers are joined with ``+``
    (a mixed cluster). Recorded in every commit.
    """
    if corpus.embedding_col:
        return "given"
    settings = model_settings(model.codebook, model.run)
    tasks = default_parallelism(spark)

    def probe(batches: Any) -> Any:
        import pandas as pd

        from hermes_spark.embedding.device import device_label

        for _ in batches:
            pass
        label = device_label(settings.backend, settings.precision, settings.device)
        yield pd.DataFrame({"device": [label]})

    frame = spark.range(0, tasks, 1, tasks)
    profile = stage_profile(frame, model.run, model.roles.inputs())
    probed = (
        frame.mapInPandas(probe, "device string", profile=profile)
        if profile is not None
        else frame.mapInPandas(probe, "device string")
    )
    return "+".join(sorted(r["device"] for r in probed.distinct().collect()))


def _records_source_rows(store: DeltaStore, table: str) -> bool:
    """Whether this run writes ``source_row``: into a new table, or one that has it (a
    table created before the column existed keeps its schema; driver, the log only)."""
    return not store.exists(table) or SOURCE_ROW_COL in store.read(table).columns


def _check_dim(probe: DataFrame, corpus: CorpusConfig, model: HermesModel, path: str) -> None:
    if not corpus.embedding_col:
        return
    given = embedding_col_dim(probe, corpus.embedding_col)
    if given != model.codebook.dim:
        raise ArtifactError(
            f"codebook {path} was fitted on {model.codebook.dim}-dimensional vectors "
            f"of model {model.codebook.model['name']!r}, but column {corpus.embedding_col!r} "
            f"holds {given}-dimensional vectors: use the codebook fitted on these "
            "embeddings or re-run hermes fit"
        )


def _delta_corpus_version(corpus: CorpusConfig) -> int | None:
    """The current version of a Delta path corpus (None for any other corpus)."""
    if corpus.format != "delta" or corpus.table or not corpus.input:
        return None
    return corpus_log.table_version(corpus.input)
