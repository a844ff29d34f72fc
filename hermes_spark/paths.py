"""One canonical key per data file, however its URI was spelled.

The same file reaches hermes as ``/data/a b.parquet`` (a local listing or delta-rs),
``file:/data/a%20b.parquet`` (Spark's ``_metadata.file_path``), ``file:///data/...``
(``inputFiles()``), ``s3://bucket/k`` (delta-rs, boto) or ``s3a://bucket/k`` (Hadoop).
:func:`canonical_file_key` (driver, plain Python) and :func:`canonical_file_key_col`
(a native Column expression, executors) map every spelling to one string, so a ledger,
a listing and a scan of the same file agree.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

from pyspark.sql import Column
from pyspark.sql import functions as F

#: Hadoop's S3 connectors (``s3a``, ``s3n``) and ``s3`` name the same objects.
_S3_SCHEMES = r"^s3[an]?:"
_SCHEME = r"^([A-Za-z][A-Za-z0-9+.-]*):/+"


def canonical_file_key(uri: str) -> str:
    """``scheme:/path``; no scheme means ``file`` (a relative path is made absolute);
    every S3 connector scheme becomes ``s3`` (so ``s3a://b/k`` and ``s3://b/k`` are equal).

    A URI with a scheme is percent-decoded (Spark's spelling); a bare path is taken
    literally (a local listing's spelling, where ``%`` is just a character). Hermes'
    object-store listings are not encoded either, so a key with a literal ``%XX`` in it
    is the one spelling that can be misread.
    """
    text = uri
    bare = not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text) or bool(
        re.match(r"^[A-Za-z]:[\\/]", text)
    )
    if bare:
        if not text.startswith("/") and not re.match(r"^[A-Za-z]:[\\/]", text):
            text = os.path.abspath(text)  # a relative local path: from the working folder
        text = "file:" + text  # a bare local path (or a Windows drive path)
    text = re.sub(_S3_SCHEMES, "s3:", text, flags=re.IGNORECASE)
    scheme, _, rest = text.partition(":")
    rest = "/" + rest.lstrip("/")
    return f"{scheme.lower()}:{rest if bare else unquote(rest)}"


def canonical_file_key_col(uri: Column) -> Column:
    """:func:`canonical_file_key` of a URI Spark wrote (``_metadata.file_path``, always
    percent-encoded; a bare path gets ``file:``) as a Column expression (no Python per
    row). ``url_decode`` would read ``+`` as a space, so ``+`` is escaped first."""
    bare = F.when(uri.rlike(r"^[A-Za-z][A-Za-z0-9+.-]*:"), uri).otherwise(
        F.concat(F.lit("file:"), uri)
    )
    s3 = F.regexp_replace(bare, r"(?i)^s3[an]?:", "s3:")
    scheme = F.lower(F.regexp_extract(s3, r"^([^:]*):", 1))
    rest = F.regexp_replace(F.regexp_replace(s3, r"^[^:]*:/*", "/"), r"\+", "%2B")
    return F.concat(scheme, F.lit(":"), F.url_decode(rest))


__all__ = ["canonical_file_key", "canonical_file_key_col"]
