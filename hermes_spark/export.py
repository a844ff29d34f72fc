"""``hermes export``: materialize the sampled training data into shards, with the mixture
tools' weight files beside them (:mod:`hermes_spark.weight_files`).

Driver orchestration; the corpus is only ever read by executors, and only the files that
hold sampled documents (the manifest's ``source_file``; the driver lists the corpus and
learns the distinct files in one small job). The manifest is joined back to those rows on
``doc_id`` (computed exactly as annotate does), every selected
document is expanded to its ``repeats`` copies (``explode(sequence(1, repeats))``), and
each copy goes to shard ``pmod(h, N)`` with ``h = xxhash64(doc_id, repeat_index, seed)``.
Shard ``k`` is exactly Spark partition ``k`` (a partition key is chosen per shard so that
Spark's hash partitioning maps it there), each task sorts its own shard by
``(h, doc_id, repeat_index)`` and writes one file: a deterministic shuffle without a
global sort. Same manifest, corpus and seed ⇒ the same files, row for row.
"""

from __future__ import annotations

import json
import logging
import math
import posixpath
import re
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hermes_spark import io
from hermes_spark.config import CorpusConfig
from hermes_spark.corpus import corpus_name, list_input_files, read_corpus
from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.errors import InvalidConfigError, InvalidInputError, InvariantError
from hermes_spark.io import jsonable, report_path_for, write_text
from hermes_spark.object_stores import storage_of
from hermes_spark.outputs import guard_output
from hermes_spark.paths import canonical_file_key, canonical_file_key_col
from hermes_spark.sampled_rows import MISMATCH, positional_files, read_by_position
from hermes_spark.sampling.materialize import (
    RESERVED,
    checked_manifest,
    expand_copies,
    files_holding,
    sampled_files,
    selected_rows,
)
from hermes_spark.sampling.schedule import phase_report, phase_rows
from hermes_spark.sampling.texts import corpus_rows
from hermes_spark.sampling.weights import format_bucket_key
from hermes_spark.schema import SOURCE_COL, SOURCE_ROW_COL
from hermes_spark.weight_files import write_weight_files

log = logging.getLogger(__name__)

FORMATS = ("parquet", "jsonl")
#: Default shard size (≈ 1 GB of text) and the text bytes counted per token for it.
BYTES_PER_SHARD = 1 << 30
BYTES_PER_TOKEN = 4.0
MAX_SHARDS = 100_000
#: Threads that rename Spark's part files to their shard names.
PLACE_THREADS = 16
MIXTURE_FILE = "mixture.json"
_OURS = re.compile(
    r"^(part-\d+-of-\d+\.(parquet|jsonl)|bucket-.+|_tmp_.+|mixture\.json|"
    r"doremi_weights\.json|regmix_mixture\.csv|megatron_blend\.txt)$"
)
_SPARK_PART = re.compile(r"^part-(\d+)-")


@dataclass(frozen=True)
class ExportResult:
    """What ``hermes export`` wrote."""

    out_dir: str
    files: list[str]
    rows: int
    tokens: int
    docs: int
    seconds: float
    extra_files: list[str] = field(default_factory=list)
    #: The corpus files the export read (only those holding sampled documents when the
    #: manifest carries ``source_file``).
    files_read: list[str] = field(default_factory=list)


# ------------------------------------------------------------------- filesystem


def _fs(path: str, storage: io.Storage | None) -> tuple[pafs.FileSystem, str]:
    return io.filesystem(path, storage)


def _spark_uri(path: str) -> str:
    return io.spark_path(path)


def _check_out_dir(out_dir: str, overwrite: bool, storage: io.Storage | None) -> None:
    """Refuse, before any job, an export folder holding files hermes did not write, or a
    finished export (``mixture.json`` is written last) without ``overwrite`` (driver)."""
    guard_output(out_dir, "export folder", own_names=_OURS, storage=storage)
    fs, root = _fs(out_dir, storage)
    if not overwrite and fs.get_file_info(f"{root}/{MIXTURE_FILE}").type == pafs.FileType.File:
        raise InvalidInputError(
            f"export target {out_dir} already holds an export; pass {{overwrite}} to replace it"
        )


