"""The one guard every writing command calls before it starts: never destroy what hermes
did not write.

Driver side, before any Spark job: an output target is accepted when it does not exist,
is an empty folder, or holds an earlier output of the same kind (a Delta table with the
kind's identifying columns, a folder of only the kind's own file names, a file carrying
the kind's marker). Anything else — a Delta table of another schema, a folder with a
user's files, someone's file — is refused with :class:`InvalidInputError` naming it.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pyarrow.fs as pafs

from hermes_spark import io
from hermes_spark.errors import InvalidInputError, InvariantError

if TYPE_CHECKING:
    from hermes_spark.delta.store import DeltaStore

__all__ = [
    "CROSSWALK_COLUMNS",
    "LEVELS_COLUMNS",
    "STATS_COLUMNS",
    "guard_output",
]

#: Columns that identify each kind of table hermes writes (any version of its schema).
STATS_COLUMNS = ("codebook_version", "level", "bucket", "docs", "tokens", "share_docs")
LEVELS_COLUMNS = ("codebook_version", "level", "cells_nonempty", "entropy_bits")
CROSSWALK_COLUMNS = ("level", "from_bucket", "to_bucket", "share_of_from")
#: Text that every page of ``hermes report`` holds (report.page).
REPORT_MARKER = "<div class='hermes-report'>"
#: File names of the folders hermes writes.
WEIGHT_FILES = re.compile(r"^(doremi_weights\.json|regmix_mixture\.csv|megatron_blend\.txt)$")
EVALUATION_FILES = re.compile(r"^evaluation\.(json|md)$")
MIXTURE_FILES = re.compile(r"^(mixture-\d+\.json|quadmix-\d+\.json|regmix_mixtures\.csv)$")

#: Bytes of an existing single-file output searched for the kind's marker.
_MARKER_WINDOW = 1 << 20


def guard_output(
    target: str,
    what: str,
    *,
    store: DeltaStore | None = None,
    columns: Iterable[str] | None = None,
    own_names: re.Pattern[str] | None = None,
    marker: str | None = None,
    storage: io.Storage | None = None,
) -> None:
    """Refuse ``target`` unless it is absent, empty, or an earlier output of this kind.

    Exactly one of: ``store`` + ``columns`` (a Delta table whose schema must hold these
    columns), ``own_names`` (a folder whose entries must all match), ``marker`` (a file
    whose text must contain it). ``what`` names the output in the message (``stats {out}``:
    a setting in braces is named per caller, see :class:`~hermes_spark.errors.HermesError`).
    ``storage`` reaches a folder or file target on an object store.

    Raises:
        InvalidInputError: the target holds something hermes did not write.
    """
    if store is not None:
        _guard_table(store, target, what, tuple(columns or ()))
    elif own_names is not None:
        _guard_folder(target, what, own_names, storage)
    elif marker is not None:
        _guard_file(target, what, marker, storage)
    else:
        raise InvariantError("guard_output needs store+columns, own_names or marker")


def _refuse(target: str, what: str, why: str) -> InvalidInputError:
    return InvalidInputError(
        f"{what} {target} {why}, which hermes did not write: refusing to replace it. "
        "Give a new path (or remove it yourself)"
    )


def _guard_table(store: DeltaStore, target: str, what: str, columns: tuple[str, ...]) -> None:
    store.check_writable(target)  # a folder of other files, or a file, is refused here
    if not store.exists(target):
        return
    present = set(store.read(target).columns)  # the log's schema: no data read
    lacking = [c for c in columns if c not in present]
    if lacking:
        shown = ", ".join(sorted(present)[:8]) or "none"
        raise _refuse(
            target,
            what,
            f"is a Delta table of another schema (columns {shown}; no {', '.join(lacking)})",
        )


def _guard_folder(
    target: str, what: str, own_names: re.Pattern[str], storage: io.Storage | None
) -> None:
    fs, root = io.filesystem(target, storage)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        return
    if info.type != pafs.FileType.Directory:
        raise _refuse(target, what, "is a file")
    names = sorted(posixpath.basename(e.path) for e in fs.get_file_info(pafs.FileSelector(root)))
    foreign = [n for n in names if not own_names.match(n)]
    if foreign:
        raise _refuse(target, what, f"holds other files ({', '.join(foreign[:5])})")


def _guard_file(target: str, what: str, marker: str, storage: io.Storage | None) -> None:
    fs, inner = io.filesystem(target, storage)
    info = fs.get_file_info(inner)
    if info.type == pafs.FileType.NotFound:
        return
    if info.type != pafs.FileType.File:
        raise _refuse(target, what, "is a folder")
    with fs.open_input_stream(inner) as stream:
        head = stream.read(_MARKER_WINDOW).decode("utf-8", errors="replace")
    if marker not in head:
        raise _refuse(target, what, "is a file")
