"""Corpus readers, column checks, document ids, reject reasons and duplicate handling.

Driver side: builds lazy DataFrames and checks schemas before any heavy job runs. Every
per-row decision is a native Column expression (no Python per row).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from hermes_spark import io
from hermes_spark.config import CorpusConfig
from hermes_spark.errors import InvalidInputError
from hermes_spark.object_stores import storage_of
from hermes_spark.paths import canonical_file_key, canonical_file_key_col
from hermes_spark.schema import REASON_COL, REJECT_REASONS, SOURCE_COL, SOURCE_ROW_COL

if TYPE_CHECKING:
    from hermes_spark.delta import DeltaStore

log = logging.getLogger(__name__)

__all__ = ["REASON_COL", "REJECT_REASONS"]

CORRUPT_COL = "_corrupt_record"
ORDER_COL = "_order"
_SUFFIXES = {"parquet": (".parquet",), "json": (".json", ".jsonl", ".json.gz", ".jsonl.gz")}
_NUMERIC = (
    T.ByteType,
    T.ShortType,
    T.IntegerType,
    T.LongType,
    T.FloatType,
    T.DoubleType,
    T.DecimalType,
)
_INTEGRAL = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)


@dataclass(frozen=True)
class InputFiles:
    """The data files of a corpus, in a stable order (the unit of chunked annotation)."""

    paths: tuple[str, ...]
    #: ``(uri, size, mtime_ns)`` of each path, same order (the annotate ledger's key).
    entries: tuple[io.FileEntry, ...] = ()

    def chunks(self, files_per_chunk: int) -> list[tuple[str, ...]]:
        """Consecutive groups of at most ``files_per_chunk`` files."""
        return [
            self.paths[i : i + files_per_chunk] for i in range(0, len(self.paths), files_per_chunk)
        ]


def chunk_entries(
    entries: Sequence[io.FileEntry], files_per_chunk: int
) -> list[tuple[io.FileEntry, ...]]:
    """Consecutive groups of at most ``files_per_chunk`` entries, in URI order (driver).

    Annotate chunks only the files its ledger does not hold yet, so adding a file in the
    middle of the sorted listing changes no finished chunk (they are not re-formed).
    """
    ordered = sorted(entries, key=lambda e: e.uri)
    return [
        tuple(ordered[i : i + files_per_chunk]) for i in range(0, len(ordered), files_per_chunk)
    ]


def corpus_name(cfg: CorpusConfig) -> str:
    """How messages name the corpus: its catalog table, else its ``--input``."""
    return cfg.table or cfg.input or "<no corpus>"


def list_input_files(
    cfg: CorpusConfig, spark: SparkSession | None = None, *, store: DeltaStore | None = None
) -> InputFiles:
    """List the corpus's data files on the driver (names, sizes, mtimes; no data read).

    Files and directories: any URI :mod:`hermes_spark.io` understands. A Delta corpus
    (``--input-format delta``) or a catalog table (``--input-table``) lists its *current*
    files through the table's own reader (removed files excluded). ``store`` defaults to
    the session's store (built only for a Delta corpus).
    """
    storage = storage_of(spark)
    if cfg.table:
        if spark is None:
            raise InvalidInputError("a catalog-table corpus needs a Spark session")
        return _spark_listed(_table_reader(spark, cfg).inputFiles(), storage=storage)
    if not cfg.input:
        raise InvalidInputError(
            "no corpus given: pass {corpus.input} (a path) or {corpus.table} (a catalog table)"
        )
    if spark is not None:
        _JSON_SCHEMAS.pop(_json_key(spark, cfg), None)  # a new run infers afresh
    if cfg.format == "delta":
        if not io.exists(io.join(cfg.input, "_delta_log"), storage=storage):
            raise InvalidInputError(f"corpus {cfg.input} is not a Delta table (no _delta_log)")
        if spark is not None and _native_delta(_session_store(spark, store=store)):
            return _spark_listed(
                _table_reader(spark, cfg).inputFiles(), delta=cfg.input, storage=storage
            )
        from deltalake import DeltaTable

        _check_embedded_readable(cfg.input)
        return _delta_input_files(DeltaTable(cfg.input))
    if _GLOB.search(cfg.input) and not io.exists(cfg.input, storage=storage):
        files = _glob_files(cfg, spark)
    elif not io.exists(cfg.input, storage=storage):
        raise InvalidInputError(f"corpus {cfg.input} does not exist")
    else:
        files = io.list_files(cfg.input, _SUFFIXES[cfg.format], storage=storage)
    if not files:
        raise InvalidInputError(
            f"corpus {cfg.input} holds no {cfg.format} files "
            f"(looked for names ending in {', '.join(_SUFFIXES[cfg.format])})"
        )
    return InputFiles(tuple(f.uri for f in files), tuple(files))


#: Hadoop glob characters (``*``, ``?``, ``[ab]``, ``{a,b}``) as spark.read expands them.
_GLOB = re.compile(r"[*?\[{]")


def _glob_files(cfg: CorpusConfig, spark: SparkSession | None) -> list[io.FileEntry]:
    """The data files a Hadoop glob in ``--input`` names, listed by Spark exactly as
    ``spark.read`` would expand it (driver; no data read)."""
    pattern = cfg.input or ""
    if spark is None:
        raise InvalidInputError(
            f"corpus {pattern}: a glob needs a Spark session", key="corpus.input"
        )
    try:
        uris = spark.read.format("text").load(io.spark_path(pattern)).inputFiles()
    except Exception as exc:  # Spark's PATH_NOT_FOUND, or its Spark Connect twin
        if "PATH_NOT_FOUND" not in str(exc) and "does not exist" not in str(exc):
            raise
        raise InvalidInputError(f"corpus {pattern}: the glob matches no file") from None
    suffixes = _SUFFIXES[cfg.format]
    listed = _spark_listed(
        [u for u in uris if u.endswith(suffixes)], storage=storage_of(spark)
    ).entries
    return list(listed)


def _delta_input_files(table: object) -> InputFiles:
    """The current files of a Delta corpus with sizes and mtimes from its log (no listing)."""
    uris = table.file_uris()  # type: ignore[attr-defined]
    actions = table.get_add_actions(flatten=True)  # type: ignore[attr-defined]
    sizes = actions.column("size_bytes").to_pylist()
    times = actions.column("modification_time").to_pylist()
    entries = []
    for uri, size, mtime in zip(uris, sizes, times, strict=True):
        ms = int(mtime.timestamp() * 1000) if hasattr(mtime, "timestamp") else int(mtime or 0)
        entries.append(io.FileEntry(uri, int(size or 0), ms * 1_000_000))
    entries.sort(key=lambda e: e.uri)
    return InputFiles(tuple(e.uri for e in entries), tuple(entries))


def _native_delta(store: DeltaStore) -> bool:
    """True when this run's Delta engine is native (delta-spark reads the corpus)."""
    return store.name == "native"


