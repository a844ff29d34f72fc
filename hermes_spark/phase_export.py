"""``hermes export`` of a phased manifest: one export per phase, ``OUT/phase=NAME/``.

A thin loop over :func:`hermes_spark.export.export_training_data` (its ``phase`` hook
exports one phase's rows with that phase's mixture report): each phase folder holds its
shards, ``mixture.json``, ``doremi_weights.json``, ``regmix_mixture.csv`` and, with
``per_bucket``, ``megatron_blend.txt``; ``phases.json`` (written last) lists the phases
in schedule order with their rows, tokens and weights. Driver orchestration.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs
from pyspark.sql import SparkSession

from hermes_spark import io
from hermes_spark.config import CorpusConfig
from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.errors import InvalidInputError
from hermes_spark.export import ExportResult, export_training_data
from hermes_spark.io import jsonable, report_path_for, write_text
from hermes_spark.object_stores import storage_of
from hermes_spark.outputs import guard_output
from hermes_spark.sampling.phases import PHASE_COL
from hermes_spark.sampling.schedule import phase_names

log = logging.getLogger(__name__)

PHASES_FILE = "phases.json"
_OURS = re.compile(r"^(phase=[A-Za-z0-9][A-Za-z0-9_.-]*|phases\.json)$")


@dataclass(frozen=True)
class PhasedExportResult:
    """What the export of a phased manifest wrote: one :class:`ExportResult` per phase."""

    out_dir: str
    phases: dict[str, ExportResult]
    index: str
    seconds: float


def is_phased(spark: SparkSession, manifest: str, *, store: DeltaStore | None = None) -> bool:
    """Whether the manifest table carries a ``phase`` column (schema only, no job).
    ``store`` defaults to the session's store."""
    store = store or get_store(spark)
    return store.exists(manifest) and PHASE_COL in store.read(manifest).columns


def _report(manifest: str, storage: io.Storage) -> dict[str, Any] | None:
    try:
        text = io.read_text(report_path_for(manifest), storage=storage)
        report: dict[str, Any] = json.loads(text)
        return report
    except (OSError, ValueError, InvalidInputError):
        return None


def _names(spark: SparkSession, store: DeltaStore, manifest: str) -> list[str]:
    """Phases in schedule order (from the report), else sorted from the manifest."""
    names = phase_names(_report(manifest, storage_of(spark)))
    if names is not None:
        return names
    rows = store.read(manifest).select(PHASE_COL).distinct().collect()
    return sorted(str(r[0]) for r in rows)


def export_phases(
    spark: SparkSession,
    manifest: str,
    corpus: CorpusConfig,
    out_dir: str,
    *,
    fmt: str = "parquet",
    shards: int | None = None,
    seed: int = 0,
    per_bucket: bool = False,
    overwrite: bool = False,
    store: DeltaStore | None = None,
) -> PhasedExportResult:
    """Export each phase of a phased MANIFEST into ``out_dir/phase=NAME/`` (the arguments
    of :func:`export_training_data`; ``shards`` is per phase). ``store`` defaults to the
    session's store.

    Raises:
        InvalidInputError: ``out_dir`` holds files hermes did not write, or a finished
            export without ``overwrite``; see :func:`export_training_data`.
    """
    t0 = time.perf_counter()
    store = store or get_store(spark)
    storage = storage_of(spark)
    guard_output(out_dir, "export folder", own_names=_OURS, storage=storage)
    base = out_dir.rstrip("/")
    fs, root = io.filesystem(f"{base}/{PHASES_FILE}", storage)
    if not overwrite and fs.get_file_info(root).type == pafs.FileType.File:
        raise InvalidInputError(
            f"export target {out_dir} already holds an export; pass {{overwrite}} to replace it"
        )
    results: dict[str, ExportResult] = {}
    for name in _names(spark, store, manifest):
        # the folder's own files are replaced: the index above guards a finished export
        results[name] = export_training_data(
            spark, manifest, corpus, f"{base}/phase={name}", fmt=fmt, shards=shards,
            seed=seed, per_bucket=per_bucket, overwrite=True, phase=name, store=store,
        )  # fmt: skip
    index = {
        "kind": "hermes-phase-export",
        "manifest": manifest,
        "phases": [
            {
                "name": name,
                "dir": f"phase={name}",
                "rows": r.rows,
                "docs": r.docs,
                "tokens": r.tokens,
                "files": len(r.files),
            }
            for name, r in results.items()
        ],
    }
    write_text(f"{base}/{PHASES_FILE}", json.dumps(jsonable(index), indent=1), storage=storage)
    seconds = time.perf_counter() - t0
    log.info("exported %d phases of %s into %s", len(results), manifest, out_dir)
    return PhasedExportResult(out_dir, results, f"{base}/{PHASES_FILE}", seconds)
