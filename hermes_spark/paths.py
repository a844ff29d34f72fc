"""One canonical key per data file, whichever way its location was spelled.

Spark's ``_metadata.file_path`` says ``file:/a%20b``, ``inputFiles()`` says
``file:///a%20b``, delta-rs says ``/a b`` and an S3 corpus may be written ``s3://`` or
``s3a://``. Every comparison of corpus files (listings, manifests, ledgers) goes through
:func:`canonical_file_key` on the driver or :func:`file_key_col` on executors; both give
the same string for the same file: ``scheme:/percent-decoded path``, ``s3a``/``s3n``
spelled ``s3``, a plain local path as ``file:/absolute/path``.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

from pyspark.sql import Column
from pyspark.sql import functions as F

__all__ = ["canonical_file_key", "file_key_col"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/+(.*)$", re.DOTALL)
#: Scheme spellings of one store, folded to one name.
_SAME_STORE = {"s3a": "s3", "s3n": "s3"}


def canonical_file_key(uri: str) -> str:
    """The canonical key of one file location (driver; pure string work, no I/O)."""
    match = _SCHEME.match(uri)
    if match is None:
        if len(uri) > 1 and uri[1] == ":" and uri[0].isalpha():  # a Windows drive
            return f"file:/{uri}"
        return f"file:/{os.path.abspath(uri).lstrip('/')}"
    scheme = match.group(1).lower()
    return f"{_SAME_STORE.get(scheme, scheme)}:/{unquote(match.group(2))}"


def file_key_col(path: Column) -> Column:
    """:func:`canonical_file_key` as a native Column expression (executors).

    ``path`` is a URI as Spark writes it (``_metadata.file_path``, ``inputFiles()``):
    always with a scheme, percent-encoded, a literal ``+`` left as it is.
    """
    slashed = F.regexp_replace(path, r"^([A-Za-z][A-Za-z0-9+.-]*):/+", "$1:/")
    folded = F.regexp_replace(slashed, r"^(?i)s3[an]:/", "s3:/")
    # url_decode reads '+' as a space; in a URI path it is a literal plus
    return F.url_decode(F.regexp_replace(folded, r"\+", "%2B"))