def _session_store(spark: SparkSession, *, store: DeltaStore | None = None) -> DeltaStore:
    """``store``, else the session's (imported here: the Delta package reads corpora)."""
    from hermes_spark.delta import get_store

    return store or get_store(spark)


#: Delta reader features whose files cannot be read as plain Parquet.
_NEEDS_DELTA_READER = ("deletionVectors", "columnMapping")


def _check_embedded_readable(uri: str) -> None:
    """Refuse a Delta corpus whose files do not mean what they hold as plain Parquet
    (deletion vectors, column mapping) when no native Delta reader is here."""
    from deltalake import DeltaTable

    table = DeltaTable(uri)
    protocol = table.protocol()
    blocked = sorted(set(protocol.reader_features or ()) & set(_NEEDS_DELTA_READER))
    mapping = table.metadata().configuration.get("delta.columnMapping.mode", "none")
    if mapping != "none" and "columnMapping" not in blocked:
        blocked.append("columnMapping")
    if blocked:
        raise InvalidInputError(
            f"corpus {uri} is a Delta table using {', '.join(blocked)}, which only the "
            "native Delta reader reads correctly: run with native Delta (`make setup` "
            "fetches its jars; config delta.engine: native or auto)"
        )


def _spark_listed(
    uris: Sequence[str], delta: str | None = None, *, storage: io.Storage | None = None
) -> InputFiles:
    """:class:`InputFiles` of files a Spark table reader listed, with sizes and mtimes
    from the Delta log when it is one (``delta``), else one stat per file."""
    known: dict[str, io.FileEntry] = {}
    if delta is not None:
        try:
            from deltalake import DeltaTable

            for e in _delta_input_files(DeltaTable(delta)).entries:
                known[canonical_file_key(e.uri)] = e
        except Exception as exc:  # the log is readable by Spark; stats are a convenience
            log.info("Delta log of %s not read by delta-rs (%s): stat per file", delta, exc)
    entries = []
    for uri in sorted(uris):
        hit = known.get(canonical_file_key(uri))
        if hit is None:
            listed = io.list_files(uri, storage=storage)
            hit = listed[0] if listed else io.FileEntry(uri, 0, 0)
        entries.append(io.FileEntry(uri, hit.size, hit.mtime_ns))
    return InputFiles(tuple(e.uri for e in entries), tuple(entries))


