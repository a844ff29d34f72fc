"""Give the driver's small-file I/O the object-store settings of the Spark session.

Driver only. Spark reads and writes ``s3a://`` through hadoop-aws with the session's
``spark.hadoop.fs.s3a.*`` settings; hermes' own small files (codebook artifact, reports,
plans) go through :mod:`hermes_spark.io` (pyarrow). :func:`storage_of` reads those
settings from the session (classic or Spark Connect: ``spark.conf`` only) into the
:class:`~hermes_spark.io.Storage` value the io functions take, so one set serves both.
Nothing is kept between calls: each call reads the session it is given (a few conf reads).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence

from pyspark.sql import SparkSession

from hermes_spark import io

log = logging.getLogger(__name__)

#: The Spark settings :func:`hermes_spark.io.storage_from_conf` understands.
S3A_KEYS = (
    "spark.hadoop.fs.s3a.endpoint",
    "spark.hadoop.fs.s3a.endpoint.region",
    "spark.hadoop.fs.s3a.access.key",
    "spark.hadoop.fs.s3a.secret.key",
    "spark.hadoop.fs.s3a.session.token",
    "spark.hadoop.fs.s3a.path.style.access",
    "spark.hadoop.fs.s3a.connection.ssl.enabled",
)


def session_settings(spark: SparkSession, keys: Sequence[str] = S3A_KEYS) -> dict[str, str]:
    """The subset of ``keys`` the session has set (unreadable or unset keys are skipped)."""
    found: dict[str, str] = {}
    for key in keys:
        with contextlib.suppress(Exception):
            value = spark.conf.get(key, None)
            if value:
                found[key] = value
    return found


def storage_of(spark: SparkSession | None) -> io.Storage:
    """The object-store settings of ``spark`` as an :class:`~hermes_spark.io.Storage`
    (``None``, or a session with no ``fs.s3a.*`` settings: pyarrow's own defaults)."""
    if spark is None:
        return io.Storage()
    settings = session_settings(spark)
    if settings:
        log.debug("object store settings from the Spark session: %s", ", ".join(sorted(settings)))
    return io.storage_from_conf(settings)


def storage_before_session(conf: Mapping[str, str]) -> io.Storage:
    """The settings a command has before it starts Spark: those of the active session
    (one a spark-submit driver or notebook built), else the ``conf`` hermes would build
    the session with."""
    active = SparkSession.getActiveSession()
    return storage_of(active) if active is not None else io.storage_from_conf(conf)