def _prepare_out_dir(fs: pafs.FileSystem, root: str, staged: str) -> None:
    """Empty the export folder of hermes' files but this run's staging folder ``staged``
    (driver; checked by :func:`_check_out_dir`; after the data job, so a failed job
    leaves an earlier export in place). The remains of a killed export (staging
    ``_tmp_*``, shards without ``mixture.json``) are cleared as well, so a re-run
    recovers by itself."""
    names = {
        posixpath.basename(e.path): e
        for e in fs.get_file_info(pafs.FileSelector(root))
        if posixpath.basename(e.path) != staged
    }
    if names and MIXTURE_FILE not in names:
        log.warning("export target %s holds an unfinished export: clearing it", root)
    for name, entry in names.items():
        if entry.type == pafs.FileType.Directory:
            fs.delete_dir(f"{root}/{name}")
        else:
            fs.delete_file(f"{root}/{name}")


# ------------------------------------------------------------------------ export


def _partition_keys(spark: SparkSession, n: int) -> list[int]:
    """For each Spark partition ``k < n`` a long ``v_k`` that hash partitioning sends to
    ``k`` (``pmod(murmur3(v_k), n) == k``, Spark's HashPartitioning contract)."""
    found: dict[int, int] = {}
    span = 64 * n
    start = 0
    while len(found) < n:
        rows = (
            spark.range(start, start + span)
            .select(F.col("id"), F.pmod(F.hash(F.col("id")), F.lit(n)).alias("k"))
            .groupBy("k")
            .agg(F.min("id").alias("v"))
            .collect()
        )
        for r in rows:
            found.setdefault(int(r["k"]), int(r["v"]))
        start += span
    return [found[k] for k in range(n)]


def _read_manifest_report(manifest: str, storage: io.Storage | None) -> dict[str, Any] | None:
    path = report_path_for(manifest)
    try:
        fs, inner = _fs(path, storage)
        with fs.open_input_stream(inner) as stream:
            report: dict[str, Any] = json.loads(stream.read().decode("utf-8"))
            return report
    except (OSError, FileNotFoundError, json.JSONDecodeError, ValueError):
        return None


def _bucket_keys(buckets: list[int], report: dict[str, Any] | None) -> dict[int, str]:
    if report is not None:
        level = int(report["settings"]["weights_level"])
        sizes = tuple(int(k) for k in report["levels"])
        return {b: format_bucket_key(b, level, sizes) for b in buckets}
    log.warning("no mixture report beside the manifest: naming Stage-1 buckets by packed id")
    return {b: f"id{b}" for b in buckets}


def default_shards(tokens: float, *, shard_bytes: float | None = None) -> int:
    """Shards for ``tokens`` exported tokens: about ``shard_bytes`` (default
    :data:`BYTES_PER_SHARD`) of text each, counting :data:`BYTES_PER_TOKEN` bytes of text
    per token (written Parquet is smaller)."""
    size = BYTES_PER_SHARD if shard_bytes is None else shard_bytes
    need = float(tokens) * BYTES_PER_TOKEN / float(size)
    return int(min(MAX_SHARDS, max(1, math.ceil(need))))


def _check_options(fmt: str, shards: int | None) -> None:
    if fmt not in FORMATS:
        raise InvalidConfigError(
            f"{{output_format}} must be one of {', '.join(FORMATS)}, got {fmt!r}"
        )
    if shards is None:
        return
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise InvalidConfigError(
            f"{{shards}} must be an integer in 1..{MAX_SHARDS}, got {shards!r}"
        )


def _files_to_read(
    spark: SparkSession, store: DeltaStore, corpus: CorpusConfig, man: DataFrame
) -> tuple[list[str], bool]:
    """The corpus files to read (only those holding sampled documents when the manifest
    says which) and whether they were narrowed that way (driver: listing + one small job)."""
    listed = list(list_input_files(corpus, spark, store=store).paths)
    chosen = files_holding(sampled_files(man), listed)
    if chosen is None:
        return listed, False
    log.info("export reads %d of the corpus's %d files", len(chosen), len(listed))
    return chosen, True