def _table_reader(spark: SparkSession, cfg: CorpusConfig) -> DataFrame:
    """The whole corpus through its table reader (deletion vectors, column mapping and
    removed files respected)."""
    if cfg.table:
        if not spark.catalog.tableExists(cfg.table):
            raise InvalidInputError(
                f"corpus table {cfg.table} does not exist in the catalog (check it and the "
                "session's catalog settings)",
                key="corpus.table",
            )
        return spark.read.table(cfg.table)
    return spark.read.format("delta").load(io.spark_path(cfg.input or ""))


def read_corpus(
    spark: SparkSession,
    cfg: CorpusConfig,
    files: Sequence[str] | None = None,
    *,
    store: DeltaStore | None = None,
) -> DataFrame:
    """A lazy DataFrame over ``files`` of the corpus (None: all of it, listed now).

    JSON lines keep unparsable lines as corrupt records. A catalog table or a natively
    read Delta corpus is read through its table reader (deletion vectors respected),
    restricted to ``files`` when given; files are matched by :func:`canonical_file_key`,
    so any spelling of a listed file (delta-rs, Spark, ``s3``/``s3a``) selects it.
    ``store`` defaults to the session's store (built only for a Delta corpus).
    """
    if cfg.table or (cfg.format == "delta" and _native_delta(_session_store(spark, store=store))):
        reader = _table_reader(spark, cfg)
        if files is None:
            return reader
        wanted = sorted({canonical_file_key(f) for f in files})
        return reader.where(file_key(F.col("_metadata.file_path")).isin(wanted))
    if files is None:
        files = list_input_files(cfg, spark, store=store).paths
    if cfg.format == "json":
        json_reader = spark.read.option("mode", "PERMISSIVE").option(
            "columnNameOfCorruptRecord", CORRUPT_COL
        )
        key = _json_key(spark, cfg)
        if key not in _JSON_SCHEMAS:  # inferred once per run: a pass over these files
            inferred = json_reader.json(io.spark_paths(files)).schema
            if CORRUPT_COL not in inferred.fieldNames():  # later files may hold bad lines
                inferred = inferred.add(CORRUPT_COL, T.StringType())
            _JSON_SCHEMAS[key] = inferred
        return json_reader.schema(_JSON_SCHEMAS[key]).json(io.spark_paths(files))
    return spark.read.parquet(*io.spark_paths(files))


