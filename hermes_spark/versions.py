"""Codebook versions held by a codes table: list, drop, and vacuum unreferenced files.

Driver orchestration; listing is one group-by on the partition column plus the commit
metadata (which devices embedded each version's rows).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hermes_spark.delta import DeltaStore, get_store
from hermes_spark.errors import InvalidInputError, VersionMismatchError
from hermes_spark.schema import (
    DEVICE_META,
    VERSION_COL,
    VERSION_META,
    embeddings_table_name,
    rejects_table_name,
)
from hermes_spark.tasks.ledger import forget_version, ledger_table_name

log = logging.getLogger(__name__)

_VERSION_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True)
class VersionInfo:
    """One codebook version of a codes table."""

    codebook_version: str
    rows: int
    rejects: int
    first_annotated: str
    last_annotated: str
    #: Devices and precisions recorded by the annotate commits still in the log
    #: (``cpu:fp32``, ``cuda:fp16``, ``given`` for vectors brought by the corpus).
    devices: tuple[str, ...] = ()

    @property
    def mixed_devices(self) -> bool:
        """True when this version's rows were embedded on more than one device/precision."""
        return len(self.devices) > 1


def list_versions(
    spark: SparkSession, table: str, *, store: DeltaStore | None = None
) -> list[VersionInfo]:
    """Every codebook version in ``table`` with row and reject counts, latest first.
    ``store`` defaults to the session's store."""
    store = store or get_store(spark)
    if not store.exists(table):
        raise InvalidInputError(f"codes table {table} does not exist")
    rows = (
        store.read(table)
        .groupBy(VERSION_COL)
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.min("annotated_at").cast("string").alias("first"),
            F.max("annotated_at").cast("string").alias("last"),
        )
        .collect()
    )
    rejects: dict[str, int] = {}
    rt = rejects_table_name(table)
    if store.exists(rt):
        rejects = {
            r[VERSION_COL]: r["n"]
            for r in store.read(rt).groupBy(VERSION_COL).agg(F.count(F.lit(1)).alias("n")).collect()
        }
    devices = recorded_devices(store.commit_metadata(table))
    infos = [
        VersionInfo(
            r[VERSION_COL],
            r["rows"],
            rejects.get(r[VERSION_COL], 0),
            r["first"],
            r["last"],
            tuple(sorted(devices.get(r[VERSION_COL], ()))),
        )
        for r in rows
    ]
    # latest first, by each version's first commit (as stats and sample choose it)
    return sorted(infos, key=lambda v: v.first_annotated, reverse=True)


def recorded_devices(metadata: list[dict[str, str]]) -> dict[str, set[str]]:
    """``version -> devices`` from annotate commit metadata (``a+b`` counts as both)."""
    found: dict[str, set[str]] = {}
    for meta in metadata:
        version, device = meta.get(VERSION_META), meta.get(DEVICE_META)
        if version and device:
            found.setdefault(version, set()).update(device.split("+"))
    return found


def drop_version(
    spark: SparkSession, table: str, version: str, *, store: DeltaStore | None = None
) -> int:
    """Delete every row (and reject) of ``version``; returns the codes rows deleted.
    ``store`` defaults to the session's store."""
    store = store or get_store(spark)
    if not _VERSION_RE.match(version):
        raise InvalidInputError(f"{version!r} is not a codebook version id", param="version")
    known = {v.codebook_version for v in list_versions(spark, table, store=store)}
    if version not in known:
        raise VersionMismatchError(
            f"codes table {table} has no codebook version {version}; it holds "
            f"{', '.join(sorted(known)) or 'none'}",
            param="version",
        )
    predicate = f"{VERSION_COL} = '{version}'"
    deleted = store.delete(table, predicate)
    rt = rejects_table_name(table)
    if store.exists(rt):
        store.delete(rt, predicate)
    forget_version(store, table, version)  # its files are no longer finished
    log.info("dropped %d rows of %s from %s", deleted, version, table)
    return deleted


def vacuum(
    spark: SparkSession, table: str, *, dry_run: bool = False, store: DeltaStore | None = None
) -> list[str]:
    """Remove files no snapshot references (orphans of killed runs, dropped versions).

    Driver orchestration. Vacuums the codes table and each sibling that exists: rejects,
    the ledger ``<CODES>_files`` and ``<CODES>_embeddings``, all with the same retention
    (``delta.vacuum_retention_hours``), so a writer still running keeps its staged files
    in every one of them. ``store`` defaults to the session's store.
    """
    store = store or get_store(spark)
    removed = list(store.vacuum(table, dry_run=dry_run))
    for sibling in (
        rejects_table_name(table),
        ledger_table_name(table),
        embeddings_table_name(table),
    ):
        if store.exists(sibling):
            removed += store.vacuum(sibling, dry_run=dry_run)
    return removed