def _check_found(man: DataFrame, texts: DataFrame, corpus: CorpusConfig) -> None:
    missing = man.select("doc_id").join(texts.select("doc_id"), "doc_id", "left_anti")
    examples = [r[0] for r in missing.limit(5).collect()]
    if examples:
        raise InvalidInputError(
            f"{missing.count()} manifest documents are not in corpus {corpus_name(corpus)} (e.g. "
            f"{', '.join(map(repr, examples))}): export needs the corpus that was annotated "
            "(check {corpus.input}/{corpus.table}, {corpus.format}, {corpus.id_col}, "
            "{corpus.text_col})"
        )


def _bucket_totals(man: DataFrame) -> pd.DataFrame:
    totals: pd.DataFrame = (
        man.groupBy("stage1_bucket")
        .agg(
            F.count(F.lit(1)).alias("docs"),
            F.sum(F.col("repeats").cast("long")).alias("rows"),
            F.sum(F.col("repeats").cast("long") * F.col("tokens").cast("long")).alias("tokens"),
        )
        .toPandas()
    )
    return totals.sort_values("stage1_bucket")


def bucket_shards(tokens: Mapping[int, int], total: int) -> dict[int, int]:
    """Shards per Stage-1 bucket for ``--per-bucket``: ``total`` shards shared in
    proportion to each bucket's tokens (largest remainders), at least one per bucket, so
    ``max(total, len(tokens))`` files in all (driver; pure)."""
    buckets = sorted(tokens)
    if not buckets:
        return {}
    mass = sum(max(0, int(tokens[b])) for b in buckets)
    spare = max(0, int(total) - len(buckets))
    # no tokens anywhere: the spare shards are shared equally
    share = {
        b: spare * max(0, int(tokens[b])) / mass if mass else spare / len(buckets) for b in buckets
    }
    out = {b: 1 + math.floor(share[b]) for b in buckets}
    left = len(buckets) + spare - sum(out.values())
    for b in sorted(buckets, key=lambda b: (-(share[b] - math.floor(share[b])), b))[:left]:
        out[b] += 1
    return out


@dataclass(frozen=True)
class _Layout:
    """Where every copy goes: shard slots (``(bucket, shard, slot, partition key, shards
    of the bucket)``); one group of ``shards`` slots, or one group per Stage-1 bucket."""

    shards: int
    per_bucket: bool
    slot_rows: list[tuple[int, int, int, int, int]]
    seed: int

    def assign(self, df: DataFrame, slots: DataFrame) -> DataFrame:
        out = expand_copies(df, self.seed)
        bucket = F.col("stage1_bucket") if self.per_bucket else F.lit(-1).cast("long")
        counts = slots.select("_b", "_n").distinct()
        out = out.withColumn("_b", bucket).join(F.broadcast(counts), "_b")
        out = out.withColumn("_shard", F.pmod(F.col("_h"), F.col("_n")).cast("int"))
        return out.drop("_n").join(F.broadcast(slots.drop("_n")), ["_b", "_shard"])


def _layout(
    spark: SparkSession, totals: pd.DataFrame, shards: int, per_bucket: bool, seed: int
) -> tuple[_Layout, DataFrame]:
    """The shard slots: ``shards`` for the whole export, or with ``per_bucket`` the same
    total shared by the buckets' tokens (:func:`bucket_shards`)."""
    if per_bucket:
        tokens = dict(zip(totals["stage1_bucket"].astype(int), totals["tokens"], strict=True))
        counts = bucket_shards(tokens, shards)
    else:
        counts = {-1: shards}
    pkeys = _partition_keys(spark, sum(counts.values()))
    slot_rows, slot = [], 0
    for b, n in sorted(counts.items()):
        for k in range(n):
            slot_rows.append((b, k, slot, pkeys[slot], n))
            slot += 1
    schema = "_b long, _shard int, _slot int, _pkey long, _n int"
    return _Layout(shards, per_bucket, slot_rows, int(seed)), spark.createDataFrame(
        slot_rows, schema
    )