#: The JSON schema inferred for each ``(session, corpus)`` in this run. Inference reads
#: every line of the files it is given, so it runs once (on the first files read, e.g.
#: annotate's pending files) and every later read of the run reuses it; a new listing
#: (:func:`list_input_files`, once per run) forgets it.
_JSON_SCHEMAS: dict[tuple[int, str], T.StructType] = {}


def _json_key(spark: SparkSession, cfg: CorpusConfig) -> tuple[int, str]:
    return id(spark), cfg.input or ""


def check_columns(schema: T.StructType, cfg: CorpusConfig, *, embedding_dim: int | None) -> None:
    """Raise :class:`InvalidInputError` naming every missing or mistyped column."""
    fields = {f.name: f.dataType for f in schema.fields}
    problems: list[str] = []

    def need(col: str | None, role: str, ok: tuple[type, ...] | None = None) -> None:
        if col is None:
            return
        if col not in fields:
            problems.append(f"{role} column {col!r} is missing")
        elif ok is not None and not isinstance(fields[col], ok):
            problems.append(f"{role} column {col!r} has type {fields[col].simpleString()}")

    need(cfg.text_col, "text", (T.StringType,))
    if cfg.id_col in fields and isinstance(fields[cfg.id_col], T.ArrayType | T.MapType):
        problems.append(f"id column {cfg.id_col!r} has type {fields[cfg.id_col].simpleString()}")
    need(cfg.quality_col, "quality", _NUMERIC)
    need(cfg.tokens_col, "tokens", _INTEGRAL)
    need(cfg.embedding_col, "embedding", (T.ArrayType,))
    if cfg.embedding_col in fields and isinstance(fields[cfg.embedding_col], T.ArrayType):
        element = cast(T.ArrayType, fields[cfg.embedding_col]).elementType
        if not isinstance(element, T.FloatType | T.DoubleType):
            problems.append(
                f"embedding column {cfg.embedding_col!r} must be array<float>, "
                f"got {fields[cfg.embedding_col].simpleString()}"
            )
    for col in cfg.keep_cols:
        need(col, "keep")
    if problems:
        available = ", ".join(n for n in fields if n != CORRUPT_COL) or "none"
        raise InvalidInputError(
            f"corpus {cfg.input or 'frame'}: {'; '.join(problems)}. Columns present: {available}. "
            "Point {corpus.text_col}/{corpus.id_col}/{corpus.quality_col}/{corpus.tokens_col}/"
            "{corpus.embedding_col} at the right columns."
        )
    del embedding_dim  # lengths are checked per row by reject_reason


def doc_id_column(schema: T.StructType, cfg: CorpusConfig) -> Column:
    """``doc_id``: the id column cast to string, else a SHA-256 of the text (deterministic).

    Unparsable JSON lines get ``unreadable:<hash of the line>`` so their rejects are traceable.
    """
    if cfg.id_col in schema.fieldNames():
        doc_id = F.col(cfg.id_col).cast("string")
    else:
        doc_id = F.sha2(F.coalesce(F.col(cfg.text_col), F.lit("")), 256).substr(1, 32)
    if CORRUPT_COL in schema.fieldNames():
        # an unparsable JSON line keeps a stable id (hash of its raw bytes) in the rejects
        corrupt = F.col(CORRUPT_COL)
        raw_id = F.concat(F.lit("unreadable:"), F.sha2(corrupt, 256).substr(1, 32))
        doc_id = F.when(corrupt.isNotNull(), raw_id).otherwise(doc_id)
    return doc_id


