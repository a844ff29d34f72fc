"""The codebook artifact at any user path: the one door between ``Codebook`` and a URI.

Driver side. :meth:`Codebook.load` and :meth:`Codebook.save` read and write a local folder
only; every caller holding a user path (``/Volumes/...``, ``dbfs:/``, ``s3a://``, ...)
goes through :func:`load_codebook` / :func:`save_codebook`, which stage the folder through
:mod:`hermes_spark.io`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import Any

from hermes_spark import io
from hermes_spark.errors import ArtifactError
from hermes_spark.quantize.codebook import Codebook

#: The fit's report, written next to the artifact's arrays.
FIT_REPORT = "fit_report.json"


def save_codebook(
    codebook: Codebook,
    path: str,
    report: Mapping[str, Any] | None = None,
    *,
    storage: io.Storage | None = None,
) -> None:
    """Write the artifact directory (and ``fit_report.json``) to any URI (driver)."""
    with io.staged_dir(path, storage=storage) as local:
        codebook.save(local)
    if report is not None:
        io.write_json(io.join(path, FIT_REPORT), dict(report), storage=storage)


def load_codebook(path: str, *, storage: io.Storage | None = None) -> Codebook:
    """Read an artifact directory from any URI (driver).

    Raises:
        ArtifactError: nothing at ``path`` on an object store (a local folder reports
            its own missing files).
    """
    if io.is_local(path):
        return Codebook.load(io.local_path(path))
    if not io.exists(path, storage=storage):
        raise ArtifactError(f"codebook {path} does not exist")
    with tempfile.TemporaryDirectory(prefix="hermes-codebook-") as tmp:
        return Codebook.load(io.download_dir(path, os.path.join(tmp, "cb"), storage=storage))


__all__ = ["FIT_REPORT", "load_codebook", "save_codebook"]
