"""Sampled documents read by their position: export's reader of the corpus text.

Annotate records where each document was read (``source_file``, ``source_row``: the
Parquet row index in that file), and the manifest carries both. Executors then read just
the sampled rows: the manifest (ids and positions, no text) is hash-partitioned by file,
each task opens its files with pyarrow through the URI layer, reads only the row groups
that hold sampled rows and only the columns exported, and takes the rows. The text is not
shuffled before the shard shuffle that follows, so it crosses the network once.

Every row read is checked against its manifest id (the id column cast as annotate casts
it, or the text hash): a file rewritten since annotate fails the export with
:data:`MISMATCH` in the job's error instead of exporting another document.

Which files qualify is decided on the driver (:func:`positional_files`): Parquet files
read as plain Parquet. Rows of other files (JSON lines, Delta files with deletion vectors,
column-mapped or partitioned Delta tables, catalog tables, codes tables without
``source_row``) are joined on ``doc_id`` through Spark's reader as before.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from hermes_spark import io
from hermes_spark.config import CorpusConfig
from hermes_spark.corpus import doc_id_column
from hermes_spark.object_stores import storage_of
from hermes_spark.paths import canonical_file_key, canonical_file_key_col
from hermes_spark.runtime import default_parallelism
from hermes_spark.schema import SOURCE_COL, SOURCE_ROW_COL

log = logging.getLogger(__name__)

#: Start of the job error raised when a row read does not hold its manifest document.
MISMATCH = "HERMES_SAMPLED_ROW_MISMATCH"
#: Text bytes one reading task aims for (the manifest is split into that many tasks).
TASK_BYTES = 128 << 20
#: Column of the corpus id read beside the exported columns, for the check.
_ID = "_hermes_corpus_id"
_KEY = "_hermes_file"
_NEEDS_DELTA_READER = ("deletionVectors", "columnMapping")


def positional_files(corpus: CorpusConfig, listed: Sequence[str]) -> set[str]:
    """Canonical keys of the listed files whose rows can be read by position (driver).

    Parquet corpora: all. Delta path corpora: the files without a deletion vector, when
    the table has no column mapping and no partition columns (whose values are not in the
    files); read from the Delta log with delta-rs. JSON lines and catalog tables: none.
    """
    if corpus.table or corpus.format == "json":
        return set()
    keys = {canonical_file_key(p) for p in listed}
    if corpus.format != "delta":
        return keys
    try:
        from deltalake import DeltaTable

        table = DeltaTable(corpus.input or "")
        meta = table.metadata()
        if (
            meta.partition_columns
            or meta.configuration.get("delta.columnMapping.mode", "none") != "none"
        ):
            return set()
        features = set(table.protocol().reader_features or ())
        if "deletionVectors" not in features:
            return keys
        deleted = pa.table(table.deletion_vectors()).column("filepath").to_pylist()
    except Exception as exc:  # the Delta reader reads it; positions are an optimisation
        log.info("Delta log of %s not read by delta-rs (%s): rows joined by id", corpus.input, exc)
        return set()
    return keys - {canonical_file_key(str(p)) for p in deleted}


def openable_uri(key: str) -> str:
    """A URI :func:`hermes_spark.io.filesystem` opens for a canonical file key (decoded,
    so a local name with spaces or ``%`` is opened as it is)."""
    scheme, _, rest = key.partition(":")
    if scheme == "file":
        return rest
    return f"{scheme}://{rest.lstrip('/')}"


def read_by_position(
    spark: SparkSession,
    manifest: DataFrame,
    corpus: CorpusConfig,
    corpus_schema: T.StructType,
    columns: Sequence[str],
    *,
    text_bytes: float,
) -> DataFrame:
    """The corpus ``columns`` of every manifest row (lazy; executors read the files).

    ``manifest`` holds ``doc_id, stage1_bucket, stage2_bucket, repeats`` and the lineage
    columns, every row with a ``source_row`` in a file of :func:`positional_files`;
    ``corpus_schema`` is Spark's schema of the corpus (the output keeps its types).
    ``text_bytes`` (about how much text the rows hold) sizes the reading tasks. Output:
    the manifest columns and ``columns``; a row whose id differs from its manifest
    document fails the job with :data:`MISMATCH`.
    """
    fields = {f.name: f for f in corpus_schema.fields}
    # the column the id check reads: the id column, else the text (a hash of it is the id)
    id_source = corpus.id_col if corpus.id_col in fields else corpus.text_col
    man_cols = ["doc_id", "stage1_bucket", "stage2_bucket", "repeats"]
    out_schema = T.StructType(
        [
            *(f for f in manifest.select(*man_cols).schema.fields),
            *(fields[c] for c in columns),
            T.StructField(_ID, fields[id_source].dataType),
        ]
    )
    tasks = max(default_parallelism(spark), math.ceil(max(0.0, text_bytes) / TASK_BYTES))
    keyed = manifest.select(
        *man_cols,
        SOURCE_ROW_COL,
        canonical_file_key_col(F.col(SOURCE_COL)).alias(_KEY),
    )
    ordered = keyed.repartition(tasks, _KEY).sortWithinPartitions(_KEY, SOURCE_ROW_COL)
    fn = rows_reader(man_cols, list(columns), id_source, out_schema, storage_of(spark))
    rows = ordered.mapInArrow(fn, out_schema)
    # annotate's doc_id of the row read (the id cast to string, or the hash of the text)
    as_read = dataclasses.replace(
        corpus, id_col=_ID if id_source == corpus.id_col else "\0none", text_col=_ID
    )
    found = doc_id_column(rows.schema, as_read)
    checked = F.when(found.eqNullSafe(F.col("doc_id")), F.col("doc_id")).otherwise(
        F.raise_error(
            F.concat(
                F.lit(f"{MISMATCH}: manifest document "),
                F.col("doc_id"),
                F.lit(" is not the row read at its position (the corpus holds "),
                F.coalesce(found, F.lit("no row")),
                F.lit(" there)"),
            )
        )
    )
    return rows.withColumn("doc_id", checked).drop(_ID)


def rows_reader(
    man_cols: list[str],
    columns: list[str],
    id_source: str,
    out_schema: T.StructType,
    storage: io.Storage | None = None,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The executor function of :func:`read_by_position` (``mapInArrow``): for each run
    of manifest rows of one file, the rows at their ``source_row`` (pyarrow, only the row
    groups and columns needed; object stores opened with ``storage``, the driver's
    settings carried in the closure). A position past the file's end yields a null id, which
    the check after it reports."""
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow_schema = to_arrow_schema(out_schema)
    read_cols = list(dict.fromkeys([*columns, id_source]))
    wanted = [*columns, id_source]  # the output's corpus columns, then the id check's

    def read(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            keys = batch.column(_KEY)
            # the batch is sorted by file: a run of one file starts where the key changes
            changed = pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1))
            starts = [0, *(np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1)]
            for lo, hi in zip(starts, [*starts[1:], len(keys)], strict=True):
                part = pa.Table.from_batches([batch.slice(lo, hi - lo)])
                yield _file_rows(
                    str(keys[lo].as_py()), part, man_cols, read_cols, wanted, arrow_schema, storage
                )

    return read