def _write_data(data: DataFrame, out_dir: str, fmt: str, corpus: CorpusConfig) -> str:
    """The shards into a staging folder (one job); a sampled row found changed fails it
    with :class:`InvalidInputError` (nothing is placed, the re-run clears the staging)."""
    tmp_name = f"_tmp_{uuid.uuid4().hex[:12]}"
    tmp_uri = f"{_spark_uri(out_dir).rstrip('/')}/{tmp_name}"
    writer = data.write.mode("error")  # "errorifexists": not on Spark Connect
    try:
        if fmt == "parquet":
            writer.parquet(tmp_uri)
        else:
            writer.option("ignoreNullFields", "false").json(tmp_uri)
    except Exception as exc:  # the row check's raise_error, or its Spark Connect twin
        found = re.search(re.escape(MISMATCH) + r": ([^\n]*?\))", str(exc))
        if found is None:
            raise
        raise InvalidInputError(
            f"corpus {corpus_name(corpus)} changed since it was annotated: "
            f"{found.group(1)}. Export needs the corpus files as annotate read them "
            "(re-annotate the changed files, or point at the corpus that was annotated)"
        ) from None
    return tmp_name


def _sampled_texts(
    spark: SparkSession,
    store: DeltaStore,
    man: DataFrame,
    corpus: CorpusConfig,
    files: list[str],
    narrowed: bool,
    total_tokens: int,
) -> tuple[DataFrame, list[str]]:
    """Every manifest row with its corpus columns (lazy) and those columns' names.

    Rows with a recorded position in a file read as plain Parquet are read by position
    (:mod:`hermes_spark.sampled_rows`: the text is not shuffled before the shards); the
    others are joined on ``doc_id`` with the files holding them, through Spark's reader.
    """
    columns = [corpus.text_col, *corpus.keep_cols] if corpus.keep_cols else None
    texts, keep = corpus_rows(read_corpus(spark, corpus, files, store=store), corpus, columns)
    clash = [c for c in keep if c in (*RESERVED, "_shard", "_b", "_slot", "_pkey")]
    if clash:
        log.warning("corpus columns %s are replaced by the manifest's", clash)
        keep = [c for c in keep if c not in clash]
    direct, rest = _by_position(man, corpus, files) if narrowed else (None, man)
    parts = []
    if direct is not None:
        schema = read_corpus(spark, corpus, files, store=store).schema  # analysis only
        parts.append(
            read_by_position(
                spark, direct, corpus, schema, keep, text_bytes=total_tokens * BYTES_PER_TOKEN
            )
        )
        held = files_holding(sampled_files(rest), files) or []
        rest_files = sorted(held)
        log.info("export reads sampled rows by position; %d file(s) joined by id", len(rest_files))
    else:
        rest_files = files
    if rest_files:
        rest_raw = read_corpus(spark, corpus, rest_files, store=store)
        texts, _ = corpus_rows(rest_raw, corpus, columns)
        texts = texts.drop(*clash)
        _check_found(rest, texts, corpus)
        joined = selected_rows(rest, texts, match_source=narrowed)
        parts.append(joined.select("doc_id", "stage1_bucket", "stage2_bucket", "repeats", *keep))
    selected = parts[0]
    for part in parts[1:]:
        selected = selected.unionByName(part)
    return selected, keep


def _by_position(
    man: DataFrame, corpus: CorpusConfig, files: list[str]
) -> tuple[DataFrame | None, DataFrame]:
    """``(rows read by position, rows joined by id)`` of the manifest (lazy), or ``(None,
    man)`` when no row can be read by position (no ``source_row``, JSON lines, ...)."""
    if SOURCE_ROW_COL not in man.columns:
        return None, man
    allowed = positional_files(corpus, files)
    if not allowed:
        return None, man
    barred = sorted({canonical_file_key(f) for f in files} - allowed)
    key = canonical_file_key_col(F.col(SOURCE_COL))
    by_pos = F.col(SOURCE_ROW_COL).isNotNull()
    if barred:  # files with deletion vectors (few): the rest are read by position
        by_pos = by_pos & ~key.isin(barred)
    by_pos = F.coalesce(by_pos, F.lit(False))
    return man.where(by_pos), man.where(~by_pos)


