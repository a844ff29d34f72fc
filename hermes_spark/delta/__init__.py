"""Delta Lake tables behind one interface, with a native and an embedded backend.

Import from here: :func:`get_store`, :class:`DeltaStore`, :func:`parse_table`. Which
backend runs is decided in :mod:`hermes_spark.delta.engine`.
"""

from hermes_spark.delta.engine import bind_settings, bound_settings, get_store
from hermes_spark.delta.files import DATA_DIR, delta_schema, file_stats, spark_schema
from hermes_spark.delta.store import (
    DEFAULT_RETENTION_HOURS,
    ENGINES,
    DeltaSettings,
    DeltaStore,
    TableRef,
    is_catalog_name,
    native_delta_available,
    parse_table,
)

__all__ = [
    "DATA_DIR",
    "DEFAULT_RETENTION_HOURS",
    "ENGINES",
    "DeltaSettings",
    "DeltaStore",
    "TableRef",
    "bind_settings",
    "bound_settings",
    "delta_schema",
    "file_stats",
    "get_store",
    "is_catalog_name",
    "native_delta_available",
    "parse_table",
    "spark_schema",
]