def reject_reason(schema: T.StructType, cfg: CorpusConfig, embedding_dim: int | None) -> Column:
    """Why a row cannot be annotated (null when it can): one Column expression."""
    text = F.col(cfg.text_col)
    reason = F.when(F.lit(False), F.lit(None).cast("string"))
    if CORRUPT_COL in schema.fieldNames():
        reason = F.when(F.col(CORRUPT_COL).isNotNull(), F.lit("unreadable_record"))
    reason = reason.when(F.col("doc_id").isNull(), F.lit("null_id"))
    reason = reason.when(text.isNull(), F.lit("null_text"))
    reason = reason.when(text.rlike(r"^[\s\p{Z}]*$"), F.lit("empty_text"))
    if cfg.tokens_col:
        tokens = F.col(cfg.tokens_col)
        reason = reason.when(
            tokens.isNull() | (tokens < 0) | (tokens > F.lit(2**31 - 1)), F.lit("bad_token_count")
        )
    if cfg.embedding_col:
        emb = F.col(cfg.embedding_col)
        reason = reason.when(emb.isNull(), F.lit("null_embedding"))
        if embedding_dim is not None:
            reason = reason.when(F.size(emb) != embedding_dim, F.lit("wrong_embedding_length"))
        inf = F.lit(float("inf"))
        reason = reason.when(
            F.exists(emb, lambda x: x.isNull() | F.isnan(x) | (F.abs(x) == inf)),
            F.lit("non_finite_embedding"),
        )
    return reason


def file_columns_available(df: DataFrame) -> bool:
    """True when ``df`` reads files directly, so ``_metadata.file_path`` resolves.

    Analysis only (no job). Spark logs a failed resolution at ERROR before raising; that
    expected failure is silenced here.
    """
    quiet = logging.getLogger("DataFrameQueryContextLogger")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        df.select(F.col("_metadata.file_path")).schema  # noqa: B018 - forces analysis
    except Exception:
        return False
    finally:
        quiet.setLevel(level)
    return True


def prepare(
    df: DataFrame,
    cfg: CorpusConfig,
    embedding_dim: int | None,
    *,
    passthrough: Sequence[str] | None = None,
) -> DataFrame:
    """Normalise a raw corpus frame to the annotate input.

    Columns: ``doc_id, text, [embedding], [n_tokens], [quality], keep__<col>...,
    reason, source_file, source_row, _order``. ``passthrough`` names the corpus columns
    carried along (default: ``cfg.keep_cols``). ``_order`` = (file, block, content hash)
    is a position that does not depend on split sizes or executor count, so "first of
    duplicate ids" is the same on every run; ``source_file`` is null for frames not read
    from files, ``source_row`` also for files without a row index (JSON lines).
    """
    schema = df.schema
    with_id = df.withColumn("doc_id", doc_id_column(schema, cfg))
    keep = cfg.keep_cols if passthrough is None else tuple(passthrough)
    cols = [
        F.col("doc_id"),
        F.col(cfg.text_col).alias("text"),
    ]
    if cfg.embedding_col:
        cols.append(F.col(cfg.embedding_col).cast("array<float>").alias("embedding"))
    if cfg.tokens_col:
        tokens = F.col(cfg.tokens_col)
        fits = tokens.isNotNull() & (tokens >= 0) & (tokens <= F.lit(2**31 - 1))
        cols.append(F.when(fits, tokens.cast("int")).alias("n_tokens"))
    if cfg.quality_col:
        cols.append(F.col(cfg.quality_col).cast("double").alias("quality"))
    cols += [F.col(c).alias(keep_name(c)) for c in keep]
    cols.append(reject_reason(with_id.schema, cfg, embedding_dim).alias(REASON_COL))
    order = stable_order(df)
    cols.append(order.getField("file").alias(SOURCE_COL))
    cols.append(order.getField("row").alias(SOURCE_ROW_COL))
    cols.append(order.alias(ORDER_COL))
    return with_id.select(*cols)


