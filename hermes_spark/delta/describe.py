"""Tables that explain themselves: the comment, column comments and properties hermes
puts on the codes, rejects, stats, manifest and cards tables (driver; metadata commits).

:func:`describe_table` is called by each writer after its data commit. It commits only
what differs from the table's current metadata, so a re-run adds no commit. Native Delta
gets ``ALTER TABLE … SET TBLPROPERTIES ('comment' …)`` and ``ALTER COLUMN … COMMENT``
(what ``DESCRIBE TABLE`` and Catalog Explorer show); delta-rs the table description, the
configuration and the ``comment`` of each schema field's metadata.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from hermes_spark import __version__

if TYPE_CHECKING:
    from hermes_spark.delta.store import DeltaStore

log = logging.getLogger(__name__)

#: what each kind of table holds (the table comment)
TABLES = {
    "codes": "hermes codes: one row per document and codebook version; c1..cL are its "
    "coarse-to-fine codes, bucketK the packed prefix of c1..cK, qerrK the residual error.",
    "rejects": "hermes rejects: documents annotate could not code, with the reason.",
    "stats": "hermes bucket statistics: one row per bucket of every level (docs, tokens, "
    "shares, quality, children).",
    "levels": "hermes level summary: one row per level (cells, entropy, imbalance).",
    "manifest": "hermes manifest: the sampled documents, their Stage-1/Stage-2 buckets and "
    "how many copies each gets.",
    "cards": "hermes bucket cards: per bucket and level its size, quality, top terms and "
    "example documents (hermes explore).",
}

_COLUMNS = {
    "doc_id": "document id (the corpus id column, else a hash of the text)",
    "n_tokens": "tokens of the document (the budget unit)",
    "quality": "quality score, higher is better (null when unknown)",
    "codebook_version": "content hash of the codebook artifact that coded the row",
    "annotated_at": "when annotate wrote the row",
    "source_file": "the corpus file the row came from",
    "source_row": "the row's position in source_file (Parquet row index; null for JSON lines)",
    "reason": "why the document was rejected (e.g. empty_text, duplicate_doc_id)",
    "level": "level of the bucket (1 = coarsest)",
    "bucket": "packed bucket code at this level (bucketK = bucket(K-1) * K_K + cK)",
    "parent": "the bucket one level up (null at level 1)",
    "code": "the bucket as dotted codes c1.c2...",
    "docs": "documents in the bucket",
    "tokens": "tokens in the bucket (manifest: tokens of one copy)",
    "share_docs": "the bucket's share of the level's documents",
    "share_tokens": "the bucket's share of the level's tokens",
    "stage1_bucket": "the Stage-1 bucket the document was sampled for",
    "stage2_bucket": "the Stage-2 bucket (pool) it was drawn from",
    "repeats": "copies of the document in the training mixture",
    "top_terms": "most distinctive terms (class-based TF-IDF over a sample of the bucket)",
    "nearest": "documents nearest the centroid (smallest qerr): id, qerr, first characters",
    "random": "random documents in xxhash64(doc_id, seed) order: id, first characters",
    "mix": "most frequent values of the kept columns",
}

_PATTERNS = (
    (r"c(\d+)", "code at level {0}: the index of the level-{0} centroid (0..K{0}-1)"),
    (r"bucket(\d+)", "packed bucket of levels 1..{0}: bucket{0} = bucket(prev) * K{0} + c{0}"),
    (r"qerr(\d+)", "residual error after level {0}: distance to the level-1..{0} centroid"),
)


def column_comment(name: str) -> str | None:
    """What a hermes column means (None for a column hermes does not own)."""
    if name in _COLUMNS:
        return _COLUMNS[name]
    for pattern, text in _PATTERNS:
        m = re.fullmatch(pattern, name)
        if m:
            return text.format(m.group(1))
    return None


def describe_table(
    store: DeltaStore,
    table: str,
    kind: str,
    properties: Mapping[str, object] | None = None,
) -> None:
    """Put the comment of ``kind``, the column comments and ``hermes.*`` properties
    (hermes version plus ``properties``, e.g. codebook version and levels) on ``table``.
    A failure is logged, never raised: the data commit already happened."""
    props = {"hermes.version": __version__, "hermes.table": kind}
    props.update({f"hermes.{k}": str(v) for k, v in (properties or {}).items() if v is not None})
    try:
        columns = {c: t for c in store.read(table).columns if (t := column_comment(c))}
        store.describe(table, TABLES[kind], columns, props)
    except Exception:  # metadata is a courtesy: never fail the run for it
        log.warning("could not describe table %s", table, exc_info=True)