def export_training_data(
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
    phase: str | None = None,
    store: DeltaStore | None = None,
) -> ExportResult:
    """Materialize MANIFEST ``manifest`` from ``corpus`` into ``out_dir``.

    Writes ``part-KKKKK-of-NNNNN.parquet|jsonl`` shards (``bucket-<key>/`` folders of
    them with ``per_bucket``), ``mixture.json`` (rows, tokens and shares per Stage-1
    bucket and per shard, plus the manifest's report), ``doremi_weights.json``,
    ``regmix_mixture.csv`` and with ``per_bucket`` ``megatron_blend.txt``. Rows hold
    ``doc_id, repeat_index, stage1_bucket, stage2_bucket`` and the corpus columns (the
    text column plus ``--keep-cols`` when given, else all but the embedding column).
    When the manifest carries ``source_file`` only the corpus files holding sampled
    documents are read. ``shards`` defaults to :func:`default_shards` of the exported
    tokens (≈ 1 GB of text per shard); with ``per_bucket`` it is the total, shared by
    the buckets in proportion to their tokens (:func:`bucket_shards`, at least one each).
    ``phase`` exports that phase's rows of a phased manifest (``hermes sample --phases``)
    with its own mixture report. ``store`` defaults to the session's store.

    Raises:
        InvalidConfigError: bad format or shard count.
        InvalidInputError: not a manifest, documents missing from the corpus, or a
            non-empty output directory without ``overwrite``.
    """
    t0 = time.perf_counter()
    store = store or get_store(spark)
    _check_options(fmt, shards)
    storage = storage_of(spark)
    _check_out_dir(out_dir, overwrite, storage)
    if not store.exists(manifest):
        raise InvalidInputError(f"manifest {manifest} does not exist (run hermes sample)")
    raw, report = store.read(manifest), _read_manifest_report(manifest, storage)
    if phase is not None:
        raw, report = phase_rows(raw, phase), phase_report(report, phase)
    man = checked_manifest(raw, manifest)
    files, narrowed = _files_to_read(spark, store, corpus, man)
    totals = _bucket_totals(man)
    total_tok = int(totals["tokens"].sum()) if len(totals) else 0
    if shards is None:
        shards = default_shards(total_tok)
    buckets = [int(b) for b in totals["stage1_bucket"]]
    keys = _bucket_keys(buckets, report)
    layout, slots = _layout(spark, totals, shards, per_bucket, seed)
    slot_rows: pd.DataFrame = (
        layout.assign(man, slots)
        .groupBy("_slot")
        .agg(F.count(F.lit(1)).alias("rows"), F.sum(F.col("tokens").cast("long")).alias("tok"))
        .toPandas()
    )
    per_slot = slot_rows.set_index("_slot")
    selected, keep = _sampled_texts(spark, store, man, corpus, files, narrowed, total_tok)
    data = (
        layout.assign(selected, slots)
        .repartition(len(layout.slot_rows), "_pkey")
        .sortWithinPartitions("_h", "doc_id", "repeat_index")
        .select("doc_id", "repeat_index", "stage1_bucket", "stage2_bucket", *keep)
    )
    fs, root = _fs(out_dir, storage)
    tmp_name = _write_data(data, out_dir, fmt, corpus)
    _prepare_out_dir(fs, root, tmp_name)
    ext = "parquet" if fmt == "parquet" else "jsonl"
    placed = _place_files(fs, root, tmp_name, layout, ext, keys, data)
    mixture = _mixture(
        layout=layout,
        per_slot=per_slot,
        totals=totals,
        keys=keys,
        ext=ext,
        info={
            "kind": "hermes-export",
            "manifest": manifest,
            "corpus": corpus_name(corpus),
            **({} if phase is None else {"phase": phase}),
        },
        report=report,
        columns=["doc_id", "repeat_index", "stage1_bucket", "stage2_bucket", *keep],
        files_read=files,
    )
    blend = None
    if per_bucket:
        blend = {keys[b]: f"{root}/bucket-{keys[b]}/megatron_text_document" for b in buckets}
    shares = mixture["weights"]
    extra = (
        write_weight_files(out_dir, shares, blend_paths=blend, storage=storage) if shares else []
    )
    mixture_path = f"{out_dir.rstrip('/')}/{MIXTURE_FILE}"
    write_text(
        mixture_path, json.dumps(jsonable(mixture), indent=1, allow_nan=False), storage=storage
    )
    extra.append(mixture_path)
    seconds = time.perf_counter() - t0
    log.info("exported %d rows into %d files in %s", mixture["rows"], len(placed), out_dir)
    return ExportResult(
        out_dir,
        placed,
        int(mixture["rows"]),
        total_tok,
        int(mixture["docs"]),
        seconds,
        extra,
        files_read=list(files),
    )


