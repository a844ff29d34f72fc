"""``hermes annotate --dry-run``: what a run would do, and about how long, writing nothing.

Driver orchestration over the same listing and ledger the real run uses
(:mod:`hermes_spark.tasks.annotate`): the corpus is listed once, the version's ledger is
read, chunks are formed exactly as annotate forms them. Rows come from Parquet footers
(Delta data files are Parquet; rows a deletion vector hides are still counted), read on
the driver for at most ``footer_sample`` pending files and scaled by bytes to the rest;
for JSON and text corpora from the bytes and the probe's bytes per row. Tokens and time
come from a short timed probe: ``probe_docs`` documents of the first pending file coded
by the real model (a Spark job, nothing written), so the estimate includes the model's
real speed on this cluster's executors.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from hermes_spark import io
from hermes_spark.config import HermesConfig
from hermes_spark.corpus import chunk_entries, list_input_files, read_corpus
from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.object_stores import storage_of
from hermes_spark.runtime import default_parallelism
from hermes_spark.tasks import ledger
from hermes_spark.tasks.annotate import chunk_app_id, model_for

log = logging.getLogger(__name__)

_PARQUET_FORMATS = ("parquet", "delta")


@dataclass(frozen=True)
class DryRunReport:
    """What ``hermes annotate`` would do now (``estimated_*`` are estimates)."""

    table: str
    codebook_version: str
    mode: str
    files_total: int
    files_finished: int
    files_pending: int
    bytes_pending: int
    chunks_pending: int
    #: chunks whose codes commit is in the table although the ledger lacks them (a run
    #: killed between the two commits): the real run only records their files
    chunks_committed: int
    estimated_rows: int
    #: how the rows were counted: "parquet footers (N of M files)" or "bytes"
    rows_source: str
    probe_docs: int
    probe_seconds: float
    tokens_per_doc: float
    estimated_tokens: int
    task_slots: int
    estimated_seconds: float

    def as_dict(self) -> dict[str, Any]:
        """The report as a JSON-able dict."""
        return asdict(self)

    def lines(self) -> list[str]:
        """The report as the lines ``hermes annotate --dry-run`` prints."""
        return [
            f"dry run: annotate with codebook {self.codebook_version} into {self.table} "
            f"({self.mode}); nothing was written",
            f"  files: {self.files_total} listed, {self.files_finished} finished before, "
            f"{self.files_pending} pending ({self.bytes_pending / 1e6:.1f} MB)",
            f"  chunks: {self.chunks_pending} to annotate"
            + (
                f", {self.chunks_committed} committed but unrecorded"
                if self.chunks_committed
                else ""
            ),
            f"  rows: ~{self.estimated_rows} ({self.rows_source})",
            f"  tokens: ~{self.estimated_tokens} ({self.tokens_per_doc:.0f} per document in "
            f"the probe)",
            f"  time: ~{_duration(self.estimated_seconds)} on {self.task_slots} task slots "
            f"(probe: {self.probe_docs} documents in {self.probe_seconds:.2f}s on one task)",
        ]


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _footer_rows(
    entries: list[io.FileEntry], sample: int, storage: io.Storage | None = None
) -> tuple[int, int]:
    """Rows of ``entries`` from the footers of up to ``sample`` of them, scaled by bytes
    to the rest; and how many footers were read (driver; footers only, no data)."""
    if not entries:
        return 0, 0
    step = max(1, math.ceil(len(entries) / sample))
    picked = entries[::step]
    rows = 0
    for entry in picked:
        fs, path = io.filesystem(entry.uri, storage)
        with fs.open_input_file(path) as handle:
            rows += pq.ParquetFile(handle).metadata.num_rows
    picked_bytes = sum(e.size for e in picked)
    total_bytes = sum(e.size for e in entries)
    scale = total_bytes / picked_bytes if picked_bytes else 1.0
    return round(rows * scale), len(picked)


def dry_run(
    spark: SparkSession,
    cfg: HermesConfig,
    codebook_path: str,
    table: str,
    *,
    probe_docs: int = 64,
    footer_sample: int = 200,
    store: DeltaStore | None = None,
) -> DryRunReport:
    """What ``annotate`` would do for ``cfg.corpus`` into ``table`` with the codebook at
    ``codebook_path``; reads the listing, the ledger, some footers and a probe of
    ``probe_docs`` documents, and writes nothing. ``store`` defaults to the session's store."""
    store = store or get_store(spark)
    storage = storage_of(spark)
    model = model_for(cfg, codebook_path, storage=storage)
    files = list_input_files(cfg.corpus, spark, store=store)
    full = cfg.annotate.mode == "full"
    finished = set() if full else ledger.finished_files(store, table, model.version)
    pending = list(files.entries) if full else ledger.pending_entries(files.entries, finished)
    groups = chunk_entries(pending, cfg.annotate.files_per_chunk)
    done = [
        not full
        and store.exists(table)
        and (store.txn_version(table, chunk_app_id(model.version, g)) or 0) >= 1
        for g in groups
    ]
    committed = sum(done)
    todo = [e for g, d in zip(groups, done, strict=True) if not d for e in g]
    probe_n, probe_s, tokens_per_doc, bytes_per_row = _probe(
        spark, store, cfg, model, todo, probe_docs
    )
    if cfg.corpus.format in _PARQUET_FORMATS or cfg.corpus.table:
        rows, read = _footer_rows(todo, footer_sample, storage)
        source = f"Parquet footers of {read} of {len(todo)} files"
    else:
        rows = round(sum(e.size for e in todo) / bytes_per_row) if bytes_per_row else 0
        source = "bytes over the probe's bytes per row"
    slots = default_parallelism(spark)
    rate = probe_n / probe_s if probe_s > 0 else float("nan")
    seconds = rows / (rate * slots) if rows and rate == rate and rate > 0 else 0.0
    return DryRunReport(
        table=table,
        codebook_version=model.version,
        mode=cfg.annotate.mode,
        files_total=len(files.entries),
        files_finished=len(files.entries) - len(pending),
        files_pending=len(pending),
        bytes_pending=sum(e.size for e in pending),
        chunks_pending=len(groups) - committed,
        chunks_committed=committed,
        estimated_rows=int(rows),
        rows_source=source,
        probe_docs=probe_n,
        probe_seconds=probe_s,
        tokens_per_doc=tokens_per_doc,
        estimated_tokens=round(rows * tokens_per_doc),
        task_slots=slots,
        estimated_seconds=seconds,
    )


