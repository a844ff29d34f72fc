"""Which Delta backend a session gets: the one place that picks native or embedded.

Driver side. The backends (:mod:`.native`, :mod:`.embedded`) only implement
:class:`~hermes_spark.delta.store.DeltaStore`; this module is the only one importing both.
"""

from __future__ import annotations

import logging
import os

from pyspark.sql import SparkSession

from hermes_spark.delta.native import NativeDeltaStore
from hermes_spark.delta.store import ENGINES, DeltaStore, native_delta_available, settings
from hermes_spark.errors import InvalidConfigError

log = logging.getLogger(__name__)


def get_store(spark: SparkSession, engine: str | None = None) -> DeltaStore:
    """The Delta backend for ``spark``: ``engine`` or the ``delta.engine`` setting (driver).

    ``HERMES_DELTA_ENGINE`` overrides the setting. ``native`` without Delta on the session
    is an :class:`InvalidConfigError` that says how to get it.
    """
    chosen = engine or os.environ.get("HERMES_DELTA_ENGINE") or settings().engine
    # delta-rs (the [local] extra) is imported only when the embedded engine is chosen
    from hermes_spark.delta.embedded import EmbeddedDeltaStore

    if chosen not in ENGINES:
        raise InvalidConfigError(f"delta engine {chosen!r} is not one of {', '.join(ENGINES)}")
    if chosen == "embedded":
        log.info("Delta engine: embedded (delta-rs), as configured")
        return EmbeddedDeltaStore(spark, settings())
    available, why = native_delta_available(spark)
    if available:
        log.info("Delta engine: native (delta-spark): %s", why)
        return NativeDeltaStore(spark, settings())
    if chosen == "native":
        raise InvalidConfigError(
            f"delta.engine is native but {why}. Run `hermes-spark setup-jars` (or `make "
            "jars` in a checkout: a session hermes starts loads them), or start Spark with "
            "the Delta Lake package and "
            "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension"
        )
    log.info("Delta engine: embedded (delta-rs): %s", why)
    return EmbeddedDeltaStore(spark, settings())