def stable_order(df: DataFrame) -> Column:
    """A row's position that no split size, executor count or re-run changes (lazy).

    ``struct(file, row, content, tie)``. Parquet: the row index inside its file
    (``_metadata.row_index``), so "first" is the first row of the first file. Sources
    without a row index (JSON lines): the file, then a hash of the whole record, so the
    keeper is the same whatever the splits (not necessarily the earliest line); ``tie``
    only separates records identical in every column, where either copy gives the same
    output. Frames not read from files order by content alone.
    """
    hashable = [F.col(f"`{f.name}`") for f in df.schema.fields if not _holds_map(f.dataType)] or [
        F.lit(0)
    ]
    content = F.xxhash64(*hashable)
    tie = F.monotonically_increasing_id()
    if not file_columns_available(df):
        file, row = F.lit(None).cast("string"), F.lit(None).cast("long")
    else:
        file = F.col("_metadata.file_path")
        meta = df.select("_metadata").schema["_metadata"].dataType
        has_index = isinstance(meta, T.StructType) and "row_index" in meta.fieldNames()
        row = F.col("_metadata.row_index") if has_index else F.lit(None).cast("long")
        if has_index:
            content, tie = F.lit(0).cast("long"), F.lit(0).cast("long")
    return F.struct(
        file.alias("file"), row.alias("row"), content.alias("content"), tie.alias("tie")
    )


def _holds_map(data_type: T.DataType) -> bool:
    if isinstance(data_type, T.MapType):
        return True
    if isinstance(data_type, T.ArrayType):
        return _holds_map(data_type.elementType)
    if isinstance(data_type, T.StructType):
        return any(_holds_map(f.dataType) for f in data_type.fields)
    return False


def keep_name(col: str) -> str:
    """Name a ``--keep-cols`` column travels under until the codes table (so keeping e.g.
    the text column cannot collide with the working columns ``text``, ``doc_id``, ...)."""
    return f"keep__{col}"


def duplicate_losers(prepared: DataFrame) -> DataFrame:
    """``(doc_id, _order)`` of every valid row that repeats an earlier row's id.

    Only ids and positions are shuffled (never texts or vectors); the first row in input
    order (file path, then position in the file) is kept.
    """
    valid = prepared.where(F.col(REASON_COL).isNull()).select("doc_id", ORDER_COL)
    firsts = (
        valid.groupBy("doc_id")
        .agg(F.count(F.lit(1)).alias("n"), F.min(ORDER_COL).alias("first"))
        .where(F.col("n") > 1)
        .select("doc_id", "first")
    )
    return (
        valid.join(firsts, "doc_id")
        .where(F.col(ORDER_COL) != F.col("first"))
        .select("doc_id", ORDER_COL)
    )


def file_key(path: Column) -> Column:
    """A file's URI in its canonical form (:func:`hermes_spark.paths.canonical_file_key_col`)."""
    return canonical_file_key_col(path)


def chunk_of_files(spark: SparkSession, chunks: Sequence[tuple[int, Sequence[str]]]) -> DataFrame:
    """``(file, chunk)`` for every data file of the given ``(index, files)`` chunks (driver).

    File URIs come from Spark's own listing (the text source: no data or schema read), so
    they match ``_metadata.file_path`` after :func:`file_key`. Holds one row per input file.
    """
    rows = [
        (uri, index)
        for index, files in chunks
        for uri in spark.read.format("text").load(io.spark_paths(files)).inputFiles()
    ]
    keyed = spark.createDataFrame(rows, "file string, chunk int")
    return keyed.select(file_key(F.col("file")).alias("file"), "chunk")


def listed_files(spark: SparkSession, paths: Sequence[str]) -> DataFrame:
    """``file`` keys (:func:`file_key`) of the corpus's data files as listed now (driver
    listing through the text source, no data read; one row per file)."""
    uris = spark.read.format("text").load(io.spark_paths(paths)).inputFiles()
    listed = spark.createDataFrame([(uri,) for uri in uris], "file string")
    return listed.select(file_key(F.col("file")).alias("file"))


