"""``hermes optimize``: cluster a codes table's files by code prefix.

Driver orchestration: one ``OPTIMIZE`` of the codes table by its store. Native Delta
clusters a liquid-clustered table by its own keys (incremental: only files not yet
clustered are rewritten) and Z-orders any other by ``bucket1, bucket2``; the embedded
writer (delta-rs) Z-orders. Afterwards a code-prefix read (``bucket1 = k``) skips most
files. Safe to re-run, and to run while no other writer commits (a concurrent commit
makes the optimize fail and leaves the table as it was).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hermes_spark.delta import DeltaStore
from hermes_spark.errors import InvalidInputError
from hermes_spark.tasks.annotate import CODES_CLUSTER_BY

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimizeResult:
    """The table optimized and its Delta version before and after."""

    table: str
    version_before: int
    version_after: int


def optimize_codes(store: DeltaStore, table: str) -> OptimizeResult:
    """Cluster ``table``'s files by ``CODES_CLUSTER_BY`` (one commit, or none when
    already clustered).

    Raises:
        InvalidInputError: ``table`` does not exist or is not a codes table.
    """
    if not store.exists(table):
        raise InvalidInputError(f"codes table {table} does not exist (run hermes annotate)")
    columns = set(store.read(table).columns)
    missing = [c for c in CODES_CLUSTER_BY if c not in columns]
    if missing:
        raise InvalidInputError(
            f"{table} is not a codes table: it has no {', '.join(missing)} column "
            f"(hermes optimize clusters a table that hermes annotate wrote)"
        )
    before = store.version(table)
    store.optimize(table, CODES_CLUSTER_BY)
    after = store.version(table)
    log.info("optimized %s by %s: version %d -> %d", table, CODES_CLUSTER_BY, before, after)
    return OptimizeResult(table, before, after)
