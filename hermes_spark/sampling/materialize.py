"""A manifest joined back to its corpus: the training rows, repeats expanded (lazy).

Executors do the join; the driver only learns which files hold sampled documents (one
small job over the manifest's ``source_file``), so that files without a sampled document
are never read.
"""

from __future__ import annotations

import logging

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from hermes_spark.config import CorpusConfig
from hermes_spark.corpus import file_key
from hermes_spark.errors import InvalidInputError
from hermes_spark.paths import canonical_file_key
from hermes_spark.sampling.texts import FILE_COL, corpus_rows, first_per_id
from hermes_spark.schema import SOURCE_COL, SOURCE_ROW_COL, lineage_of

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("doc_id", "stage1_bucket", "stage2_bucket", "repeats", "tokens")
#: Working columns of the expansion; corpus columns of these names are replaced.
RESERVED = ("stage1_bucket", "stage2_bucket", "repeats", "repeat_index", "_h")


def checked_manifest(manifest_df: DataFrame, name: str = "the manifest") -> DataFrame:
    """The manifest's columns (and its lineage columns ``source_file``, ``source_row`` when
    present), rows with repeats >= 1.

    Raises:
        InvalidInputError: a MANIFEST column is missing.
    """
    lacking = set(MANIFEST_COLUMNS) - set(manifest_df.columns)
    if lacking:
        raise InvalidInputError(f"{name} is not a manifest: it lacks {sorted(lacking)}")
    cols = [*MANIFEST_COLUMNS, *lineage_of(manifest_df.columns)]
    return manifest_df.select(*cols).where(F.col("repeats") >= 1)


def sampled_files(manifest_df: DataFrame) -> list[str] | None:
    """The distinct ``source_file`` values of a manifest (one small job), or None when
    the manifest does not carry them (a manifest of codes without ``source_file``)."""
    if SOURCE_COL not in manifest_df.columns:
        return None
    rows = manifest_df.select(SOURCE_COL).distinct().collect()
    if any(r[0] is None for r in rows):
        return None
    return sorted(r[0] for r in rows)


def files_holding(wanted: list[str] | None, listed: list[str]) -> list[str] | None:
    """The entries of the corpus listing ``listed`` that hold sampled documents (``wanted``:
    :func:`sampled_files`), or None when the manifest has no ``source_file`` or some of
    its files are not in the listing (the corpus moved or changed: read it all)."""
    if wanted is None:
        return None
    by_key = {canonical_file_key(p): p for p in listed}
    missing = [w for w in wanted if canonical_file_key(w) not in by_key]
    if missing:
        log.warning(
            "%d file(s) named by the manifest are not in the corpus listing (e.g. %s): "
            "reading every corpus file",
            len(missing),
            missing[0],
        )
        return None
    return [by_key[canonical_file_key(w)] for w in wanted]


def selected_rows(manifest: DataFrame, texts: DataFrame, *, match_source: bool) -> DataFrame:
    """The corpus row of every manifest document (the copy annotate kept), manifest
    columns attached; ``texts`` is a :func:`corpus_rows` frame. With ``match_source``
    only the row read from the document's ``source_file`` can match, so a duplicate id in
    another sampled file never replaces it."""
    man = manifest.drop("tokens", SOURCE_ROW_COL)
    if match_source and SOURCE_COL in manifest.columns:
        joined = texts.join(man, "doc_id").where(
            file_key(F.col(FILE_COL)) == file_key(F.col(SOURCE_COL))
        )
        return first_per_id(joined.drop(SOURCE_COL))
    return first_per_id(texts.join(man.drop(SOURCE_COL), "doc_id"))


def copy_hash(seed: int) -> Column:
    """``h = xxhash64(doc_id, repeat_index, seed)``: the shuffle key of every copy."""
    return F.xxhash64(F.col("doc_id"), F.col("repeat_index"), F.lit(int(seed)).cast("long"))


def expand_copies(rows: DataFrame, seed: int) -> DataFrame:
    """One row per copy (``repeat_index`` 1..repeats) with its hash ``_h`` (lazy)."""
    out = rows.withColumn("repeat_index", F.explode(F.sequence(F.lit(1), F.col("repeats"))))
    return out.withColumn("_h", copy_hash(seed))


def _only_sampled_files(raw: DataFrame, wanted: list[str] | None) -> tuple[DataFrame, bool]:
    """``raw`` restricted to the files holding sampled documents when that is safe (a file
    source whose listing holds every one of them), and whether it was."""
    if wanted is None:
        return raw, False
    try:
        path = F.col("_metadata.file_path")
        raw.select(path).schema  # noqa: B018 (analysis only: is it a file source?)
        listed = list(raw.inputFiles())
    except Exception:  # not a file source: read it all
        return raw, False
    if files_holding(wanted, listed) is None:
        return raw, False
    # A literal filter on _metadata.file_path prunes the file listing (no other file read).
    return raw.where(path.isin(wanted)), True


def materialize(
    manifest_df: DataFrame,
    corpus_df: DataFrame,
    *,
    id_col: str = "id",
    text_col: str = "text",
    columns: list[str] | None = None,
    seed: int = 0,
) -> DataFrame:
    """The training rows of a manifest: one row per copy, in a deterministic order.

    Columns ``doc_id, repeat_index, stage1_bucket, stage2_bucket`` and the corpus
    ``columns`` (default: all of them). ``doc_id`` of the corpus is computed as annotate
    does (``id_col``, else a hash of ``text_col``). Rows are sorted by
    ``(xxhash64(doc_id, repeat_index, seed), doc_id, repeat_index)`` (a distributed sort):
    the same manifest, corpus and seed give the same rows in the same order. When the
    manifest carries ``source_file`` and ``corpus_df`` is a file source, only the files
    holding sampled documents are read (one small job lists them now).

    Example::

        train_df = materialize(sample(codes_df, plan, seed=5), spark.read.parquet(path))

    Raises:
        InvalidInputError: not a manifest, or corpus columns missing.
    """
    man = checked_manifest(manifest_df)
    cfg = CorpusConfig(input="<DataFrame>", id_col=id_col, text_col=text_col)
    raw, pruned = _only_sampled_files(corpus_df, sampled_files(man))
    texts, keep = corpus_rows(raw, cfg, columns)
    clash = [c for c in keep if c in RESERVED]
    if clash:
        log.warning("corpus columns %s are replaced by the manifest's", clash)
        texts, keep = texts.drop(*clash), [c for c in keep if c not in clash]
    copies = expand_copies(selected_rows(man, texts, match_source=pruned), seed)
    return copies.orderBy("_h", "doc_id", "repeat_index").select(
        "doc_id", "repeat_index", "stage1_bucket", "stage2_bucket", *keep
    )