def cross_chunk_duplicates(prepared: DataFrame, file_chunks: DataFrame) -> DataFrame:
    """``(doc_id, n, first_chunk, last_chunk)`` of every valid id that occurs more than once.

    ``prepared`` spans the files of several chunks; only ids and chunk numbers are shuffled.
    The copy in the lowest chunk wins (inside that chunk: :func:`duplicate_losers`).
    """
    valid = prepared.where(F.col(REASON_COL).isNull()).select(
        "doc_id", file_key(F.col(f"{ORDER_COL}.file")).alias("file")
    )
    return (
        valid.join(F.broadcast(file_chunks), "file")
        .groupBy("doc_id")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.min("chunk").alias("first_chunk"),
            F.max("chunk").alias("last_chunk"),
        )
        .where(F.col("n") > 1)
    )


def reject_later_copies(prepared: DataFrame, duplicates: DataFrame, chunk: int) -> DataFrame:
    """Mark valid rows of ``chunk`` whose id's first copy is in an earlier chunk as
    ``duplicate_doc_id`` (``duplicates`` from :func:`cross_chunk_duplicates`)."""
    earlier = duplicates.where(F.col("first_chunk") < chunk).select(
        "doc_id", F.lit(True).alias("_later")
    )
    return (
        prepared.join(earlier, "doc_id", "left")
        .withColumn(
            REASON_COL,
            F.coalesce(F.col(REASON_COL), F.when(F.col("_later"), F.lit("duplicate_doc_id"))),
        )
        .drop("_later")
    )


def apply_duplicates(prepared: DataFrame, losers: DataFrame) -> DataFrame:
    """Mark duplicate losers with the ``duplicate_doc_id`` reject reason."""
    marked = losers.select("doc_id", ORDER_COL, F.lit(True).alias("_dup"))
    return (
        prepared.join(marked, ["doc_id", ORDER_COL], "left")
        .withColumn(
            REASON_COL,
            F.coalesce(
                F.col(REASON_COL),
                F.when(F.col("_dup"), F.lit("duplicate_doc_id")),
            ),
        )
        .drop("_dup")
    )


def embedding_lengths(raw: DataFrame, col: str, probe_rows: int = 10_000) -> DataFrame:
    """Counts ``(n, count)`` of the vector lengths among the first ``probe_rows`` rows (lazy).

    The length is taken before the limit, so the limit's exchange moves one int per row
    to its single task instead of whole rows (vectors, text).
    """
    lengths = raw.select(F.when(F.col(col).isNotNull(), F.size(col)).alias("n"))
    return lengths.limit(probe_rows).where(F.col("n").isNotNull()).groupBy("n").count()


def embedding_col_dim(raw: DataFrame, col: str, probe_rows: int = 10_000) -> int:
    """The dimension of given vectors: the most common length among the first rows.

    Rows of any other length are then rejected (``wrong_embedding_length``).
    """
    row = embedding_lengths(raw, col, probe_rows).orderBy(F.col("count").desc(), "n").first()
    if row is None:
        raise InvalidInputError(f"embedding column {col!r} holds no vectors")
    return int(row["n"])


def require_rows(df: DataFrame, cfg: CorpusConfig) -> None:
    """Raise :class:`InvalidInputError` when the corpus holds no rows at all."""
    if df.limit(1).count() == 0:
        raise InvalidInputError(f"corpus {cfg.input} holds no rows: nothing to do")


def mark_repeated_ids(prepared: DataFrame) -> DataFrame:
    """Mark every valid row whose id an earlier valid row has (input order, ``_order``)
    as ``duplicate_doc_id``: the rule of :func:`duplicate_losers`, as one window.

    Lazy; on executors. Over a frame already hash-partitioned by ``doc_id`` (annotate's
    one shuffle of the text) the window adds a sort within partitions, no shuffle.
    """
    from pyspark.sql import Window

    invalid_last = F.col(REASON_COL).isNotNull()
    rank = F.row_number().over(Window.partitionBy("doc_id").orderBy(invalid_last, ORDER_COL))
    later = F.col(REASON_COL).isNull() & F.col("doc_id").isNotNull() & (rank > 1)
    return prepared.withColumn(
        REASON_COL, F.when(later, F.lit("duplicate_doc_id")).otherwise(F.col(REASON_COL))
    )
