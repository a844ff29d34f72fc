"""The native store reads commit history by version, not by a window that can slide.

``DeltaTable.history(n)`` returns the newest ``n`` commits at the moment it runs. A writer
that reads the table's version, then its history, can have a concurrent commit land in
between; a window sized from the stale version then misses the writer's own commit, and a
committed append would be reported as skipped. These tests replay that interleaving on a
store whose history grows between calls; no Spark is needed.
"""

from __future__ import annotations

import json

from pyspark.sql import Row

from hermes_spark.delta.native import NativeDeltaStore
from hermes_spark.delta.store import txn_marker


class RacyHistory(NativeDeltaStore):
    """History that gains the commits in ``arriving`` after each ``version`` read."""

    def __init__(self, commits: list[str | None], arriving: list[str | None]) -> None:
        super().__init__(spark=None)
        self.commits = list(commits)
        self.arriving = list(arriving)

    def exists(self, table: str) -> bool:
        return True

    def _row(self, version: int) -> Row:
        marker = self.commits[version]
        meta = json.dumps({"hermes.txn": marker}) if marker else None
        return Row(version=version, operation="WRITE", userMetadata=meta)

    def version(self, table: str) -> int:
        current = len(self.commits) - 1
        if self.arriving:  # another writer commits right after we looked
            self.commits.append(self.arriving.pop(0))
        return current

    def _history_rows(self, table: str, limit: int | None = None) -> list[Row]:
        newest = range(len(self.commits) - 1, -1, -1)
        picked = list(newest)[: limit if limit is not None else None]
        return [self._row(v) for v in picked]


def test_our_commit_is_found_when_another_lands_after_the_version_read() -> None:
    ours = txn_marker("w100", 1)
    # v0 created the table, v1 is ours; w200's commit (v2) lands while we look.
    store = RacyHistory([None, ours], arriving=[txn_marker("w200", 1)])
    assert store._committed_since("t", 0, ours)


def test_a_commit_that_is_not_ours_is_still_reported_as_skipped() -> None:
    store = RacyHistory([None, txn_marker("w200", 1)], arriving=[txn_marker("w300", 1)])
    assert not store._committed_since("t", 0, txn_marker("w100", 1))


def test_txn_lookups_see_every_commit_since_the_last_one() -> None:
    store = RacyHistory([None, txn_marker("a", 1)], arriving=[])
    assert store.txn_version("t", "a") == 1
    # b commits v2; then c's commit lands between our version read and history read.
    store.commits.append(txn_marker("b", 4))
    store.arriving = [txn_marker("c", 7)]
    assert store.txn_version("t", "b") == 4
    assert store.txn_version("t", "c") == 7
    assert store.txn_version("t", "a") == 1
