"""Column names and version selection the sampling modules share.

Stand-in until ``hermes_spark.schema`` (the lead's schema module) lands on main: the
constants below are the same strings, and :func:`select_version` delegates lazily so that
importing sampling never imports the annotate orchestrator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from hermes_spark.delta_store import DeltaStore

VERSION_COL = "codebook_version"
SOURCE_COL = "source_file"
REASON_COL = "reason"
#: Spark column metadata on ``c1`` (attached by ``HermesModel.transform``): level sizes
#: (a list of ints) and the codebook version of the codes.
LEVELS_META = "hermes.levels"
VERSION_META = "hermes.codebook_version"


def select_version(store: DeltaStore, table: str, version: str | None) -> tuple[DataFrame, str]:
    """Rows of one codebook version of a codes table (default: the latest); see
    :func:`hermes_spark.annotate.select_version` (driver)."""
    from hermes_spark.annotate import select_version as _select

    return _select(store, table, version)