def _probe(
    spark: SparkSession,
    store: DeltaStore,
    cfg: HermesConfig,
    model: Any,
    todo: list[io.FileEntry],
    docs: int,
) -> tuple[int, float, float, float]:
    """Code ``docs`` documents of the first pending file twice (a warm-up, then timed);
    return (documents, seconds, tokens per document, bytes per row). Nothing is written."""
    if not todo or docs <= 0:
        return 0, 0.0, 0.0, 0.0
    first = todo[0]
    c = cfg.corpus
    roles = [r for r in (c.id_col, c.text_col, c.embedding_col, c.tokens_col, c.quality_col) if r]
    raw = read_corpus(spark, c, [first.uri], store=store)
    # only the role columns: the probe codes documents, it carries nothing else along
    frame = raw.select(*dict.fromkeys(r for r in roles if r in raw.columns)).limit(docs)
    frame = frame.coalesce(1)
    frame.cache()
    try:
        n_file_rows = None
        if cfg.corpus.format not in _PARQUET_FORMATS:
            n_file_rows = read_corpus(spark, cfg.corpus, [first.uri], store=store).count()
        coded = model.transform(frame).select("n_tokens", "reason")
        coded.limit(8).collect()  # warm-up: the executors load the model
        t0 = time.perf_counter()
        rows = coded.toPandas()
        seconds = time.perf_counter() - t0
    finally:
        frame.unpersist()
    ok = rows[rows["reason"].isna()]
    tokens = float(ok["n_tokens"].mean()) if len(ok) else 0.0
    bytes_per_row = first.size / n_file_rows if n_file_rows else 0.0
    log.info("dry-run probe: %d documents in %.2fs", len(rows), seconds)
    return len(rows), seconds, tokens, bytes_per_row


__all__ = ["DryRunReport", "dry_run"]
