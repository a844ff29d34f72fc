"""Which Delta backend a session gets: the one place that picks native or embedded.

Driver side. The backends (:mod:`.native`, :mod:`.embedded`) only implement
:class:`~hermes_spark.delta.store.DeltaStore`; this module is the only one importing both.
"""

from __future__ import annotations

import logging
import os
import weakref

from pyspark.sql import SparkSession

from hermes_spark.delta.native import NativeDeltaStore
from hermes_spark.delta.store import ENGINES, DeltaSettings, DeltaStore, native_delta_available
from hermes_spark.errors import InvalidConfigError

log = logging.getLogger(__name__)


#: Delta settings a caller bound to a session (the CLI binds its config's): state that
#: lives and dies with the session object, never shared between two sessions.
_BOUND: weakref.WeakKeyDictionary[SparkSession, DeltaSettings] = weakref.WeakKeyDictionary()


def bind_settings(spark: SparkSession, settings: DeltaSettings) -> None:
    """Make ``settings`` what :func:`get_store` gives ``spark`` when no settings are passed."""
    _BOUND[spark] = settings


def bound_settings(spark: SparkSession) -> DeltaSettings:
    """The settings bound to ``spark`` (:func:`bind_settings`), else the defaults."""
    return _BOUND.get(spark) or DeltaSettings()


def get_store(
    spark: SparkSession, engine: str | None = None, settings: DeltaSettings | None = None
) -> DeltaStore:
    """The Delta backend for ``spark`` with ``settings`` (driver).

    ``settings`` default to those bound to the session (:func:`bind_settings`); ``engine``
    or ``HERMES_DELTA_ENGINE`` override their ``engine``. ``native`` without Delta on the
    session is an :class:`InvalidConfigError` that says how to get it.
    """
    opts = settings or bound_settings(spark)
    chosen = engine or os.environ.get("HERMES_DELTA_ENGINE") or opts.engine
    # delta-rs (the [local] extra) is imported only when the embedded engine is chosen
    from hermes_spark.delta.embedded import EmbeddedDeltaStore

    if chosen not in ENGINES:
        raise InvalidConfigError(f"delta engine {chosen!r} is not one of {', '.join(ENGINES)}")
    if chosen == "embedded":
        log.info("Delta engine: embedded (delta-rs), as configured")
        return EmbeddedDeltaStore(spark, opts)
    available, why = native_delta_available(spark)
    if available:
        log.info("Delta engine: native (delta-spark): %s", why)
        return NativeDeltaStore(spark, opts)
    if chosen == "native":
        raise InvalidConfigError(
            f"delta.engine is native but {why}. Run `hermes-spark setup-jars` (or `make "
            "jars` in a checkout: a session hermes starts loads them), or start Spark with "
            "the Delta Lake package and "
            "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension"
        )
    log.info("Delta engine: embedded (delta-rs): %s", why)
    return EmbeddedDeltaStore(spark, opts)
