"""What a Delta corpus changed since a version: the files whose rows may be new.

Driver side; reads only the corpus's ``_delta_log`` commit files (JSON), never data.
Compaction (``OPTIMIZE``, predictive optimization) rewrites files with
``dataChange = false``: its new files hold rows the table already had, so annotate
treats only files added with ``dataChange = true`` since the version its ledger recorded
as pending — plus the rewrite of any such file, since a compaction may fold a new,
not yet annotated file into an old one.
"""

from __future__ import annotations

import json
import logging
import os
from urllib.parse import unquote

from hermes_spark import io
from hermes_spark.errors import InvalidInputError
from hermes_spark.paths import canonical_file_key

log = logging.getLogger(__name__)


def table_version(uri: str) -> int | None:
    """Current version of the Delta table at ``uri`` (delta-rs; None if unreadable)."""
    try:
        from deltalake import DeltaTable

        return int(DeltaTable(uri).version())
    except Exception as exc:  # the version is an optimisation: without it, no shortcut
        log.info("version of Delta corpus %s not read (%s)", uri, exc)
        return None


def fresh_files(
    uri: str, since: int, until: int, *, storage: io.Storage | None = None
) -> set[str] | None:
    """Canonical keys (:func:`canonical_file_key`) of files added in commits
    ``since + 1 .. until`` whose rows may be new to the table; ``None`` when a commit of
    that range is no longer in the log (log cleanup): the caller then lists as before."""
    fresh: set[str] = set()
    for version in range(since + 1, until + 1):
        commit = io.join(uri, "_delta_log", f"{version:020d}.json")
        try:
            text = io.read_text(commit, storage=storage)
        except (InvalidInputError, OSError):
            log.info("commit %d of %s is gone: every unrecorded file is pending", version, uri)
            return None
        adds, removes, rewrite = _actions(uri, text)
        if not rewrite or removes & fresh:
            fresh |= adds  # new rows, or a rewrite of files with new rows
        fresh -= removes
    return fresh


def _actions(uri: str, text: str) -> tuple[set[str], set[str], bool]:
    """``(added, removed, only_rewrites)`` of one commit: file keys, and whether every
    add of the commit says ``dataChange = false``."""
    adds, removes = set(), set()
    data_change = False
    for line in text.splitlines():
        if not line.strip():
            continue
        action = json.loads(line)
        if "add" in action:
            adds.add(_key(uri, action["add"]["path"]))
            data_change = data_change or bool(action["add"].get("dataChange", True))
        elif "remove" in action:
            removes.add(_key(uri, action["remove"]["path"]))
    return adds, removes, not data_change


def _key(root: str, path: str) -> str:
    """The canonical key of a log path (relative and percent-encoded, or absolute)."""
    if "://" in path or path.startswith("file:"):
        return canonical_file_key(path)
    if io.scheme(root) == "":  # a bare local path is taken literally: decode here
        return canonical_file_key(os.path.join(os.path.abspath(root), unquote(path)))
    return canonical_file_key(io.join(root, path))  # a URI: decoded by the key
