"""``hermes export``: materialize the sampled training data, and the weight files of the
mixture tools (DoReMi, RegMix, Megatron-LM) plus candidate mixtures.

Driver orchestration; the corpus is only ever read by executors. The manifest is joined
back to the corpus on ``doc_id`` (computed exactly as annotate does), every selected
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
import posixpath
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hermes_spark.config import CorpusConfig
from hermes_spark.delta import get_store
from hermes_spark.errors import InvalidConfigError, InvalidInputError
from hermes_spark.sampling.exports import doremi_json, megatron_blend, regmix_csv
from hermes_spark.sampling.plan import corpus_texts, first_per_id, infer_sizes, read_stats
from hermes_spark.sampling.report import jsonable, report_path_for, write_text
from hermes_spark.sampling.weights import dirichlet_mixtures, format_bucket_key

log = logging.getLogger(__name__)

FORMATS = ("parquet", "jsonl")
MANIFEST_COLUMNS = ("doc_id", "stage1_bucket", "stage2_bucket", "repeats", "tokens")
DOREMI_FILE = "doremi_weights.json"
REGMIX_FILE = "regmix_mixture.csv"
MEGATRON_FILE = "megatron_blend.txt"
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


# ------------------------------------------------------------------- filesystem


def _fs(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" in path and not path.startswith("file://"):
        fs, root = pafs.FileSystem.from_uri(path)
        return fs, root.rstrip("/")
    return pafs.LocalFileSystem(), str(Path(path.removeprefix("file://")).resolve())


def _spark_uri(path: str) -> str:
    if "://" in path:
        return path
    return f"file://{Path(path).resolve()}"


def _prepare_out_dir(fs: pafs.FileSystem, root: str, overwrite: bool) -> None:
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        fs.create_dir(root, recursive=True)
        return
    if info.type != pafs.FileType.Directory:
        raise InvalidInputError(f"export target {root} exists and is not a directory")
    entries = fs.get_file_info(pafs.FileSelector(root))
    names = {posixpath.basename(e.path): e for e in entries}
    foreign = sorted(n for n in names if not _OURS.match(n))
    if foreign:
        raise InvalidInputError(
            f"export target {root} holds other files ({', '.join(foreign[:5])}); "
            "give an empty or new directory"
        )
    if names and not overwrite:
        raise InvalidInputError(
            f"export target {root} already holds an export; pass --overwrite to replace it"
        )
    for name, entry in names.items():
        if entry.type == pafs.FileType.Directory:
            fs.delete_dir(f"{root}/{name}")
        else:
            fs.delete_file(f"{root}/{name}")


# ------------------------------------------------------------------ weights files


def write_weight_files(
    out_dir: str,
    weights: Mapping[str, float],
    *,
    blend_paths: Mapping[str, str] | None = None,
) -> list[str]:
    """Write ``doremi_weights.json``, ``regmix_mixture.csv`` and, given per-domain data
    prefixes, ``megatron_blend.txt`` into ``out_dir`` (driver; local path or URI)."""
    base = out_dir.rstrip("/")
    written = []
    for name, text in ((DOREMI_FILE, doremi_json(weights)), (REGMIX_FILE, regmix_csv(weights))):
        write_text(f"{base}/{name}", text)
        written.append(f"{base}/{name}")
    if blend_paths is not None:
        write_text(f"{base}/{MEGATRON_FILE}", megatron_blend(weights, blend_paths))
        written.append(f"{base}/{MEGATRON_FILE}")
    return written


def write_candidate_mixtures(
    spark: SparkSession,
    stats: str,
    out_dir: str,
    n: int,
    *,
    level: int = 1,
    temperature: float = 1.0,
    concentration: float = 1.0,
    seed: int = 0,
    version: str | None = None,
    levels: tuple[int, ...] | None = None,
) -> list[str]:
    """Write ``n`` Dirichlet mixtures around the token prior as ``mixture-0000.json`` ...
    (each a ``--weights`` file) plus all of them as ``regmix_mixtures.csv`` (driver; reads
    the level-``level`` rows of STATS only)."""
    store = get_store(spark)
    by_level, _chosen = read_stats(store, stats, version, level)
    sizes = infer_sizes(by_level, levels)
    mixtures = dirichlet_mixtures(
        by_level[level][["bucket", "tokens"]],
        level,
        sizes,
        n,
        temperature=temperature,
        concentration=concentration,
        seed=seed,
    )
    base = out_dir.rstrip("/")
    written = []
    for i, mix in enumerate(mixtures):
        path = f"{base}/mixture-{i:04d}.json"
        write_text(path, json.dumps(mix, indent=1))
        written.append(path)
    write_text(f"{base}/regmix_mixtures.csv", regmix_csv(mixtures))
    written.append(f"{base}/regmix_mixtures.csv")
    return written


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


def _read_manifest_report(manifest: str) -> dict[str, Any] | None:
    path = report_path_for(manifest)
    try:
        fs, inner = _fs(path)
        with fs.open_input_stream(inner) as stream:
            return json.loads(stream.read().decode("utf-8"))
    except (OSError, FileNotFoundError, json.JSONDecodeError, ValueError):
        return None


def _bucket_keys(buckets: list[int], report: dict[str, Any] | None) -> dict[int, str]:
    if report is not None:
        level = int(report["settings"]["weights_level"])
        sizes = tuple(int(k) for k in report["levels"])
        return {b: format_bucket_key(b, level, sizes) for b in buckets}
    log.warning("no mixture report beside the manifest: naming Stage-1 buckets by packed id")
    return {b: f"id{b}" for b in buckets}


def export_training_data(
    spark: SparkSession,
    manifest: str,
    corpus: CorpusConfig,
    out_dir: str,
    *,
    fmt: str = "parquet",
    shards: int = 8,
    seed: int = 0,
    per_bucket: bool = False,
    overwrite: bool = False,
) -> ExportResult:
    """Materialize MANIFEST ``manifest`` from ``corpus`` into ``out_dir``.

    Writes ``part-KKKKK-of-NNNNN.parquet|jsonl`` shards (``bucket-<key>/`` folders of
    them with ``per_bucket``), ``mixture.json`` (rows, tokens and shares per Stage-1
    bucket and per shard, plus the manifest's report), ``doremi_weights.json``,
    ``regmix_mixture.csv`` and with ``per_bucket`` ``megatron_blend.txt``. Rows hold
    ``doc_id, repeat_index, stage1_bucket, stage2_bucket`` and the corpus columns (the
    text column plus ``--keep-cols`` when given, else all but the embedding column).

    Raises:
        InvalidConfigError: bad format or shard count.
        InvalidInputError: not a manifest, documents missing from the corpus, or a
            non-empty output directory without ``overwrite``.
    """
    t0 = time.perf_counter()
    if fmt not in FORMATS:
        raise InvalidConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= 100_000:
        raise InvalidConfigError(f"--shards must be an integer in 1..100000, got {shards!r}")
    store = get_store(spark)
    if not store.exists(manifest):
        raise InvalidInputError(f"manifest {manifest} does not exist (run hermes sample)")
    man = store.read(manifest)
    lacking = set(MANIFEST_COLUMNS) - set(man.columns)
    if lacking:
        raise InvalidInputError(f"{manifest} is not a manifest: it lacks {sorted(lacking)}")
    report = _read_manifest_report(manifest)
    man = man.select(*MANIFEST_COLUMNS).where(F.col("repeats") >= 1)
    columns = [corpus.text_col, *corpus.keep_cols] if corpus.keep_cols else None
    texts, keep = corpus_texts(spark, corpus, columns)
    clash = [
        c
        for c in keep
        if c
        in (
            "stage1_bucket",
            "stage2_bucket",
            "repeats",
            "repeat_index",
            "_h",
            "_shard",
            "_b",
            "_slot",
            "_pkey",
        )
    ]
    if clash:
        log.warning("corpus columns %s are replaced by the manifest's", clash)
        texts = texts.drop(*clash)
        keep = [c for c in keep if c not in clash]

    missing = man.select("doc_id").join(texts.select("doc_id"), "doc_id", "left_anti")
    examples = [r[0] for r in missing.limit(5).collect()]
    if examples:
        raise InvalidInputError(
            f"{missing.count()} manifest documents are not in corpus {corpus.input} (e.g. "
            f"{', '.join(map(repr, examples))}): export needs the corpus that was annotated "
            "(check --input, --input-format, --id-col, --text-col)"
        )

    buckets = sorted(int(r[0]) for r in man.select("stage1_bucket").distinct().collect())
    keys = _bucket_keys(buckets, report)
    groups = buckets if per_bucket else [None]
    n_parts = len(groups) * shards
    pkeys = _partition_keys(spark, n_parts)
    slot_rows = [
        (b if b is not None else -1, k, gi * shards + k, pkeys[gi * shards + k])
        for gi, b in enumerate(groups)
        for k in range(shards)
    ]
    slots = spark.createDataFrame(slot_rows, "_b long, _shard int, _slot int, _pkey long")

    h = F.xxhash64(F.col("doc_id"), F.col("repeat_index"), F.lit(int(seed)).cast("long"))

    def copies(df: DataFrame) -> DataFrame:
        out = df.withColumn("repeat_index", F.explode(F.sequence(F.lit(1), F.col("repeats"))))
        out = (
            out.withColumn("_h", h)
            .withColumn("_shard", F.pmod(F.col("_h"), F.lit(shards)).cast("int"))
            .withColumn("_b", F.col("stage1_bucket") if per_bucket else F.lit(-1).cast("long"))
        )
        return out.join(F.broadcast(slots), ["_b", "_shard"])

    # Shard sizes from the manifest alone (no corpus): for mixture.json.
    per_slot = (
        copies(man)
        .groupBy("_slot")
        .agg(F.count(F.lit(1)).alias("rows"), F.sum(F.col("tokens").cast("long")).alias("tok"))
        .toPandas()
        .set_index("_slot")
    )
    per_bucket_rows = (
        man.groupBy("stage1_bucket")
        .agg(
            F.count(F.lit(1)).alias("docs"),
            F.sum(F.col("repeats").cast("long")).alias("rows"),
            F.sum(F.col("repeats").cast("long") * F.col("tokens").cast("long")).alias("tokens"),
        )
        .toPandas()
    )

    selected = first_per_id(texts.join(man.drop("tokens"), "doc_id"))
    data = (
        copies(selected)
        .repartition(n_parts, "_pkey")
        .sortWithinPartitions("_h", "doc_id", "repeat_index")
        .select("doc_id", "repeat_index", "stage1_bucket", "stage2_bucket", *keep)
    )
    fs, root = _fs(out_dir)
    _prepare_out_dir(fs, root, overwrite)
    tmp_name = f"_tmp_{uuid.uuid4().hex[:12]}"
    tmp_uri = f"{_spark_uri(out_dir).rstrip('/')}/{tmp_name}"
    writer = data.write.mode("error")  # "errorifexists": not on Spark Connect
    if fmt == "parquet":
        writer.parquet(tmp_uri)
    else:
        writer.option("ignoreNullFields", "false").json(tmp_uri)
    ext = "parquet" if fmt == "parquet" else "jsonl"
    files = _place_files(fs, root, tmp_name, slot_rows, shards, ext, keys, per_bucket, data)

    shard_info = []
    for b, k, slot, _ in slot_rows:
        name = _shard_name(k, shards, ext, keys.get(b) if per_bucket else None)
        rows = int(per_slot["rows"].get(slot, 0)) if len(per_slot) else 0
        tok = int(per_slot["tok"].get(slot, 0)) if len(per_slot) else 0
        shard_info.append({"file": name, "rows": rows, "tokens": tok})
    total_rows = int(per_bucket_rows["rows"].sum()) if len(per_bucket_rows) else 0
    total_tok = int(per_bucket_rows["tokens"].sum()) if len(per_bucket_rows) else 0
    total_docs = int(per_bucket_rows["docs"].sum()) if len(per_bucket_rows) else 0
    shares = {
        keys[int(r["stage1_bucket"])]: (int(r["tokens"]) / total_tok if total_tok else 0.0)
        for _, r in per_bucket_rows.sort_values("stage1_bucket").iterrows()
    }
    stage1 = [
        {
            "bucket": int(r["stage1_bucket"]),
            "key": keys[int(r["stage1_bucket"])],
            "docs": int(r["docs"]),
            "rows": int(r["rows"]),
            "tokens": int(r["tokens"]),
            "share": shares[keys[int(r["stage1_bucket"])]],
        }
        for _, r in per_bucket_rows.sort_values("stage1_bucket").iterrows()
    ]
    blend = None
    if per_bucket:
        blend = {keys[b]: f"{root}/bucket-{keys[b]}/megatron_text_document" for b in buckets}
    extra = write_weight_files(out_dir, shares, blend_paths=blend) if shares else []
    mixture = {
        "kind": "hermes-export",
        "manifest": manifest,
        "corpus": corpus.input,
        "format": ext,
        "shards": shards,
        "per_bucket": per_bucket,
        "seed": int(seed),
        "rows": total_rows,
        "docs": total_docs,
        "tokens": total_tok,
        "columns": ["doc_id", "repeat_index", "stage1_bucket", "stage2_bucket", *keep],
        "stage1": stage1,
        "files": shard_info,
        "weights": shares,
        "report": report,
    }
    write_text(
        f"{out_dir.rstrip('/')}/{MIXTURE_FILE}",
        json.dumps(jsonable(mixture), indent=1, allow_nan=False),
    )
    extra.append(f"{out_dir.rstrip('/')}/{MIXTURE_FILE}")
    seconds = time.perf_counter() - t0
    log.info(
        "exported %d rows (%d docs) into %d files in %s",
        total_rows,
        total_docs,
        len(files),
        out_dir,
    )
    return ExportResult(out_dir, files, total_rows, total_tok, total_docs, seconds, extra)


def _shard_name(k: int, shards: int, ext: str, bucket_key: str | None) -> str:
    name = f"part-{k:05d}-of-{shards:05d}.{ext}"
    return f"bucket-{bucket_key}/{name}" if bucket_key is not None else name


def _place_files(
    fs: pafs.FileSystem,
    root: str,
    tmp_name: str,
    slot_rows: list[tuple[int, int, int, int]],
    shards: int,
    ext: str,
    keys: dict[int, str],
    per_bucket: bool,
    data: DataFrame,
) -> list[str]:
    """Move Spark's ``part-<partition>-*`` files to their shard names (driver, renames);
    shards that received no row get an empty file, so there are always N per group."""
    tmp = f"{root}/{tmp_name}"
    by_part: dict[int, str] = {}
    for entry in fs.get_file_info(pafs.FileSelector(tmp)):
        name = posixpath.basename(entry.path)
        match = _SPARK_PART.match(name)
        if entry.type == pafs.FileType.File and match and not name.startswith((".", "_")):
            part = int(match.group(1))
            if part in by_part:
                raise RuntimeError(f"Spark wrote two files for partition {part} in {tmp}")
            by_part[part] = entry.path
    placed = []
    for b, k, slot, _ in slot_rows:
        rel = _shard_name(k, shards, ext, keys.get(b) if per_bucket else None)
        target = f"{root}/{rel}"
        fs.create_dir(posixpath.dirname(target), recursive=True)
        if slot in by_part:
            fs.move(by_part[slot], target)
        elif ext == "parquet":
            from pyspark.sql.pandas.types import to_arrow_schema

            schema = to_arrow_schema(data.schema)
            with fs.open_output_stream(target) as stream:
                pq.write_table(schema.empty_table(), stream)
        else:
            fs.open_output_stream(target).close()  # an empty JSONL shard
        placed.append(target)
    fs.delete_dir(tmp)
    return placed
