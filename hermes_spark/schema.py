"""The tables' contract: codes / rejects / embeddings columns, packing, version choice.

Driver side (lazy Column expressions and small metadata reads). Every module that needs a
table-schema constant imports it from here, never from an orchestrator.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from hermes_spark.errors import InvalidInputError, VersionMismatchError

if TYPE_CHECKING:
    from hermes_spark.delta import DeltaStore

log = logging.getLogger(__name__)

VERSION_COL = "codebook_version"
#: Lineage column of the codes and rejects tables: the input file a row came from (URI).
SOURCE_COL = "source_file"
#: Lineage column of the codes table: the row's position in ``source_file`` (the Parquet
#: row index, counted over the whole file); null where the format has none (JSON lines).
#: Export reads a sampled document by it instead of joining the corpus on ``doc_id``.
SOURCE_ROW_COL = "source_row"
#: The lineage columns a manifest carries when the codes have them, with their types.
LINEAGE_COLUMNS = ((SOURCE_COL, "string"), (SOURCE_ROW_COL, "bigint"))
#: Why a row could not be annotated (null when it was): transform's output column.
REASON_COL = "reason"
ANNOTATED_AT_COL = "annotated_at"
#: Commit metadata of every annotate commit: the codebook version and its level sizes,
#: so ``stats`` knows ``K1`` exactly without the artifact.
VERSION_META = "hermes.codebook_version"
LEVELS_META = "hermes.levels"
DEVICE_META = "hermes.device"
#: Spark column metadata on ``c1`` of a transformed frame (survives selects and Delta).
LEVELS_FIELD_META = "hermes.levels"
VERSION_FIELD_META = "hermes.codebook_version"
#: Every reason a document can be rejected for, as written to the rejects table.
REJECT_REASONS = (
    "unreadable_record",
    "null_id",
    "null_text",
    "empty_text",
    "null_embedding",
    "wrong_embedding_length",
    "non_finite_embedding",
    "bad_token_count",
    "duplicate_doc_id",
)


def lineage_of(columns: Sequence[str]) -> list[str]:
    """The :data:`LINEAGE_COLUMNS` among ``columns``, in their order."""
    return [c for c, _ in LINEAGE_COLUMNS if c in columns]


def lineage_schema(columns: Sequence[str]) -> str:
    """``", source_file string, source_row bigint"`` for the lineage among ``columns``: the
    tail of a DDL schema string."""
    types = dict(LINEAGE_COLUMNS)
    return "".join(f", {c} {types[c]}" for c in lineage_of(columns))


def rejects_table_name(table: str) -> str:
    """``<CODES>_rejects``: a sibling path or, for a catalog name, a sibling table."""
    return f"{table.rstrip('/')}_rejects"


def embeddings_table_name(table: str) -> str:
    """``<CODES>_embeddings``: the optional float16 vectors of ``annotate --store-embeddings``."""
    return f"{table.rstrip('/')}_embeddings"


def code_columns(n_levels: int) -> list[str]:
    """The codes-table columns produced by quantization, in SPEC order."""
    return (
        [f"c{k}" for k in range(1, n_levels + 1)]
        + [f"bucket{k}" for k in range(1, n_levels + 1)]
        + [f"qerr{k}" for k in range(1, n_levels + 1)]
    )


def own_columns(n_levels: int) -> set[str]:
    """Every column name hermes adds to a corpus frame (transform) or a codes table."""
    return {
        "doc_id",
        "n_tokens",
        "quality",
        VERSION_COL,
        ANNOTATED_AT_COL,
        SOURCE_COL,
        SOURCE_ROW_COL,
        REASON_COL,
        *code_columns(n_levels),
    }


def bucket_columns(levels: Sequence[int]) -> list[Column]:
    """Packed prefixes: ``bucket1 = c1``, ``bucket_k = bucket_{k-1} * K_k + c_k``."""
    cols: list[Column] = []
    packed: Column | None = None
    for k, size in enumerate(levels, start=1):
        code = F.col(f"c{k}").cast("long")
        packed = code if packed is None else packed * F.lit(size) + code
        cols.append(packed.alias(f"bucket{k}"))
    return cols


def codes_columns(levels: Sequence[int], version: str) -> list[Column]:
    """Codes, packed buckets, residual errors, tokens, quality and version, SPEC-typed.

    ``c1`` carries the level sizes and version as Spark column metadata, so
    :func:`hermes_spark.stats.bucket_stats` knows ``K1`` exactly from the frame alone.
    """
    k = len(levels)
    meta = {LEVELS_FIELD_META: list(map(int, levels)), VERSION_FIELD_META: version}
    cols = [F.col("c1").alias("c1", metadata=meta)]
    cols += [F.col(f"c{i}") for i in range(2, k + 1)]
    cols += bucket_columns(levels)
    cols += [F.col(f"qerr{i}") for i in range(1, k + 1)]
    cols += [
        F.col("n_tokens"),
        F.col("quality"),
        F.lit(version).alias(VERSION_COL),
        F.current_timestamp().alias(ANNOTATED_AT_COL),
    ]
    return cols


def recorded_levels(store: DeltaStore, table: str, version: str) -> list[int] | None:
    """Level sizes that annotate recorded in the commit metadata for ``version`` (driver);
    None when no such commit is left in the log (e.g. trimmed by log retention)."""
    for meta in store.commit_metadata(table):
        if meta.get(VERSION_META) == version and LEVELS_META in meta:
            return [int(k) for k in meta[LEVELS_META].split(",")]
    return None


def latest_version(df: DataFrame, table: str = "codes table") -> str:
    """The version whose *first* row was annotated most recently.

    Defined by the first commit of each version (``min(annotated_at)``), so re-running an
    old artifact over new documents does not make it the latest again.
    """
    row = (
        df.groupBy(VERSION_COL)
        .agg(F.min(ANNOTATED_AT_COL).alias("first"))
        .orderBy(F.col("first").desc(), F.col(VERSION_COL))
        .limit(1)
        .collect()
    )
    if not row:
        raise InvalidInputError(f"{table} is empty")
    return str(row[0][VERSION_COL])


def select_version(store: DeltaStore, table: str, version: str | None) -> tuple[DataFrame, str]:
    """Rows of one codebook version (default: the latest); never a mix of versions."""
    if not store.exists(table):
        raise InvalidInputError(f"codes table {table} does not exist (run hermes annotate)")
    return select_version_df(store.read(table), version, table)


def select_version_df(
    df: DataFrame, version: str | None, table: str = "codes frame"
) -> tuple[DataFrame, str]:
    """:func:`select_version` on a DataFrame the caller already holds."""
    if VERSION_COL not in df.columns:
        raise InvalidInputError(f"{table} has no {VERSION_COL} column: not a codes table")
    lacking = [c for c in ("doc_id", "bucket1") if c not in df.columns]
    if lacking:
        raise InvalidInputError(
            f"{table} lacks column(s) {', '.join(lacking)}: not a codes table of hermes "
            f"annotate (columns: {', '.join(df.columns[:8])})"
        )
    chosen = version or latest_version(df, table)
    rows = df.where(F.col(VERSION_COL) == chosen)
    if version is not None and rows.limit(1).count() == 0:
        raise VersionMismatchError(
            f"{table} has no rows of codebook version {version}", param="version"
        )
    return rows, chosen


def jsonable_levels(levels: Sequence[Any]) -> list[int]:
    """Level sizes as plain ints (for JSON and commit metadata)."""
    return [int(k) for k in levels]