def _file_rows(
    key: str,
    part: pa.Table,
    man_cols: list[str],
    read_cols: list[str],
    wanted: list[str],
    schema: pa.Schema,
    storage: io.Storage | None,
) -> pa.RecordBatch:
    """One file's manifest rows (``part``) with the ``wanted`` corpus columns of their
    rows (executor)."""
    fs, path = io.filesystem(openable_uri(key), storage)
    with fs.open_input_file(path) as handle:
        pfile = pq.ParquetFile(handle)
        meta = pfile.metadata
        sizes = np.array([meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
        first = np.concatenate([[0], np.cumsum(sizes)])[:-1].astype(np.int64)
        pos = np.asarray(part.column(SOURCE_ROW_COL).to_numpy(zero_copy_only=False), np.int64)
        inside = (pos >= 0) & (pos < meta.num_rows)
        group = np.searchsorted(first, pos, side="right") - 1
        needed = sorted({int(g) for g in group[inside]})
        # a column an older file lacks reads as nulls, as Spark reads it
        present = [c for c in read_cols if c in pfile.schema_arrow.names]
        data = pfile.read_row_groups(needed, columns=present) if needed else None
    # where each needed row group starts among the row groups read
    base = np.zeros(len(sizes), dtype=np.int64)
    if needed:
        base[needed] = np.concatenate([[0], np.cumsum(sizes[needed])[:-1]]).astype(np.int64)
    safe = np.where(inside, group, 0)
    local = np.where(inside, base[safe] + pos - first[safe], -1)
    take = pa.array(np.where(local >= 0, local, 0), pa.int64())
    arrays: list[pa.Array] = [part.column(c).combine_chunks() for c in man_cols]
    missing = pa.array(~inside)
    for c in wanted:
        target = schema.field(len(arrays)).type
        if data is None or c not in data.column_names:
            arrays.append(pa.nulls(len(pos), target))
            continue
        col = data.column(c).take(take).combine_chunks().cast(target)
        arrays.append(pc.if_else(missing, pa.nulls(len(pos), target), col))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


__all__ = ["MISMATCH", "openable_uri", "positional_files", "read_by_position", "rows_reader"]