def _mixture(
    *,
    layout: _Layout,
    per_slot: pd.DataFrame,
    totals: pd.DataFrame,
    keys: dict[int, str],
    ext: str,
    info: dict[str, Any],
    report: dict[str, Any] | None,
    columns: list[str],
    files_read: list[str],
) -> dict[str, Any]:
    """``mixture.json``: rows, tokens and shares per Stage-1 bucket and per shard."""
    shard_info = []
    for b, k, slot, _, n in layout.slot_rows:
        name = _shard_name(k, n, ext, keys.get(b) if layout.per_bucket else None)
        rows = int(per_slot["rows"].get(slot, 0)) if len(per_slot) else 0
        tok = int(per_slot["tok"].get(slot, 0)) if len(per_slot) else 0
        shard_info.append({"file": name, "rows": rows, "tokens": tok})
    total_tok = int(totals["tokens"].sum()) if len(totals) else 0
    stage1, shares = [], {}
    for r in totals.itertuples():
        key = keys[int(r.stage1_bucket)]
        shares[key] = int(r.tokens) / total_tok if total_tok else 0.0
        stage1.append(
            {
                "bucket": int(r.stage1_bucket),
                "key": key,
                "docs": int(r.docs),
                "rows": int(r.rows),
                "tokens": int(r.tokens),
                "share": shares[key],
            }
        )
    return {
        **info,
        "format": ext,
        "shards": len(layout.slot_rows),
        "per_bucket": layout.per_bucket,
        "seed": layout.seed,
        "rows": int(totals["rows"].sum()) if len(totals) else 0,
        "docs": int(totals["docs"].sum()) if len(totals) else 0,
        "tokens": total_tok,
        "columns": columns,
        "input_files_read": len(files_read),
        "stage1": stage1,
        "files": shard_info,
        "weights": shares,
        "report": report,
    }


def _shard_name(k: int, shards: int, ext: str, bucket_key: str | None) -> str:
    name = f"part-{k:05d}-of-{shards:05d}.{ext}"
    return f"bucket-{bucket_key}/{name}" if bucket_key is not None else name


def _place_one(fs: pafs.FileSystem, source: str | None, target: str, empty: Any) -> str:
    """Move one Spark part file to its shard name, or write an empty shard."""
    fs.create_dir(posixpath.dirname(target), recursive=True)
    if source is not None:
        fs.move(source, target)
    elif empty is not None:
        with fs.open_output_stream(target) as stream:
            pq.write_table(empty, stream)
    else:
        fs.open_output_stream(target).close()  # an empty JSONL shard
    return target


def _place_files(
    fs: pafs.FileSystem,
    root: str,
    tmp_name: str,
    layout: _Layout,
    ext: str,
    keys: dict[int, str],
    data: DataFrame,
) -> list[str]:
    """Move Spark's ``part-<partition>-*`` files to their shard names (driver; renames on
    :data:`PLACE_THREADS` threads, which matters on object stores where a rename is a
    copy); shards that received no row get an empty file, so there are always N per group."""
    tmp = f"{root}/{tmp_name}"
    by_part: dict[int, str] = {}
    for entry in fs.get_file_info(pafs.FileSelector(tmp)):
        name = posixpath.basename(entry.path)
        match = _SPARK_PART.match(name)
        if entry.type == pafs.FileType.File and match and not name.startswith((".", "_")):
            part = int(match.group(1))
            if part in by_part:
                raise InvariantError(f"Spark wrote two files for partition {part} in {tmp}")
            by_part[part] = entry.path
    empty = None
    if ext == "parquet":
        from pyspark.sql.pandas.types import to_arrow_schema

        empty = to_arrow_schema(data.schema).empty_table()
    jobs = []
    for b, k, slot, _, n in layout.slot_rows:
        bucket_key = keys.get(b) if layout.per_bucket else None
        target = f"{root}/{_shard_name(k, n, ext, bucket_key)}"
        jobs.append((by_part.get(slot), target))
    workers = max(1, min(PLACE_THREADS, len(jobs)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hermes-export") as pool:
        placed = list(pool.map(lambda job: _place_one(fs, job[0], job[1], empty), jobs))
    fs.delete_dir(tmp)
    return placed
